"""Fairness across the groups of a sensitive attribute, from hard predictions.

For each group of the attribute (each distinct value; a missing value is its own group,
``"(missing)"``) :func:`fairness_metrics` counts the confusion matrix once, with ``bincount``
over the group codes, and derives the per-group rates and the disparity summaries that a policy
bounds. The definitions are fairlearn's (``between_groups``, ``agg="worst_case"``):

- ``demographic_parity_difference``: max minus min group selection rate (share predicted
  positive); ``demographic_parity_ratio``: min over max.
- ``equalized_odds_difference``: the larger of the TPR and the FPR differences;
  ``equalized_odds_ratio``: the smaller of the TPR and the FPR ratios.

Where we differ from fairlearn, on purpose:

- **Small groups** (fewer than ``min_group_size`` rows) are reported, with ``small: true``,
  but left out of the four summaries: a group of five rows swings a difference by 0.2 with one
  row, and a gate must not fail (or pass) on that noise. They are listed in ``small_groups``.
  With ``min_group_size=1`` every group counts, as in fairlearn.
- **Undefined rates**: a group without positive rows has no TPR (fairlearn reports 0), one
  without negatives no FPR; those are ``None`` and the group is left out of that rate's
  difference and ratio.
- A summary needs two groups; with fewer it is ``None``. A ratio whose largest rate is 0 (every
  group at 0) is 1.0: the rates are equal, which is what a ratio of 1 says.

When every group is large enough and holds both classes, the numbers are fairlearn's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ValidationError
from conveyor.evaluation._arrays import as_array, binary_labels, same_length

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

__all__ = ["MISSING_GROUP", "SUMMARIES", "FairnessReport", "fairness_metrics", "group_codes"]

#: The group name of rows whose sensitive value is missing.
MISSING_GROUP = "(missing)"
#: The summary names; the registry names are these prefixed with ``fairness.``.
SUMMARIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
)


@dataclass(frozen=True)
class FairnessReport:
    """Fairness of hard predictions across the groups of one sensitive attribute.

    Attributes:
        attribute: The sensitive column's name.
        groups: Group name -> ``count, positives, selection_rate, tpr, fpr, accuracy,
            precision, recall, small`` (rates ``None`` when undefined).
        demographic_parity_difference: Max minus min selection rate over groups.
        demographic_parity_ratio: Min over max selection rate.
        equalized_odds_difference: The larger of the TPR and FPR differences.
        equalized_odds_ratio: The smaller of the TPR and FPR ratios.
        min_group_size: Groups smaller than this are reported but not summarised.
        small_groups: The groups left out of the summaries for their size.
    """

    attribute: str
    groups: dict[str, dict[str, Any]]
    demographic_parity_difference: float | None
    demographic_parity_ratio: float | None
    equalized_odds_difference: float | None
    equalized_odds_ratio: float | None
    min_group_size: int
    small_groups: tuple[str, ...] = field(default=())

    def summary(self) -> dict[str, float | None]:
        """The four summaries by name (without the ``fairness.`` prefix)."""
        return {name: getattr(self, name) for name in SUMMARIES}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (``None`` for undefined values)."""
        return {
            "attribute": self.attribute,
            **self.summary(),
            "min_group_size": self.min_group_size,
            "small_groups": list(self.small_groups),
            "groups": {name: dict(values) for name, values in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FairnessReport:
        """The report written by :meth:`to_dict`.

        Raises:
            ValidationError: when the data is not a fairness report's.
        """
        try:
            return cls(
                attribute=str(data["attribute"]),
                groups={str(k): dict(v) for k, v in data["groups"].items()},
                min_group_size=int(data["min_group_size"]),
                small_groups=tuple(data.get("small_groups", ())),
                **{name: _opt(data[name]) for name in SUMMARIES},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(
                f"not a fairness report ({exc!r})", hint="see FairnessReport.to_dict()"
            ) from exc


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def group_codes(values: Any, what: str) -> tuple[npt.NDArray[np.intp], list[str]]:
    """A group code per row and the group names (sorted; missing values last)."""
    import pandas as pd

    array = as_array(values, what)
    if array.ndim != 1:
        raise ValidationError(f"{what} has shape {array.shape}, expected one value per row")
    series = pd.Series(array)
    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:
        # Mixed types (numbers and text) do not sort; their text forms do.
        codes, uniques = pd.factorize(series.map(str).where(series.notna()), sort=True)
    names = [str(v) for v in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(MISSING_GROUP)
    return np.asarray(codes, dtype=np.intp), names


def fairness_metrics(
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    *,
    attribute: str = "sensitive",
    min_group_size: int = 30,
    classes: Sequence[Any] | None = None,
) -> FairnessReport:
    """Per-group rates and disparity summaries of binary hard predictions.

    Args:
        y_true: One label per row: 0/1, bool, or two labels named by ``classes``.
        y_pred: One predicted label per row, in the same labels.
        sensitive: One group value per row (e.g. ``frame["gender"]``).
        attribute: The attribute's name, for the report and messages.
        min_group_size: Groups with fewer rows are reported and flagged, not summarised.
        classes: ``(negative, positive)`` when the labels are not 0/1.

    Raises:
        ValidationError: on empty or mismatched input or labels that are not binary.
    """
    y = binary_labels(y_true, classes)
    pred = binary_labels(y_pred, classes, what="y_pred")
    codes, names = group_codes(sensitive, f"sensitive attribute '{attribute}'")
    same_length(len(y), y_pred=pred, sensitive=codes)
    if (
        isinstance(min_group_size, bool)
        or not isinstance(min_group_size, int)
        or min_group_size < 1
    ):
        raise ValidationError(f"min_group_size {min_group_size!r} is not a positive integer")
    g = len(names)
    count = np.bincount(codes, minlength=g).astype(np.float64)
    pos = np.bincount(codes, weights=y, minlength=g)
    selected = np.bincount(codes, weights=pred, minlength=g)
    tp = np.bincount(codes, weights=y * pred, minlength=g)
    neg = count - pos
    fp = selected - tp
    tn = neg - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        selection = selected / count
        tpr = np.where(pos > 0, tp / pos, np.nan)
        fpr = np.where(neg > 0, fp / neg, np.nan)
        accuracy = (tp + tn) / count
        precision = np.where(selected > 0, tp / selected, 0.0)
    small = count < min_group_size
    groups = {
        name: {
            "count": int(count[i]),
            "positives": int(pos[i]),
            "selection_rate": float(selection[i]),
            "tpr": _finite(tpr[i]),
            "fpr": _finite(fpr[i]),
            "accuracy": float(accuracy[i]),
            "precision": float(precision[i]),
            "recall": _finite(tpr[i]),
            "small": bool(small[i]),
        }
        for i, name in enumerate(names)
    }
    keep = ~small
    dp_diff, dp_ratio = _spread(selection[keep])
    tpr_diff, tpr_ratio = _spread(tpr[keep])
    fpr_diff, fpr_ratio = _spread(fpr[keep])
    return FairnessReport(
        attribute=attribute,
        groups=groups,
        demographic_parity_difference=dp_diff,
        demographic_parity_ratio=dp_ratio,
        equalized_odds_difference=_worst(max, tpr_diff, fpr_diff),
        equalized_odds_ratio=_worst(min, tpr_ratio, fpr_ratio),
        min_group_size=min_group_size,
        small_groups=tuple(name for name, s in zip(names, small, strict=True) if s),
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _spread(rates: npt.NDArray[np.float64]) -> tuple[float | None, float | None]:
    defined = rates[np.isfinite(rates)]
    if len(defined) < 2:
        return None, None
    low, high = float(defined.min()), float(defined.max())
    return high - low, (low / high if high > 0 else 1.0)


def _worst(pick: Any, a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return float(pick(values)) if values else None
