"""The statistics behind drift verdicts, computed from column sketches without re-sorting.

Each function matches a reference implementation, and the tests hold them to it to 1e-9:
KS statistic and Wasserstein-1 distance (``scipy.stats.ks_2samp``, ``wasserstein_distance``),
chi-square test of homogeneity (``scipy.stats.chi2_contingency`` without continuity
correction), Jensen-Shannon distance (``scipy.spatial.distance.jensenshannon``, natural log),
PSI (the textbook formula, with Evidently's 0.0001 floor on empty bins), and the
Benjamini-Hochberg adjustment (``scipy.stats.false_discovery_control``).

scipy re-sorts both samples on every call (``argsort`` of their concatenation, then a binary
search per value per sample); here both samples arrive sorted, so their merge is one linear
timsort pass over two runs, and the KS statistic and the Wasserstein distance are read off the
same two empirical CDFs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PSI_FLOOR",
    "align_counts",
    "bh_adjust",
    "chi2_homogeneity",
    "js_distance",
    "ks_pvalue",
    "ks_wasserstein",
    "psi",
    "psi_bins",
]

PSI_FLOOR = 1e-4


def ks_wasserstein(u: np.ndarray[Any, Any], v: np.ndarray[Any, Any]) -> tuple[float, float]:
    """KS statistic (max CDF gap) and Wasserstein-1 distance (CDF gap area) of two sorted samples.

    One stable argsort of the two concatenated runs (timsort merges them in linear time) says
    which sample each merged value came from; a running count then gives both empirical CDFs.
    They are read at the last position of each group of equal values, where a running count is
    the CDF (count of values <= x), and between distinct values, where the gap is constant.
    """
    import numpy as np

    n_u, n_v = len(u), len(v)
    merged = np.concatenate((u, v))
    order = np.argsort(merged, kind="stable")
    merged = merged[order]
    count_u = np.cumsum(order < n_u)
    del order
    count_v = np.arange(1, len(merged) + 1) - count_u
    ends = merged[1:] != merged[:-1]  # the last of each run of equal values, but the final one
    gaps = np.abs(count_u[:-1][ends] / n_u - count_v[:-1][ends] / n_v)
    if not len(gaps):
        return 0.0, 0.0
    deltas = np.diff(merged)[ends]
    return float(gaps.max()), float(np.dot(gaps, deltas))


def ks_pvalue(u: np.ndarray[Any, Any], v: np.ndarray[Any, Any]) -> float:
    """Two-sided KS p-value, as ``scipy.stats.ks_2samp`` (exact for small samples)."""
    from scipy import stats

    return float(stats.ks_2samp(u, v).pvalue)


def align_counts(
    ref_labels: np.ndarray[Any, Any],
    ref_counts: np.ndarray[Any, Any],
    cur_labels: np.ndarray[Any, Any],
    cur_counts: np.ndarray[Any, Any],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Both count vectors over the union of categories (sorted), zeros where one lacks one."""
    import numpy as np

    labels = np.union1d(ref_labels, cur_labels)
    r = np.zeros(len(labels), dtype=np.float64)
    c = np.zeros(len(labels), dtype=np.float64)
    r[np.searchsorted(labels, ref_labels)] = ref_counts
    c[np.searchsorted(labels, cur_labels)] = cur_counts
    return labels, r, c


def chi2_homogeneity(
    r: np.ndarray[Any, Any], c: np.ndarray[Any, Any]
) -> tuple[float, float, int, float]:
    """Chi-square test that two count vectors come from one distribution.

    Returns:
        The statistic, its p-value, the degrees of freedom, and Cramer's V (the effect size,
        ``sqrt(chi2 / N)`` for two samples: it does not grow with N when the mix is unchanged).
    """
    import numpy as np
    from scipy import stats

    keep = (r + c) > 0
    table = np.vstack((r[keep], c[keep]))
    n = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    p = float(stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0
    return chi2, p, dof, float(np.sqrt(chi2 / n))


def js_distance(r: np.ndarray[Any, Any], c: np.ndarray[Any, Any]) -> float:
    """Jensen-Shannon distance (natural log) between two count vectors."""
    import numpy as np

    p, q = r / r.sum(), c / c.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray[Any, Any]) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))


def psi_bins(reference_sorted: np.ndarray[Any, Any], bins: int = 10) -> np.ndarray[Any, Any]:
    """Inner bin edges at the reference's deciles (duplicates dropped), open at both ends."""
    import numpy as np

    edges = np.quantile(reference_sorted, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(edges)


def binned_counts(sorted_values: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> Any:
    """Counts of sorted values in the bins (-inf, e0], (e0, e1], ..., (ek, inf)."""
    import numpy as np

    cuts = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate(([0], cuts, [len(sorted_values)]))).astype(np.float64)


def psi(r: np.ndarray[Any, Any], c: np.ndarray[Any, Any]) -> float:
    """Population stability index of two count vectors: sum((c% - r%) * ln(c% / r%)), each
    share floored at :data:`PSI_FLOOR` so an empty bin does not make it infinite."""
    import numpy as np

    rp = np.maximum(r / r.sum(), PSI_FLOOR)
    cp = np.maximum(c / c.sum(), PSI_FLOOR)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def bh_adjust(pvalues: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate)."""
    import numpy as np

    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.clip(adjusted, 0, 1)
    return out
