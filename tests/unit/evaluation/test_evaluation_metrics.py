"""Metrics, calibration and the registry, checked against scikit-learn to 1e-9."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from tests.unit.evaluation._evaluation_data import churn, rng_scores

import conveyor.evaluation as ev
from conveyor.core.errors import ValidationError


def _sk_binary(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = (p >= threshold).astype(int)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p),
        "brier_score": skm.brier_score_loss(y, p),
    }


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_metrics_agree_with_sklearn(threshold: float) -> None:
    data = churn()
    got = ev.classification_metrics(data["y"], data["good"], threshold=threshold)
    assert set(got) == set(ev.metric_names("classification"))
    for name, expected in _sk_binary(data["y"], data["good"], threshold).items():
        assert got[name] == pytest.approx(expected, abs=1e-9), name


def test_ties_and_extreme_probabilities_agree_with_sklearn() -> None:
    y, p = rng_scores(3000, seed=4)
    p = np.round(p, 1)  # many ties
    p[:5] = 0.0
    p[5:10] = 1.0
    got = ev.classification_metrics(y, p)
    for name, expected in _sk_binary(y, p, 0.5).items():
        assert got[name] == pytest.approx(expected, abs=1e-9), name


def test_labels_other_than_01_need_classes() -> None:
    y, p = rng_scores(500)
    words = np.where(y == 1, "yes", "no")
    with pytest.raises(ValidationError, match="classes=") as info:
        ev.classification_metrics(words, p)
    assert "'no'" in str(info.value)
    assert "\n" not in str(info.value)
    assert ev.classification_metrics(words, p, classes=("no", "yes")) == (
        ev.classification_metrics(y, p)
    )


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 1, 1], [0.2, 0.4, 0.9], "only positive labels"),
        ([0, 1, 1], [0.2, np.nan, 0.9], "NaN"),
        ([0, 1, 1], [0.2, 0.9], "2 rows but y_true has 3"),
        ([], [], "empty"),
        ([0, 1, 1], [0.2, 1.5, 0.9], "outside"),
        ([0, 1, 2], [0.2, 0.5, 0.9], "other than 0 and 1"),
    ],
)
def test_degenerate_input_is_refused_in_one_line(y: list[Any], p: list[Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        ev.classification_metrics(y, p)
    assert "\n" not in str(info.value)


def test_multiclass_metrics_agree_with_sklearn() -> None:
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=200).fit(X[::2], labels[::2])
    proba = model.predict_proba(X)
    got = ev.classification_metrics(labels, proba, classes=list(model.classes_))
    pred = model.classes_[proba.argmax(axis=1)]
    expected = {
        "accuracy": skm.accuracy_score(labels, pred),
        "precision": skm.precision_score(labels, pred, average="macro", zero_division=0),
        "recall": skm.recall_score(labels, pred, average="macro"),
        "f1": skm.f1_score(labels, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(labels, proba, multi_class="ovr", average="macro"),
        "log_loss": skm.log_loss(labels, proba, labels=model.classes_),
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name


def test_multiclass_refuses_unmatched_columns() -> None:
    proba = np.full((4, 3), 1 / 3)
    with pytest.raises(ValidationError, match="3 columns but y_true holds 2"):
        ev.classification_metrics([0, 1, 0, 1], proba)
    with pytest.raises(ValidationError, match="no row of class 2"):
        ev.classification_metrics([0, 1, 0, 1], proba, classes=[0, 1, 2])


def test_regression_metrics_agree_with_sklearn() -> None:
    X, y = load_diabetes(return_X_y=True)
    pred = LinearRegression().fit(X[::2], y[::2]).predict(X)
    got = ev.regression_metrics(y, pred)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), abs=1e-9)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), abs=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), abs=1e-9)
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, pred), abs=1e-12)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_reliability_curve_agrees_with_sklearn(strategy: str, n_bins: int) -> None:
    data = churn()
    curve = ev.reliability_curve(data["y"], data["good"], n_bins=n_bins, strategy=strategy)
    prob_true, prob_pred = calibration_curve(
        data["y"], data["good"], n_bins=n_bins, strategy=strategy
    )
    filled = [i for i, c in enumerate(curve.count) if c]
    assert len(curve.count) == n_bins
    assert curve.n == len(data["y"])
    np.testing.assert_allclose(
        np.array([curve.fraction_positive[i] for i in filled], dtype=float), prob_true, atol=1e-9
    )
    np.testing.assert_allclose(
        np.array([curve.mean_predicted[i] for i in filled], dtype=float), prob_pred, atol=1e-9
    )
    assert ev.ReliabilityCurve.from_dict(curve.to_dict()) == curve


def test_scores_on_bin_edges_follow_sklearn() -> None:
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    p = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0])  # 0.1, 0.2 ... on the edges
    curve = ev.reliability_curve(y, p, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10)
    filled = [i for i, c in enumerate(curve.count) if c]
    assert filled == [0, 1, 2, 4, 6, 8, 9]  # 0.1 is in bin 0: bins are (lower, upper]
    np.testing.assert_allclose(
        np.array([curve.mean_predicted[i] for i in filled], dtype=float), prob_pred, atol=1e-12
    )
    np.testing.assert_allclose(
        np.array([curve.fraction_positive[i] for i in filled], dtype=float), prob_true
    )


def test_expected_calibration_error_is_the_weighted_gap() -> None:
    data = churn()
    y, p = data["y"], data["good"]
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10)
    ids = np.searchsorted(np.linspace(0, 1, 11)[1:-1], p)
    counts = np.bincount(ids, minlength=10)
    expected = float(np.sum(counts[counts > 0] / len(y) * np.abs(prob_true - prob_pred)))
    assert ev.expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-12)
    assert ev.classification_metrics(y, p)["expected_calibration_error"] == pytest.approx(
        expected, abs=1e-12
    )
    # A perfectly calibrated constant score has no gap.
    assert ev.expected_calibration_error([0, 1, 0, 1], [0.5] * 4) == 0.0


def test_registry_is_complete_and_directed() -> None:
    by_task = {task: ev.metric_names(task) for task in ("classification", "regression", "fairness")}
    assert by_task["regression"] == ("mae", "rmse", "r2", "mape")
    assert "fairness.demographic_parity_difference" in by_task["fairness"]
    assert {info.direction for info in ev.METRICS.values()} == {"higher", "lower"}
    assert ev.METRICS["log_loss"].direction == "lower"
    assert ev.METRICS["roc_auc"].higher_is_better
    # Everything the metric functions return is registered, so a policy can name it.
    y, p = rng_scores(200)
    assert set(ev.classification_metrics(y, p)) <= set(ev.METRICS)
    assert set(ev.regression_metrics([1.0, 2.0], [1.5, 2.5])) <= set(ev.METRICS)
    with pytest.raises(ValidationError, match="unknown metric task"):
        ev.metric_names("ranking")


def test_exports_and_cheap_import() -> None:
    assert len(set(ev.__all__)) == len(ev.__all__)
    for name in ev.__all__:
        assert getattr(ev, name) is not None
    code = (
        "import sys, conveyor.evaluation as e; e.METRICS['roc_auc']; "
        "print(sorted(m for m in ('numpy', 'scipy', 'sklearn', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
