"""Every drift statistic agrees with scipy (or the textbook formula) to 1e-9, on real data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score
from tests.unit.data._data_support import churn

from conveyor.data import stats
from conveyor.data.leakage import binary_auc
from conveyor.data.profile import ColumnSketch, sketch_frame

TOL = 1e-9
Months = tuple[dict[str, ColumnSketch], dict[str, ColumnSketch]]


def _v(sketch: ColumnSketch) -> np.ndarray[Any, Any]:
    assert sketch.values is not None
    return sketch.values


def _l(sketch: ColumnSketch) -> np.ndarray[Any, Any]:
    assert sketch.labels is not None
    return sketch.labels


def _c(sketch: ColumnSketch) -> np.ndarray[Any, Any]:
    assert sketch.counts is not None
    return sketch.counts


@pytest.fixture(scope="module")
def months() -> Months:
    base = sketch_frame(churn(3000, seed=1), what="base")
    drifted = sketch_frame(churn(2000, seed=2, drift=True, month="2026-02"), what="drifted")
    return base, drifted


@pytest.mark.parametrize(
    "column", ["age", "monthly_charges", "total_charges", "data_usage_gb", "support_calls"]
)
def test_ks_and_wasserstein_match_scipy(months: Months, column: str) -> None:
    u, v = _v(months[0][column]), _v(months[1][column])
    ks, wd = stats.ks_wasserstein(u, v)
    assert ks == pytest.approx(sps.ks_2samp(u, v).statistic, abs=TOL)
    assert wd == pytest.approx(sps.wasserstein_distance(u, v), abs=TOL, rel=TOL)
    assert stats.ks_pvalue(u[:500], v[:400]) == pytest.approx(
        sps.ks_2samp(u[:500], v[:400]).pvalue, abs=TOL
    )


def test_ks_and_wasserstein_with_ties_and_unequal_sizes() -> None:
    rng = np.random.default_rng(3)
    u = np.sort(rng.integers(0, 5, 777).astype(float))
    v = np.sort(rng.integers(1, 7, 123).astype(float))
    ks, wd = stats.ks_wasserstein(u, v)
    assert ks == pytest.approx(sps.ks_2samp(u, v).statistic, abs=TOL)
    assert wd == pytest.approx(sps.wasserstein_distance(u, v), abs=TOL)


@pytest.mark.parametrize("column", ["contract", "payment_method", "region"])
def test_chi_square_js_and_psi_of_categories(months: Months, column: str) -> None:
    ref, cur = months[0][column], months[1][column]
    _, r, c = stats.align_counts(_l(ref), _c(ref), _l(cur), _c(cur))
    chi2, p, dof, v = stats.chi2_homogeneity(r, c)
    keep = (r + c) > 0
    expected = sps.chi2_contingency(np.vstack((r[keep], c[keep])), correction=False)
    assert chi2 == pytest.approx(expected.statistic, rel=TOL, abs=TOL)
    assert p == pytest.approx(expected.pvalue, abs=TOL)
    assert dof == expected.dof
    assert v == pytest.approx(np.sqrt(expected.statistic / (r.sum() + c.sum())), abs=TOL)
    assert stats.js_distance(r, c) == pytest.approx(jensenshannon(r, c), abs=TOL)
    rp, cp = r / r.sum(), c / c.sum()
    rp, cp = np.where(rp == 0, 1e-4, rp), np.where(cp == 0, 1e-4, cp)
    textbook = sum((b - a) * np.log(b / a) for a, b in zip(rp, cp, strict=True))
    assert stats.psi(r, c) == pytest.approx(textbook, abs=TOL)


def test_psi_of_a_numeric_column_uses_reference_deciles(months: Months) -> None:
    u, v = _v(months[0]["monthly_charges"]), _v(months[1]["monthly_charges"])
    edges = stats.psi_bins(u)
    assert len(edges) == 9
    bounds = list(zip([-np.inf, *edges], [*edges, np.inf], strict=True))
    r = np.array([((u > lo) & (u <= hi)).sum() for lo, hi in bounds], dtype=float)
    c = np.array([((v > lo) & (v <= hi)).sum() for lo, hi in bounds], dtype=float)
    assert stats.binned_counts(u, edges).tolist() == r.tolist()
    assert stats.binned_counts(v, edges).tolist() == c.tolist()
    rp, cp = r / r.sum(), c / c.sum()
    textbook = float(np.sum((cp - rp) * np.log(cp / rp)))
    assert stats.psi(r, c) == pytest.approx(textbook, abs=TOL)


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(5).uniform(size=40) ** 2
    assert np.allclose(stats.bh_adjust(p), sps.false_discovery_control(p), atol=TOL, rtol=0)


def test_single_feature_auc_matches_sklearn() -> None:
    frame = churn(3000, seed=4)
    y = frame["churned"].to_numpy() == 1
    for column in ("tenure_months", "support_calls", "monthly_charges"):
        x = frame[column].to_numpy(dtype=float)
        assert binary_auc(x, y) == pytest.approx(roc_auc_score(y, x), abs=TOL)


def test_median_mad_and_quantiles_from_the_sorted_sketch_match_numpy() -> None:
    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(1, 60))
        raw = rng.integers(0, 6, n).astype(float) if trial % 2 else rng.lognormal(size=n)
        sketch = sketch_frame(pd.DataFrame({"x": raw}), what="t")["x"]
        med, mad = sketch.median_mad
        assert med == pytest.approx(np.median(raw), abs=TOL)
        assert mad == pytest.approx(np.median(np.abs(raw - np.median(raw))), abs=TOL)
        q = float(rng.uniform())
        assert sketch.quantile(q) == pytest.approx(np.quantile(raw, q), abs=TOL)
        released = sketch.release()
        assert released.values is None
        assert released.quantile(0.5) == pytest.approx(np.median(raw), abs=TOL)
        assert released.std == pytest.approx(raw.std(), abs=TOL)
