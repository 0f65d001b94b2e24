"""The metrics Conveyor computes, the registry of their names, and which way is better.

A policy names metrics (``roc_auc >= production.roc_auc - 0.005``); :data:`METRICS` is the one
list of names a policy may use, with the task each belongs to and whether higher or lower is
better, so a gate knows which end of a confidence interval to read.

Which keys each task gives:

- **binary classification** (``y_score`` 1-D, the probability of the positive class):
  ``accuracy, precision, recall, f1, roc_auc, pr_auc, log_loss, brier_score,
  expected_calibration_error``; a row is predicted positive when its score is
  ``>= threshold``. ``pr_auc`` is average precision (scikit-learn's
  ``average_precision_score``: no interpolation). ECE uses ``n_bins`` equal-width bins.
- **multiclass classification** (``y_score`` 2-D, one probability column per class, in the
  order of ``classes``): ``accuracy, precision, recall, f1`` (macro averages over the classes;
  the predicted class is the arg-max), ``roc_auc`` (one-vs-rest, macro) and ``log_loss``.
- **regression**: ``mae, rmse, r2, mape`` (MAPE as scikit-learn's
  ``mean_absolute_percentage_error``: a fraction, not a percentage).
- **fairness** (see :mod:`conveyor.evaluation.fairness`): ``fairness.*`` names, the worst value
  over the declared sensitive attributes.

Undefined input is refused, not reported as NaN: labels of one class only (AUC and recall are
undefined), NaN or infinite scores, lengths that differ, no rows. Precision and F1 with nothing
predicted positive are 0, as scikit-learn's ``zero_division=0``. Per-slice metrics, where a small
group may well hold one class, report an undefined metric as ``None`` instead (see ``slices``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ValidationError
from conveyor.evaluation import _kernels
from conveyor.evaluation._arrays import (
    as_array,
    as_probabilities,
    as_scores,
    binary_labels,
    class_indices,
    require_both,
    same_length,
)
from conveyor.evaluation._registry import METRICS, TASKS, MetricInfo, metric_names

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "METRICS",
    "TASKS",
    "MetricInfo",
    "classification_metrics",
    "metric_names",
    "regression_metrics",
]

BINARY_METRICS = tuple(_kernels.BINARY)
MULTICLASS_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = tuple(_kernels.REGRESSION)


def classification_metrics(
    y_true: Any,
    y_score: Any,
    *,
    threshold: float = 0.5,
    n_bins: int = 10,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Classification metrics of probabilities against labels.

    Args:
        y_true: One label per row.
        y_score: Binary: the probability of the positive class, one per row. Multiclass: a
            ``(n, k)`` matrix of class probabilities whose rows sum to 1.
        threshold: Binary only: a row is predicted positive when its score is ``>=`` this.
        n_bins: Binary only: equal-width bins of the expected calibration error.
        classes: Binary: ``(negative, positive)``, needed unless the labels are 0/1 or bool.
            Multiclass: the label of each score column (e.g. the model's ``classes_``);
            defaults to the sorted distinct labels when there are ``k`` of them.

    Returns:
        Metric name -> value; the keys depend on binary or multiclass (see the module doc).

    Raises:
        ValidationError: on empty input, lengths that differ, NaN scores, probabilities outside
            [0, 1], labels of one class only (or, multiclass, a class without rows).
    """
    scores = as_scores(y_score, "y_score", ndim=None)
    if scores.ndim == 2:
        return _multiclass(y_true, scores, classes)
    y = binary_labels(y_true, classes)
    p = as_probabilities(scores, "y_score")
    same_length(len(y), y_score=p)
    require_both(y)
    _check_settings(threshold, n_bins)
    return binary_metrics(y, p, threshold=threshold, n_bins=n_bins)


def binary_metrics(y: Any, p: Any, *, threshold: float, n_bins: int) -> dict[str, float]:
    """Every binary metric on checked 0/1 labels and probabilities; NaN where undefined."""
    w = np.ones((1, len(y)))
    return {
        name: float(kernel(w, y, p, threshold, n_bins)[0])
        for name, kernel in _kernels.BINARY.items()
    }


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``mae``, ``rmse``, ``r2`` and ``mape`` of predictions against true values.

    Raises:
        ValidationError: on empty input, lengths that differ, or non-finite values.
    """
    y = as_scores(y_true, "y_true")
    p = as_scores(y_pred, "y_pred")
    same_length(len(y), y_pred=p)
    w = np.ones((1, len(y)))
    return {name: float(kernel(w, y, p, 0.0, 0)[0]) for name, kernel in _kernels.REGRESSION.items()}


def multiclass_metrics(index: Any, proba: Any) -> dict[str, float]:
    """Multiclass metrics on class indices and a checked probability matrix; NaN where a
    class has no rows (its one-vs-rest AUC is undefined)."""
    n, k = proba.shape
    predicted = proba.argmax(axis=1)
    true_counts = np.bincount(index, minlength=k).astype(np.float64)
    predicted_counts = np.bincount(predicted, minlength=k).astype(np.float64)
    hits = np.bincount(index[predicted == index], minlength=k).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted_counts > 0, hits / predicted_counts, 0.0)
        rec = np.where(true_counts > 0, hits / true_counts, 0.0)
        f1 = np.where(
            true_counts + predicted_counts > 0, 2 * hits / (true_counts + predicted_counts), 0.0
        )
    w = np.ones((1, n))
    # One-vs-rest: a loop over the k classes, each a vectorised AUC over all rows.
    aucs = [
        _kernels.roc_auc(w, (index == c).astype(np.float64), proba[:, c], 0.0, 0)[0]
        for c in range(k)
    ]
    clipped = np.clip(proba, np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps)
    return {
        "accuracy": float(hits.sum() / n),
        "precision": float(prec.mean()),
        "recall": float(rec.mean()),
        "f1": float(f1.mean()),
        "roc_auc": float(np.mean(aucs)),
        "log_loss": float(-np.log(clipped[np.arange(n), index]).mean()),
    }


def _multiclass(y_true: Any, proba: Any, classes: Sequence[Any] | None) -> dict[str, float]:
    labels = as_array(y_true, "y_true")
    same_length(len(labels), y_score=proba)
    k = proba.shape[1]
    if classes is None:
        distinct = np.unique(labels)
        if len(distinct) != k:
            raise ValidationError(
                f"y_score has {k} columns but y_true holds {len(distinct)} distinct labels, so "
                "the column of each class is unknown",
                hint="pass classes=<the model's classes_>, in the order of the score columns",
            )
        classes = list(distinct)
    if len(classes) != k:
        raise ValidationError(
            f"y_score has {k} columns but {len(classes)} classes were given",
            hint="pass one class per score column",
        )
    as_probabilities(proba, "y_score", ndim=2)
    sums = proba.sum(axis=1)
    off = np.abs(sums - 1) > 1e-6
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValidationError(
            f"y_score row {row} sums to {sums[row]:.6g}, not 1; these are not class probabilities",
            hint="pass predict_proba output",
        )
    index = class_indices(labels, classes)
    missing = np.flatnonzero(np.bincount(index, minlength=k) == 0)
    if len(missing):
        raise ValidationError(
            f"y_true holds no row of class {classes[int(missing[0])]!r}; its one-vs-rest ROC AUC "
            "is undefined",
            hint="evaluate on data that holds every class",
        )
    return multiclass_metrics(index, proba)


def _check_settings(threshold: float, n_bins: int) -> None:
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValidationError(
            f"threshold {threshold!r} is not a probability", hint="use a value in [0, 1]"
        )
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValidationError(f"n_bins {n_bins!r} is not a positive integer")
