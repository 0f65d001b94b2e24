"""Metric kernels over weighted rows: one computation for the full data and for bootstraps.

A bootstrap resample draws each row some number of times, so it is the original rows with
integer weights. Every kernel here takes a weight matrix ``w`` of shape ``(b, n)`` (one row of
weights per resample; ``np.ones((1, n))`` for the data itself) and returns ``b`` values. The
scores are sorted once, not once per resample, so 1,000 resamples of the ROC AUC of 4,000 rows
cost a few matrix passes instead of 1,000 sorts. Undefined values (a resample without positives)
are NaN; callers decide what that means.

The conventions follow scikit-learn's, so values agree with it to rounding:
predicted positive means ``score >= threshold``; precision and F1 are 0 when nothing is predicted
positive (``zero_division=0``); PR AUC is average precision (no interpolation); log loss clips
probabilities to ``[eps, 1 - eps]``; R^2 of constant labels is 1.0 for a perfect fit and 0.0
otherwise; MAPE divides by ``max(|y|, eps)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
#: (w, y, score, threshold, n_bins) -> values, one per row of w.
Kernel = Callable[[FloatArray, FloatArray, FloatArray, float, int], FloatArray]

_EPS = float(np.finfo(np.float64).eps)


def _ratio(num: FloatArray, den: FloatArray, *, zero: float) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where(den == 0, zero, out)


def _mean(w: FloatArray, values: FloatArray) -> FloatArray:
    out: FloatArray = (w @ values) / w.sum(axis=1)
    return out


def _counts(
    w: FloatArray, y: FloatArray, score: FloatArray, threshold: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    predicted = (score >= threshold).astype(np.float64)
    tp = w @ (predicted * y)
    predicted_pos = w @ predicted
    pos = w @ y
    return tp, predicted_pos, pos, w.sum(axis=1)


def accuracy(w: FloatArray, y: FloatArray, s: FloatArray, t: float, _: int) -> FloatArray:
    return _mean(w, ((s >= t) == (y == 1)).astype(np.float64))


def precision(w: FloatArray, y: FloatArray, s: FloatArray, t: float, _: int) -> FloatArray:
    tp, predicted_pos, _pos, _n = _counts(w, y, s, t)
    return _ratio(tp, predicted_pos, zero=0.0)


def recall(w: FloatArray, y: FloatArray, s: FloatArray, t: float, _: int) -> FloatArray:
    tp, _pp, pos, _n = _counts(w, y, s, t)
    return _ratio(tp, pos, zero=np.nan)


def f1(w: FloatArray, y: FloatArray, s: FloatArray, t: float, _: int) -> FloatArray:
    tp, predicted_pos, pos, _n = _counts(w, y, s, t)
    return _ratio(2 * tp, predicted_pos + pos, zero=0.0)


def _groups(
    w: FloatArray, y: FloatArray, s: FloatArray, *, descending: bool
) -> tuple[FloatArray, FloatArray]:
    """Weighted positives and negatives per distinct score, in score order."""
    order = np.argsort(-s if descending else s, kind="mergesort")
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ws = w[:, order]
    pos = np.add.reduceat(ws * y[order], starts, axis=1)
    neg = np.add.reduceat(ws, starts, axis=1) - pos
    return pos, neg


def roc_auc(w: FloatArray, y: FloatArray, s: FloatArray, _t: float, _b: int) -> FloatArray:
    # The Mann-Whitney form: P(score of a positive > score of a negative), ties counting half.
    pos, neg = _groups(w, y, s, descending=False)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _ratio(num, pos.sum(axis=1) * neg.sum(axis=1), zero=np.nan)


def pr_auc(w: FloatArray, y: FloatArray, s: FloatArray, _t: float, _b: int) -> FloatArray:
    # Average precision: sum over thresholds of (recall gained) * precision at that threshold.
    pos, neg = _groups(w, y, s, descending=True)
    tps = np.cumsum(pos, axis=1)
    prec = _ratio(tps, tps + np.cumsum(neg, axis=1), zero=0.0)
    return _ratio((pos * prec).sum(axis=1), tps[:, -1], zero=np.nan)


def log_loss(w: FloatArray, y: FloatArray, s: FloatArray, _t: float, _b: int) -> FloatArray:
    p = np.clip(s, _EPS, 1 - _EPS)
    return _mean(w, -(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier_score(w: FloatArray, y: FloatArray, s: FloatArray, _t: float, _b: int) -> FloatArray:
    return _mean(w, (s - y) ** 2)


def uniform_bins(s: FloatArray, n_bins: int) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Bin of each score on ``n_bins`` equal-width bins of [0, 1], as scikit-learn's
    ``calibration_curve`` assigns them (a score on an inner edge goes to the lower bin)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], s)


def expected_calibration_error(
    w: FloatArray, y: FloatArray, s: FloatArray, _t: float, n_bins: int
) -> FloatArray:
    # sum_bins count/n * |mean(y) - mean(s)| = sum_bins |sum(y - s)| / n
    onehot = np.zeros((len(s), n_bins))
    onehot[np.arange(len(s)), uniform_bins(s, n_bins)] = 1.0
    gaps: FloatArray = np.abs((w * (y - s)) @ onehot).sum(axis=1) / w.sum(axis=1)
    return gaps


def mae(w: FloatArray, y: FloatArray, p: FloatArray, _t: float, _b: int) -> FloatArray:
    return _mean(w, np.abs(y - p))


def rmse(w: FloatArray, y: FloatArray, p: FloatArray, _t: float, _b: int) -> FloatArray:
    out: FloatArray = np.sqrt(_mean(w, (y - p) ** 2))
    return out


def r2(w: FloatArray, y: FloatArray, p: FloatArray, _t: float, _b: int) -> FloatArray:
    total = w.sum(axis=1)
    residual = w @ (y - p) ** 2
    centre = (w @ y) / total
    spread = (w * (y[None, :] - centre[:, None]) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 - residual / spread
    return np.where(spread == 0, np.where(residual == 0, 1.0, 0.0), out)


def mape(w: FloatArray, y: FloatArray, p: FloatArray, _t: float, _b: int) -> FloatArray:
    return _mean(w, np.abs(y - p) / np.maximum(np.abs(y), _EPS))


BINARY: dict[str, Kernel] = {
    "accuracy": accuracy,
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "log_loss": log_loss,
    "brier_score": brier_score,
    "expected_calibration_error": expected_calibration_error,
}
REGRESSION: dict[str, Kernel] = {"mae": mae, "rmse": rmse, "r2": r2, "mape": mape}
