"""The distributions a data check records for the dashboard: the same numbers numpy and pandas
compute from the data, bounded, and stored with the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from conveyor.data.findings import DataReport
from conveyor.data.gate import (
    MAX_CHART_CATEGORIES,
    DataGateSettings,
    record_findings,
    run_data_gate,
    stored_charts,
    validate_frames,
)
from conveyor.store.metadata.schema import dataset_check

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    # Rounded to one decimal, so many values fall exactly on bin edges.
    reference = pd.DataFrame(
        {
            "age": np.round(rng.normal(40, 10, 2000), 1),
            "plan": rng.choice(["basic", "plus", "pro"], 2000, p=[0.5, 0.3, 0.2]),
        }
    )
    age = np.round(rng.normal(48, 12, 1500), 1)
    age[:40] = np.nan
    current = pd.DataFrame(
        {
            "age": age,
            "plan": rng.choice(np.array(["basic", "plus", "pro", None], dtype=object), 1500),
        }
    )
    return reference, current


def _report() -> tuple[pd.DataFrame, pd.DataFrame, DataReport]:
    reference, current = _frames()
    report = validate_frames(
        reference, current, DataGateSettings(reference=Path("ref.csv")), charts=True
    )
    return reference, current, report


def _right_closed_histogram(values: Any, edges: Any) -> Any:
    """numpy.histogram with bins closed on the right, as the checks bin ((a, b], first [lo, e1]):
    the left-closed histogram of the negated values on the negated edges, reversed (exact)."""
    return np.histogram(-values, bins=-edges[::-1])[0][::-1]


def test_numeric_shares_are_numpy_histograms_on_the_shared_edges() -> None:
    reference, current, report = _report()
    chart = stored_charts(report)["charts"]["age"]
    assert chart["kind"] == "numeric"
    ref, cur = reference["age"].dropna().to_numpy(), current["age"].dropna().to_numpy()
    lo, hi = min(ref.min(), cur.min()), max(ref.max(), cur.max())
    edges = np.linspace(lo, hi, len(chart["reference"]) + 1)
    assert len(chart["reference"]) == 20
    for values, shares in ((ref, chart["reference"]), (cur, chart["current"])):
        counts = _right_closed_histogram(values, edges)
        assert counts.sum() == len(values)
        np.testing.assert_allclose(np.asarray(shares) * len(values), counts, rtol=0, atol=1e-9)
    assert chart["labels"] == [f"{lo:.4g}", f"{hi:.4g}"]
    assert chart["drifted"] is True
    assert chart["statistic"] == next(d["statistic"] for d in report.drift if d["column"] == "age")


def test_categorical_shares_are_pandas_value_counts() -> None:
    reference, current, report = _report()
    chart = stored_charts(report)["charts"]["plan"]
    assert chart["kind"] == "categorical"
    assert sorted(chart["labels"]) == ["basic", "plus", "pro"]
    for frame, shares in ((reference, chart["reference"]), (current, chart["current"])):
        expected = frame["plan"].value_counts(normalize=True)  # missing values left out
        got = dict(zip(chart["labels"], shares, strict=True))
        for label in chart["labels"]:
            assert abs(got[label] - expected[label]) <= 1e-9


def test_stored_charts_are_bounded_drifted_columns_first() -> None:
    shares = [1 / 25] * 25
    report = DataReport(
        drift=[
            {"column": f"c{i}", "drifted": i in (7, 9), "test": "ks", "statistic": 0.1 * i}
            for i in range(12)
        ],
        charts={
            f"c{i}": {
                "kind": "categorical",
                "labels": [f"v{k}" for k in range(25)],
                "reference": shares,
                "current": shares,
            }
            for i in range(12)
        },
    )
    stored = stored_charts(report, limit=5)
    assert list(stored["charts"]) == ["c7", "c9", "c0", "c1", "c2"]
    assert stored["charts_omitted"] == 7
    first = stored["charts"]["c7"]
    assert first["labels"] == [f"v{k}" for k in range(MAX_CHART_CATEGORIES)]
    assert len(first["reference"]) == len(first["current"]) == MAX_CHART_CATEGORIES
    assert (first["drifted"], first["test"], first["statistic"]) == (True, "ks", 0.1 * 7)
    assert stored_charts(DataReport()) == {}


def test_the_gate_records_the_distributions_with_its_verdict(
    metadata_store: MetadataStore, tmp_path: Path
) -> None:
    reference, current = _frames()
    reference.to_csv(tmp_path / "ref.csv", index=False)
    current.to_csv(tmp_path / "cur.csv", index=False)
    report = run_data_gate(
        DataGateSettings(reference=tmp_path / "ref.csv"), current=tmp_path / "cur.csv"
    )
    assert set(report.charts) == {"age", "plan"}  # the gate computes them by default
    record_findings(metadata_store, "dataset:cur", report, reference_id="dataset:ref", actor="ci")
    with metadata_store.read() as conn:
        details = conn.execute(
            sa.select(dataset_check.c.details).where(dataset_check.c.check == "data_checks")
        ).scalar_one()
    assert details["charts"] == stored_charts(report)["charts"]
    assert "charts_omitted" not in details
    assert details["summary"]["compared_columns"] == 2
