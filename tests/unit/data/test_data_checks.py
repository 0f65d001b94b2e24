"""Quality, drift and leakage on real data: each planted defect caught, clean data passing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from conveyor.core.errors import ConfigError, ValidationError
from conveyor.data import DataGateSettings, validate_frames
from conveyor.data.drift import DriftSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from conveyor.data.findings import DataReport

from tests.unit.data._data_support import churn, split

SETTINGS = DataGateSettings(reference=Path("reference"), target="churned")


def _checks(report: DataReport) -> dict[tuple[str, str | None], bool]:
    return {(f.check, f.column): f.blocking for f in report.findings}


def _sklearn(loader: Callable[..., Any]) -> pd.DataFrame:
    bunch = loader(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("rows", [600, 6000])
def test_clean_random_split_of_churn_passes(seed: int, rows: int) -> None:
    reference, current = split(churn(rows, seed=seed + 10), seed)
    report = validate_frames(reference, current, SETTINGS)
    assert report.findings == []
    assert report.passed
    assert report.summary["compared_columns"] == 12  # ids and times are not compared
    assert all(r["p_adjusted"] is None or r["p_adjusted"] >= r["p_value"] for r in report.drift)


@pytest.mark.parametrize(
    ("loader", "target"),
    [(load_breast_cancer, "target"), (load_wine, "target"), (load_diabetes, "target")],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_random_split_of_sklearn_data_passes(
    loader: Callable[..., Any], target: str, seed: int
) -> None:
    reference, current = split(_sklearn(loader), seed)
    settings = DataGateSettings(reference=Path("r"), target=target)
    report = validate_frames(reference, current, settings)
    assert [f for f in report.findings if f.check.startswith("drift")] == []
    assert report.passed, [f.message for f in report.blocking]


def test_multiple_testing_correction_keeps_a_split_clean() -> None:
    """Without Benjamini-Hochberg, many small random splits flag a column by chance."""
    raw_flags = adjusted_flags = 0
    for seed in range(30):
        reference, current = split(churn(600, seed=seed), seed)
        report = validate_frames(reference, current, SETTINGS)
        raw_flags += any(r["p_value"] is not None and r["p_value"] < 0.05 for r in report.drift)
        adjusted_flags += report.summary["drifted_columns"] > 0
    assert raw_flags >= 5
    assert adjusted_flags <= 2


def test_the_drifted_month_is_caught_with_test_statistic_threshold_and_verdict() -> None:
    reference = churn(6000)
    current = churn(3000, seed=8, drift=True, month="2026-02")
    report = validate_frames(reference, current, SETTINGS)
    found = _checks(report)
    assert found[("drift.dataset", None)] is True
    assert found[("drift.wasserstein", "monthly_charges")] is False  # per-column drift warns
    assert found[("drift.jensenshannon", "payment_method")] is False
    assert found[("schema.unseen_category", "payment_method")] is True
    by_column = {r["column"]: r for r in report.drift}
    charges = by_column["monthly_charges"]
    assert charges["test"] == "wasserstein"
    assert charges["threshold"] == 0.1
    assert charges["statistic"] == pytest.approx(
        charges["wasserstein"] / reference["monthly_charges"].std(ddof=0), rel=1e-12
    )
    assert charges["drifted"] is True
    assert by_column["gender"]["drifted"] is False
    blocked = validate_frames(
        reference,
        current,
        DataGateSettings(reference=Path("r"), drift=DriftSettings(block_on_column_drift=True)),
    )
    assert _checks(blocked)[("drift.wasserstein", "monthly_charges")] is True


def test_small_samples_use_p_values_with_an_effect_size() -> None:
    reference = churn(800, seed=3)
    current = churn(500, seed=4, drift=True, month="2026-02")
    report = validate_frames(reference, current, SETTINGS)
    by_column = {r["column"]: r for r in report.drift}
    assert by_column["monthly_charges"]["test"] == "ks"
    assert by_column["monthly_charges"]["effect_name"] == "ks_statistic"
    assert by_column["contract"]["test"] == "chisquare"
    assert by_column["contract"]["effect_name"] == "cramers_v"
    assert by_column["monthly_charges"]["drifted"] is True
    # The same tiny shift is significant on a huge sample, yet its effect stays below the bar.
    strict = DataGateSettings(reference=Path("r"), drift=DriftSettings(method="ks", min_effect=0.1))
    rng = np.random.default_rng(0)
    big_ref = pd.DataFrame({"x": rng.normal(0, 1, 200_000)})
    big_cur = pd.DataFrame({"x": rng.normal(0.05, 1, 200_000)})
    (result,) = validate_frames(big_ref, big_cur, strict).drift
    assert result["p_adjusted"] < 1e-10
    assert result["effect_size"] < 0.1
    assert result["drifted"] is False


def test_psi_is_available() -> None:
    reference = churn(3000)
    current = churn(2000, seed=8, drift=True, month="2026-02")
    psi = DataGateSettings(reference=Path("r"), drift=DriftSettings(method="psi"))
    by_column = {r["column"]: r for r in validate_frames(reference, current, psi).drift}
    assert by_column["monthly_charges"]["test"] == "psi"
    assert by_column["monthly_charges"]["drifted"] is True
    assert by_column["gender"]["drifted"] is False


def test_planted_quality_defects_are_caught() -> None:
    reference, current = split(churn(6000), 1)
    current["monthly_charges"] = current["monthly_charges"].mask(
        np.arange(len(current)) % 5 == 0
    )  # 20 % missing
    current["region"] = None  # entirely empty
    current["gender"] = "female"  # constant
    current.loc[: len(current) // 10, "data_usage_gb"] = 900.0  # outliers
    current = pd.concat([current, current.iloc[:100]], ignore_index=True)  # duplicate rows
    report = validate_frames(reference, current, SETTINGS)
    found = _checks(report)
    assert found[("quality.missing_rate", "monthly_charges")] is True
    assert found[("quality.missing_rate", "region")] is True
    assert found[("quality.constant_column", "gender")] is False
    assert found[("quality.outliers", "data_usage_gb")] is False
    assert found[("quality.duplicate_rows", None)] is False
    tiny = validate_frames(reference, current.iloc[:50], SETTINGS)
    assert ("quality.volume", None) in _checks(tiny)
    missing = next(
        f
        for f in report.findings
        if f.column == "monthly_charges" and f.check == "quality.missing_rate"
    )
    assert missing.observed == pytest.approx(current["monthly_charges"].isna().mean())


def test_planted_leaks_are_caught() -> None:
    reference, current = split(churn(4000), 2)
    reference["churn_flag"] = reference["churned"].map({0: "stay", 1: "leave"})
    reference["refund_amount"] = reference["churned"] * 50 + np.random.default_rng(0).uniform(
        0, 10, len(reference)
    )  # nearly perfect on its own, not identical
    reference["label_time"] = reference["event_time"] + pd.Timedelta(days=30)
    reference["cancelled_at"] = reference["event_time"]
    reference.loc[[4, 8], "cancelled_at"] = reference.loc[[4, 8], "label_time"] + pd.Timedelta(
        days=1
    )
    current = pd.concat([current, reference.iloc[:25][current.columns]], ignore_index=True)
    settings = DataGateSettings(reference=Path("r"), target="churned", label_time="label_time")
    report = validate_frames(reference, current, settings)
    found = _checks(report)
    assert found[("leakage.identical_to_label", "churn_flag")] is True
    assert found[("leakage.perfect_predictor", "refund_amount")] is True
    assert found[("leakage.future_timestamp", "cancelled_at")] is True
    assert found[("leakage.shared_rows", None)] is True
    shared = next(f for f in report.findings if f.check == "leakage.shared_rows")
    assert shared.observed == 25
    assert ("leakage.perfect_predictor", "tenure_months") not in found


def test_monotone_and_near_perfect_features_of_a_numeric_label() -> None:
    reference, current = split(_sklearn(load_diabetes), 0)
    reference["target_log"] = np.log(reference["target"])  # monotone: a one-to-one recoding
    reference["target_rounded"] = (reference["target"] / 25).round()  # ties: rho just below 1
    settings = DataGateSettings(reference=Path("r"), target="target")
    found = _checks(validate_frames(reference, current, settings))
    assert found[("leakage.identical_to_label", "target_log")] is True
    assert found[("leakage.perfect_predictor", "target_rounded")] is True
    assert not [c for c in found if c[0].startswith("leakage") and c[1] in ("bmi", "s5")]


def test_block_and_warn_move_checks() -> None:
    reference, current = split(churn(3000), 0)
    current = pd.concat([current, current.iloc[:100]], ignore_index=True)  # duplicates, shared
    default = _checks(validate_frames(reference, current, SETTINGS))
    assert default[("quality.duplicate_rows", None)] is False
    moved = DataGateSettings(
        reference=Path("r"), target="churned", block=("quality.duplicate_rows",), warn=("leakage",)
    )
    found = _checks(validate_frames(reference, current, moved))
    assert found[("quality.duplicate_rows", None)] is True
    reference2 = pd.concat([reference, current.iloc[:10]], ignore_index=True)
    leaky = validate_frames(reference2, current, moved)
    assert _checks(leaky)[("leakage.shared_rows", None)] is False  # moved to a warning
    assert _checks(validate_frames(reference2, current, SETTINGS))[("leakage.shared_rows", None)]


def test_all_null_reference_column_is_an_error() -> None:
    reference, current = split(churn(1000), 0)
    reference["age"] = np.nan
    with pytest.raises(ValidationError, match="column 'age' is entirely empty"):
        validate_frames(reference, current, SETTINGS, reference_name="train.csv")


def test_settings_from_mapping(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a\n1\n")
    s = DataGateSettings.from_mapping(
        {
            "reference": "train.csv",
            "target": "a",
            "block_on_column_drift": True,
            "alpha": 0.01,
            "max_missing_increase": 0.2,
            "method": "psi",
            "warn": ["quality"],
        },
        where="policies.yaml: candidate",
        root=tmp_path,
    )
    assert s.reference == (tmp_path / "train.csv").resolve()
    assert s.current is None
    assert s.target == "a"
    assert s.drift.block_on_column_drift
    assert s.drift.alpha == 0.01
    assert s.drift.method == "psi"
    assert s.quality.max_missing_increase == 0.2
    assert s.warn == ("quality",)
    for bad, message in (
        ({}, "needs 'reference'"),
        ({"reference": "train.csv", "refrence": "x"}, "unknown key 'refrence'"),
        ({"reference": "missing.csv"}, r"data_checks.reference missing.csv does not exist"),
        ({"reference": "train.csv", "alpha": "high"}, "alpha must be a non-negative number"),
        ({"reference": "train.csv", "shared_rows": "yes"}, "must be true or false"),
        ({"reference": "train.csv", "method": "t-test"}, "not a drift test"),
        ({"reference": "train.csv", "block": "drift"}, "list of check names"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            DataGateSettings.from_mapping(bad, where="policies.yaml: candidate", root=tmp_path)
        assert str(info.value).startswith("policies.yaml: candidate: ")
