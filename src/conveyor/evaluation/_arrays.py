"""Turning what callers pass (lists, Series, arrays of labels) into checked numpy arrays.

Every metric function validates through here, so bad input fails with one
:class:`~conveyor.core.errors.ValidationError` naming the problem, never with a numpy or
scikit-learn traceback from deep inside a computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def as_array(values: Any, what: str) -> npt.NDArray[Any]:
    """``values`` as a numpy array with at least one row."""
    array = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if array.ndim == 0 or len(array) == 0:
        raise ValidationError(f"{what} is empty", hint="evaluate on at least one labelled row")
    return array


def as_scores(values: Any, what: str, *, ndim: int | None = 1) -> FloatArray:
    """Finite float scores (1-D unless ``ndim`` says otherwise)."""
    array = as_array(values, what)
    if ndim is not None and array.ndim != ndim:
        raise ValidationError(
            f"{what} has shape {array.shape}, expected {ndim} dimension(s)",
            hint="pass one score per row (or a row of class probabilities per row)",
        )
    try:
        scores = array.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} holds values that are not numbers ({array.dtype})",
            hint="pass predicted probabilities or values as numbers",
        ) from exc
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValidationError(
            f"{what} holds {int(bad.sum())} NaN or infinite value(s), the first at row "
            f"{int(np.flatnonzero(bad.reshape(len(scores), -1).any(axis=1))[0])}",
            hint="fix the model or drop those rows before evaluating",
        )
    return scores


def as_probabilities(values: Any, what: str, *, ndim: int = 1) -> FloatArray:
    """Finite scores in [0, 1]."""
    scores = as_scores(values, what, ndim=ndim)
    if scores.min() < 0 or scores.max() > 1:
        raise ValidationError(
            f"{what} holds values outside [0, 1] (min {scores.min():.6g}, max {scores.max():.6g})",
            hint="pass probabilities (predict_proba), not decision scores or labels",
        )
    return scores


def same_length(n: int, **arrays: npt.NDArray[Any]) -> None:
    """Refuse arrays whose length differs from ``n``."""
    for name, array in arrays.items():
        if len(array) != n:
            raise ValidationError(
                f"{name} has {len(array)} rows but y_true has {n}",
                hint="pass the labels and the predictions of the same rows",
            )


def binary_labels(
    y_true: Any, classes: Sequence[Any] | None = None, *, what: str = "y_true"
) -> FloatArray:
    """Binary labels as 0.0/1.0, positive = ``classes[1]``.

    Without ``classes`` the labels must already be 0/1 (or booleans), because nothing else says
    which label the score is the probability of.
    """
    array = as_array(y_true, what)
    if array.ndim != 1:
        raise ValidationError(f"{what} has shape {array.shape}, expected one label per row")
    if classes is not None:
        if len(classes) != 2:
            raise ValidationError(
                f"a binary evaluation needs two classes, got {list(classes)!r}",
                hint="pass classes=(negative, positive), e.g. the model's classes_",
            )
        known = np.isin(array, np.asarray(list(classes), dtype=array.dtype))
        if not known.all():
            raise ValidationError(
                f"{what} holds label {array[~known][0]!r}, which is not one of the classes "
                f"{list(classes)!r}",
                hint="pass the model's classes, or clean the label column",
            )
        labels: FloatArray = (array == classes[1]).astype(np.float64)
        return labels
    if array.dtype == bool:
        return array.astype(np.float64)
    if array.dtype.kind in "iuf":
        values = array.astype(np.float64)
        if np.isin(values, (0.0, 1.0)).all():
            return values
    shown = ", ".join(repr(v) for v in np.unique(array.astype(str))[:5])
    raise ValidationError(
        f"{what} holds labels other than 0 and 1 ({shown}); a binary score must say which label "
        "it is the probability of",
        hint="pass classes=(negative, positive), e.g. the model's classes_",
    )


def class_indices(y_true: Any, classes: Sequence[Any], *, what: str = "y_true") -> npt.NDArray[Any]:
    """Labels as column indices into ``classes``."""
    array = as_array(y_true, what)
    order = np.asarray(list(classes))
    if len(np.unique(order)) != len(order):
        raise ValidationError(f"classes {list(classes)!r} name a class twice")
    sorter = np.argsort(order, kind="stable")
    try:
        pos = np.searchsorted(order, array, sorter=sorter)
    except TypeError as exc:
        raise ValidationError(
            f"{what} labels ({array.dtype}) cannot be matched with classes {list(classes)!r}",
            hint="pass classes of the same type as the labels",
        ) from exc
    pos = np.clip(pos, 0, len(order) - 1)
    index = sorter[pos]
    unknown = order[index] != array
    if unknown.any():
        raise ValidationError(
            f"{what} holds label {array[unknown][0]!r}, which is not one of the classes "
            f"{list(classes)!r}",
            hint="pass the model's classes (their order is the order of the score columns)",
        )
    return index


def require_both(y01: FloatArray, what: str = "y_true") -> None:
    """Refuse labels of one class: most classification metrics are undefined then."""
    positives = int(y01.sum())
    if positives == 0 or positives == len(y01):
        only = "positive" if positives else "negative"
        raise ValidationError(
            f"{what} holds only {only} labels ({len(y01)} rows); ROC AUC, PR AUC and recall "
            "are undefined",
            hint="evaluate on data that holds both classes",
        )
