"""Paired bootstrap and DeLong, checked against scikit-learn, scipy and an O(n^2) DeLong."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from tests.unit.evaluation._evaluation_data import churn

import conveyor.evaluation as ev
from conveyor.core.errors import ValidationError

_SK = {
    "roc_auc": skm.roc_auc_score,
    "pr_auc": skm.average_precision_score,
    "log_loss": skm.log_loss,
    "brier_score": skm.brier_score_loss,
    "accuracy": lambda y, p: skm.accuracy_score(y, p >= 0.5),
    "f1": lambda y, p: skm.f1_score(y, p >= 0.5, zero_division=0),
}


@pytest.mark.parametrize("metric", sorted(_SK))
def test_bootstrap_matches_scipy_with_sklearn_metric(metric: str) -> None:
    data = churn()
    y, good, weak = data["y"][:600], data["good"][:600], data["weak"][:600]
    got = ev.paired_bootstrap(metric, y, good, weak, n_resamples=200, seed=3)
    sk = _SK[metric]
    assert got.candidate == pytest.approx(sk(y, good), abs=1e-9)
    assert got.baseline == pytest.approx(sk(y, weak), abs=1e-9)
    assert got.difference == pytest.approx(sk(y, good) - sk(y, weak), abs=1e-9)
    # scipy draws the same resamples from the same seed; the metric there is sklearn's.
    reference = stats.bootstrap(
        (y, good, weak),
        lambda t, c, b: sk(t, c) - sk(t, b),
        paired=True,
        vectorized=False,
        n_resamples=200,
        method="percentile",
        rng=np.random.default_rng(3),
    )
    assert got.ci_low == pytest.approx(reference.confidence_interval.low, abs=1e-9)
    assert got.ci_high == pytest.approx(reference.confidence_interval.high, abs=1e-9)
    assert got.method == "paired_bootstrap"
    assert got.n == 600
    assert got.n_resamples == 200


def test_regression_bootstrap_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, 500)
    a, b = y + rng.normal(0, 1, 500), y + rng.normal(0, 1.5, 500)
    for metric, sk in (
        ("mae", skm.mean_absolute_error),
        ("r2", skm.r2_score),
        ("rmse", skm.root_mean_squared_error),
        ("mape", skm.mean_absolute_percentage_error),
    ):
        got = ev.paired_bootstrap(metric, y, a, b, n_resamples=100)
        assert got.difference == pytest.approx(sk(y, a) - sk(y, b), abs=1e-9)
        assert got.ci_low <= got.difference <= got.ci_high


def test_identical_models_differ_by_exactly_zero() -> None:
    data = churn()
    got = ev.paired_bootstrap("roc_auc", data["y"], data["good"], data["good"])
    assert (got.difference, got.ci_low, got.ci_high) == (0.0, 0.0, 0.0)
    assert got.lower_bound_ok(0.0)
    assert not got.lower_bound_ok(0.005)


@pytest.mark.serial  # times itself: run alone, after the parallel part
def test_bootstrap_is_fast_and_finds_a_real_improvement() -> None:
    data = churn()
    start = time.perf_counter()
    got = ev.paired_bootstrap("roc_auc", data["y"], data["good"], data["weak"], n_resamples=1000)
    elapsed = time.perf_counter() - start
    assert len(data["y"]) == 4000
    assert elapsed < 1.0
    assert got.ci_low > 0.15
    assert got.lower_bound_ok(0.005)
    worse = ev.paired_bootstrap("log_loss", data["y"], data["good"], data["weak"])
    assert worse.difference < 0
    assert worse.lower_bound_ok(0.01)
    assert ev.Comparison.from_dict(got.to_dict()) == got


def test_bootstrap_refuses_what_it_cannot_compare() -> None:
    with pytest.raises(ValidationError, match="cannot be bootstrapped"):
        ev.paired_bootstrap("fairness.demographic_parity_ratio", [0, 1], [0.1, 0.9], [0.2, 0.8])
    with pytest.raises(ValidationError, match="unknown metric 'auc'"):
        ev.paired_bootstrap("auc", [0, 1], [0.1, 0.9], [0.2, 0.8])
    with pytest.raises(ValidationError, match="undefined on"):
        ev.paired_bootstrap("roc_auc", [0, 1, 0, 0], [0.1, 0.9, 0.3, 0.2], [0.2, 0.8, 0.1, 0.4])


def _delong_slow(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components straight from the definition, O(m * n)."""
    pos, neg = y == 1, y == 0
    v10, v01 = [], []
    for s in scores:
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    aucs = np.array([v.mean() for v in v10])
    cov = np.cov(np.array(v10)) / pos.sum() + np.cov(np.array(v01)) / neg.sum()
    return aucs, cov


def test_delong_agrees_with_the_definition_and_sklearn() -> None:
    data = churn()
    y, good = data["y"][:800], data["good"][:800]
    weak = np.round(data["weak"][:800], 2)  # ties
    got = ev.delong(y, good, weak, confidence=0.9)
    aucs, cov = _delong_slow(y, [good, weak])
    assert got.candidate == pytest.approx(skm.roc_auc_score(y, good), abs=1e-9)
    assert got.baseline == pytest.approx(skm.roc_auc_score(y, weak), abs=1e-9)
    assert (got.candidate, got.baseline) == pytest.approx(tuple(aucs), abs=1e-12)
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z = stats.norm.ppf(0.95)
    assert got.ci_low == pytest.approx(got.difference - z * se, abs=1e-9)
    assert got.ci_high == pytest.approx(got.difference + z * se, abs=1e-9)
    assert got.p_value == pytest.approx(2 * stats.norm.sf(abs(got.difference) / se), abs=1e-12)
    assert got.method == "delong"
    assert got.confidence == 0.9


def test_delong_of_identical_models() -> None:
    data = churn()
    got = ev.delong(data["y"], data["good"], data["good"])
    assert (got.difference, got.ci_low, got.ci_high, got.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_lower_bound_semantics() -> None:
    c = ev.Comparison("log_loss", 0.4, 0.5, -0.1, -0.15, -0.05, 0.95, "paired_bootstrap", 10)
    assert c.lower_bound_ok(0.05)
    assert not c.lower_bound_ok(0.06)
    assert c.lower_bound_ok(-0.2, "higher")
    assert not c.lower_bound_ok(0.0, "higher")
    with pytest.raises(ValidationError, match="direction"):
        c.lower_bound_ok(0.0, "up")
