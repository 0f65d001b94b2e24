"""Calibration: does a predicted 0.8 come true 80% of the time?

:func:`reliability_curve` bins the predicted probabilities and compares, per bin, the mean
prediction with the observed share of positives; a gate reads the summary,
:func:`expected_calibration_error`, and a report draws the curve.

Bins follow scikit-learn's ``calibration_curve`` exactly, so the non-empty bins agree with it:
``uniform`` bins are ``n_bins`` equal-width bins of [0, 1]; ``quantile`` bins have edges at the
``np.percentile`` of the scores, so each holds about ``n / n_bins`` rows (ties can leave some
empty). A score exactly on an inner edge belongs to the bin below it (``np.searchsorted`` with
``side="left"`` on the inner edges), so bins are ``[e0, e1], (e1, e2], ... (e_{k-1}, e_k]``.
Unlike ``calibration_curve``, empty bins are kept (count 0, means ``None``), so a chart shows
where the model never predicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ValidationError
from conveyor.evaluation._arrays import as_probabilities, binary_labels, same_length

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["STRATEGIES", "ReliabilityCurve", "expected_calibration_error", "reliability_curve"]

STRATEGIES = ("uniform", "quantile")


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin calibration of binary probabilities, one entry per bin in every tuple.

    Attributes:
        strategy: ``"uniform"`` or ``"quantile"``.
        lower: Lower edge of each bin.
        upper: Upper edge of each bin.
        mean_predicted: Mean predicted probability in the bin (``None`` when empty).
        fraction_positive: Observed share of positives in the bin (``None`` when empty).
        count: Rows in the bin.
    """

    strategy: str
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    mean_predicted: tuple[float | None, ...]
    fraction_positive: tuple[float | None, ...]
    count: tuple[int, ...]

    @property
    def n(self) -> int:
        """Rows over all bins."""
        return sum(self.count)

    @property
    def expected_calibration_error(self) -> float:
        """Sum over non-empty bins of ``count / n * |fraction_positive - mean_predicted|``."""
        n = self.n
        return float(
            sum(
                c / n * abs(f - m)
                for c, f, m in zip(
                    self.count, self.fraction_positive, self.mean_predicted, strict=True
                )
                if c and f is not None and m is not None
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: the strategy and one dict per bin."""
        return {
            "strategy": self.strategy,
            "bins": [
                {"lower": lo, "upper": up, "mean_predicted": m, "fraction_positive": f, "count": c}
                for lo, up, m, f, c in zip(
                    self.lower,
                    self.upper,
                    self.mean_predicted,
                    self.fraction_positive,
                    self.count,
                    strict=True,
                )
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReliabilityCurve:
        """The curve written by :meth:`to_dict`.

        Raises:
            ValidationError: when the data is not a curve's.
        """
        try:
            bins = list(data["bins"])
            return cls(
                strategy=str(data["strategy"]),
                lower=tuple(float(b["lower"]) for b in bins),
                upper=tuple(float(b["upper"]) for b in bins),
                mean_predicted=tuple(_opt(b["mean_predicted"]) for b in bins),
                fraction_positive=tuple(_opt(b["fraction_positive"]) for b in bins),
                count=tuple(int(b["count"]) for b in bins),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"not a reliability curve ({exc!r})", hint="see ReliabilityCurve.to_dict()"
            ) from exc


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def reliability_curve(
    y_true: Any,
    y_score: Any,
    *,
    n_bins: int = 10,
    strategy: str = "uniform",
    classes: Sequence[Any] | None = None,
) -> ReliabilityCurve:
    """The reliability curve of binary probabilities.

    Args:
        y_true: 0/1 labels (or any two labels with ``classes=(negative, positive)``).
        y_score: Probability of the positive class, one per row.
        n_bins: Number of bins.
        strategy: ``"uniform"`` (equal width) or ``"quantile"`` (equal count).
        classes: ``(negative, positive)`` when the labels are not 0/1.

    Raises:
        ValidationError: on empty or mismatched input, scores outside [0, 1], a bad strategy or
            bin count.
    """
    y = binary_labels(y_true, classes)
    p = as_probabilities(y_score, "y_score")
    same_length(len(y), y_score=p)
    return curve_of(y, p, n_bins=n_bins, strategy=strategy)


def expected_calibration_error(
    y_true: Any,
    y_score: Any,
    *,
    n_bins: int = 10,
    strategy: str = "uniform",
    classes: Sequence[Any] | None = None,
) -> float:
    """Sum over non-empty bins of ``count / n * |fraction_positive - mean_predicted|``.

    Raises:
        ValidationError: as :func:`reliability_curve`.
    """
    curve = reliability_curve(y_true, y_score, n_bins=n_bins, strategy=strategy, classes=classes)
    return curve.expected_calibration_error


def curve_of(y: Any, p: Any, *, n_bins: int, strategy: str) -> ReliabilityCurve:
    """The curve of checked 0/1 labels and probabilities."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValidationError(f"n_bins {n_bins!r} is not a positive integer")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        raise ValidationError(
            f"unknown reliability curve strategy {strategy!r}",
            hint=f"use one of: {', '.join(STRATEGIES)}",
        )
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=n_bins)
    score_sum = np.bincount(ids, weights=p, minlength=n_bins)
    true_sum = np.bincount(ids, weights=y, minlength=n_bins)
    filled = count > 0
    safe = np.where(filled, count, 1)
    mean = score_sum / safe
    frac = true_sum / safe
    return ReliabilityCurve(
        strategy=strategy,
        lower=tuple(float(e) for e in edges[:-1]),
        upper=tuple(float(e) for e in edges[1:]),
        mean_predicted=tuple(float(v) if f else None for v, f in zip(mean, filled, strict=True)),
        fraction_positive=tuple(float(v) if f else None for v, f in zip(frac, filled, strict=True)),
        count=tuple(int(c) for c in count),
    )
