"""Fairness and slices, checked against fairlearn and scikit-learn to 1e-9."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn import metrics as skm
from tests.unit.evaluation._evaluation_data import churn

import conveyor.evaluation as ev
from conveyor.core.errors import ValidationError


@pytest.mark.parametrize("attribute", ["gender", "region", "contract"])
def test_fairness_agrees_with_fairlearn(attribute: str) -> None:
    data = churn()
    y, pred = data["y"], (data["good"] >= 0.3).astype(int)
    groups = data["frame"][attribute]
    report = ev.fairness_metrics(y, pred, groups, attribute=attribute)
    kw = {"sensitive_features": groups}
    assert report.small_groups == ()
    assert report.demographic_parity_difference == pytest.approx(
        demographic_parity_difference(y, pred, **kw), abs=1e-9
    )
    assert report.demographic_parity_ratio == pytest.approx(
        demographic_parity_ratio(y, pred, **kw), abs=1e-9
    )
    assert report.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(y, pred, **kw), abs=1e-9
    )
    assert report.equalized_odds_ratio == pytest.approx(
        equalized_odds_ratio(y, pred, **kw), abs=1e-9
    )
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "accuracy": skm.accuracy_score,
            "precision": lambda t, p: skm.precision_score(t, p, zero_division=0),
            "count": lambda t, p: len(t),
        },
        y_true=y,
        y_pred=pred,
        sensitive_features=groups,
    ).by_group
    assert set(report.groups) == {str(g) for g in frame.index}
    for group, row in frame.iterrows():
        got = report.groups[str(group)]
        for name in ("selection_rate", "tpr", "fpr", "accuracy", "precision", "count"):
            assert got[name] == pytest.approx(row[name], abs=1e-9), (group, name)
        assert got["recall"] == got["tpr"]
        assert got["small"] is False


def test_small_groups_are_flagged_and_left_out() -> None:
    y = np.array([1, 0] * 50 + [1, 1, 1])
    pred = np.array([1, 0] * 50 + [0, 0, 0])
    groups = np.array(["a", "b"] * 50 + ["c", "c", "c"])
    report = ev.fairness_metrics(y, pred, groups, min_group_size=10)
    assert report.small_groups == ("c",)
    assert report.groups["c"] == {
        "count": 3,
        "positives": 3,
        "selection_rate": 0.0,
        "tpr": 0.0,
        "fpr": None,
        "accuracy": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "small": True,
    }
    # a: all positive, all selected; b: all negative, none selected.
    assert report.demographic_parity_difference == 1.0
    assert report.demographic_parity_ratio == 0.0
    # a has no negatives (no FPR), b no positives (no TPR): equalized odds needs two groups.
    assert report.equalized_odds_difference is None
    everyone = ev.fairness_metrics(y, pred, groups, min_group_size=1)
    assert everyone.demographic_parity_difference == pytest.approx(
        demographic_parity_difference(y, pred, sensitive_features=groups), abs=1e-12
    )
    assert ev.FairnessReport.from_dict(report.to_dict()) == report


def test_missing_sensitive_values_form_a_group() -> None:
    groups = pd.Series(["x", None, "x", None, "y", "y"])
    report = ev.fairness_metrics([0, 1, 1, 0, 1, 0], [0, 1, 1, 1, 0, 0], groups, min_group_size=1)
    assert report.groups["(missing)"]["count"] == 2
    assert report.groups["(missing)"]["selection_rate"] == 1.0


def test_slices_agree_with_sklearn_on_each_group() -> None:
    data = churn()
    frame, y, p = data["frame"], data["y"], data["good"]
    out = ev.slice_metrics(frame, y, p, columns=["region", "tenure_months"], task="classification")
    assert set(out["region"]) == set(frame["region"].unique())
    for region, values in out["region"].items():
        mask = (frame["region"] == region).to_numpy()
        assert values["count"] == mask.sum()
        assert values["roc_auc"] == pytest.approx(skm.roc_auc_score(y[mask], p[mask]), abs=1e-9)
        assert values["log_loss"] == pytest.approx(skm.log_loss(y[mask], p[mask]), abs=1e-9)
    # tenure has many values: four quantile bins named by their interval.
    bins = pd.qcut(frame["tenure_months"], 4, duplicates="drop")
    assert list(out["tenure_months"]) == [str(c) for c in bins.cat.categories]
    first = bins.cat.categories[0]
    mask = (bins == first).to_numpy()
    assert out["tenure_months"][str(first)]["recall"] == pytest.approx(
        skm.recall_score(y[mask], p[mask] >= 0.5), abs=1e-9
    )


def test_slice_of_one_class_reports_none_and_small_flag() -> None:
    frame = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 5})
    y = np.array([0, 1] * 20 + [1] * 5)
    p = np.linspace(0.01, 0.99, 45)
    out = ev.slice_metrics(frame, y, p, columns=["g"], task="classification", min_count=10)
    assert out["g"]["b"]["roc_auc"] is None
    assert out["g"]["b"]["small"] is True
    assert out["g"]["a"]["small"] is False
    assert out["g"]["a"]["roc_auc"] is not None


def test_regression_slices() -> None:
    frame = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    out = ev.slice_metrics(
        frame,
        [1.0, 2.0, 3.0, 5.0],
        [1.0, 3.0, 3.0, 4.0],
        columns=["g"],
        task="regression",
        min_count=1,
    )
    assert out["g"]["a"]["mae"] == 0.5
    assert out["g"]["b"]["rmse"] == pytest.approx(0.5**0.5)


def test_missing_slice_column_names_the_columns() -> None:
    frame = pd.DataFrame({"region": ["n", "s"], "age": [30, 40]})
    with pytest.raises(ValidationError, match="slice column 'plan' is not in") as info:
        ev.slice_metrics(frame, [0, 1], [0.2, 0.8], columns=["plan"], task="classification")
    assert "region, age" in str(info.value)
