"""Metrics per slice: the same metrics, computed on the rows of each value of a column.

A model can be good on average and bad for one region or one contract type; a policy bounds the
worst slice (``slice.contract.recall >= 0.5``). :func:`slice_metrics` groups the rows of each
declared column and computes the task's metrics on each group:

- a text, bool or categorical column, or a numeric one with at most ``max_categories`` distinct
  values, is grouped by value;
- a numeric column with more distinct values is cut into ``quantiles`` equal-count bins
  (``pandas.qcut``, duplicate edges dropped), named by their interval, e.g. ``"(29.0, 41.0]"``;
- missing values form their own group, ``"(missing)"``.

A group smaller than ``min_count`` rows is still reported, with ``small: true``: its numbers
are noise, and a gate should not judge by them. A metric a group cannot define (ROC AUC of a
group holding one class) is ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ValidationError
from conveyor.evaluation._arrays import as_array, as_probabilities, as_scores, binary_labels
from conveyor.evaluation._kernels import REGRESSION
from conveyor.evaluation.fairness import MISSING_GROUP, group_codes
from conveyor.evaluation.metrics import binary_metrics, multiclass_metrics

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt
    import pandas as pd

__all__ = ["MAX_GROUPS", "slice_metrics"]

#: A column with more groups than this is refused: it is an identifier, not a slice.
MAX_GROUPS = 200


def slice_metrics(
    frame: pd.DataFrame,
    y_true: Any,
    y_score: Any,
    *,
    columns: Sequence[str],
    task: str,
    threshold: float = 0.5,
    n_bins: int = 10,
    min_count: int = 30,
    classes: Sequence[Any] | None = None,
    max_categories: int = 10,
    quantiles: int = 4,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Metrics per group of each slice column.

    Args:
        frame: The evaluation rows, holding the slice columns (row ``i`` is label ``i``).
        y_true: One label (or true value) per row.
        y_score: Classification: probabilities as in
            :func:`~conveyor.evaluation.classification_metrics`; regression: predictions.
        columns: The slice columns.
        task: ``"classification"`` or ``"regression"``.
        threshold: Binary classification: the positive threshold.
        n_bins: Binary classification: the bins of the calibration error.
        min_count: Groups with fewer rows are flagged ``small``.
        classes: As in :func:`~conveyor.evaluation.classification_metrics`.
        max_categories: A numeric column with more distinct values is cut into quantiles.
        quantiles: How many quantile bins.

    Returns:
        ``{column: {group: {"count": int, "small": bool, <metric>: float | None}}}``.

    Raises:
        ValidationError: naming a slice column the frame lacks (and the columns it has), a
            column with more than :data:`MAX_GROUPS` groups, or bad labels or scores.
    """
    compute = _metric_function(
        y_true, y_score, task=task, threshold=threshold, n_bins=n_bins, classes=classes
    )
    n = len(as_array(y_true, "y_true"))
    if len(frame) != n:
        raise ValidationError(
            f"the slice frame has {len(frame)} rows but y_true has {n}",
            hint="pass the frame the labels and predictions were taken from",
        )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for column in columns:
        codes, names = _slice_groups(frame, column, max_categories, quantiles)
        counts = np.bincount(codes, minlength=len(names))
        groups: dict[str, dict[str, Any]] = {}
        for code, name in enumerate(names):
            if counts[code] == 0:
                continue
            values = compute(codes == code)
            groups[name] = {
                "count": int(counts[code]),
                "small": bool(counts[code] < min_count),
                **{k: (float(v) if np.isfinite(v) else None) for k, v in values.items()},
            }
        out[column] = groups
    return out


def _metric_function(
    y_true: Any,
    y_score: Any,
    *,
    task: str,
    threshold: float,
    n_bins: int,
    classes: Sequence[Any] | None,
) -> Any:
    """Check labels and scores once; return mask -> metrics of the masked rows."""
    from conveyor.evaluation._arrays import class_indices, same_length

    if task == "regression":
        y = as_scores(y_true, "y_true")
        p = as_scores(y_score, "y_score")
        same_length(len(y), y_score=p)

        def regression(mask: npt.NDArray[np.bool_]) -> dict[str, float]:
            w = np.ones((1, int(mask.sum())))
            return {k: float(f(w, y[mask], p[mask], 0.0, 0)[0]) for k, f in REGRESSION.items()}

        return regression
    if task != "classification":
        raise ValidationError(f"unknown task {task!r}", hint="use 'classification' or 'regression'")
    scores = as_scores(y_score, "y_score", ndim=None)
    if scores.ndim == 2:
        proba = as_probabilities(scores, "y_score", ndim=2)
        labels = as_array(y_true, "y_true")
        same_length(len(labels), y_score=proba)
        order = list(classes) if classes is not None else list(np.unique(labels))
        if len(order) != proba.shape[1]:
            raise ValidationError(
                f"y_score has {proba.shape[1]} columns for {len(order)} classes",
                hint="pass classes=<the model's classes_>, in the order of the score columns",
            )
        index = class_indices(labels, order)
        return lambda mask: multiclass_metrics(index[mask], proba[mask])
    y01 = binary_labels(y_true, classes)
    p = as_probabilities(scores, "y_score")
    same_length(len(y01), y_score=p)
    return lambda mask: binary_metrics(y01[mask], p[mask], threshold=threshold, n_bins=n_bins)


def _slice_groups(
    frame: pd.DataFrame, column: str, max_categories: int, quantiles: int
) -> tuple[npt.NDArray[np.intp], list[str]]:
    import pandas as pd
    from pandas.api import types as pdt

    if column not in frame.columns:
        raise ValidationError(
            f"slice column '{column}' is not in the evaluation data",
            hint=f"columns it has: {', '.join(map(str, frame.columns))}",
        )
    values = frame[column]
    numeric = pdt.is_numeric_dtype(values.dtype) and not pdt.is_bool_dtype(values.dtype)
    if numeric and values.nunique(dropna=True) > max_categories:
        binned = pd.qcut(values, q=quantiles, duplicates="drop")
        codes = np.asarray(binned.cat.codes, dtype=np.intp)
        names = [str(interval) for interval in binned.cat.categories]
        if (codes < 0).any():
            codes = np.where(codes < 0, len(names), codes)
            names.append(MISSING_GROUP)
        return codes, names
    codes, names = group_codes(values, f"slice column '{column}'")
    if len(names) > MAX_GROUPS:
        raise ValidationError(
            f"slice column '{column}' has {len(names)} distinct values; a slice needs few groups",
            hint=f"slice by a column of at most {MAX_GROUPS} values, or a numeric one (binned)",
        )
    return codes, names
