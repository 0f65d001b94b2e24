"""The registry of metric names a policy may use, without numpy: the policy parser reads it on
the CLI start path. Which keys each task computes is documented in ``metrics``."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["METRICS", "TASKS", "MetricInfo", "metric_names"]

Task = Literal["classification", "regression", "fairness"]
#: The tasks of :data:`METRICS`.
TASKS: tuple[str, ...] = ("classification", "regression", "fairness")


@dataclass(frozen=True)
class MetricInfo:
    """What a metric name means to a policy.

    Attributes:
        name: The name a policy uses.
        task: ``"classification"``, ``"regression"`` or ``"fairness"``.
        direction: ``"higher"`` or ``"lower"``: which way is better.
        description: One line for reports and error messages.
        comparable: Whether :func:`~conveyor.evaluation.paired_bootstrap` can compare two
            models on it (fairness summaries cannot: they are not a mean over rows).
    """

    name: str
    task: str
    direction: str
    description: str
    comparable: bool = True

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"


def _info(name: str, task: str, direction: str, description: str) -> tuple[str, MetricInfo]:
    return name, MetricInfo(name, task, direction, description, comparable=task != "fairness")


#: Every metric name a policy may use.
METRICS: Mapping[str, MetricInfo] = MappingProxyType(
    dict(
        [
            _info("accuracy", "classification", "higher", "share of rows classified right"),
            _info(
                "precision",
                "classification",
                "higher",
                "share of predicted positives that are positive (multiclass: macro average)",
            ),
            _info(
                "recall",
                "classification",
                "higher",
                "share of positives predicted positive (multiclass: macro average)",
            ),
            _info(
                "f1",
                "classification",
                "higher",
                "harmonic mean of precision and recall (multiclass: macro average)",
            ),
            _info(
                "roc_auc",
                "classification",
                "higher",
                "area under the ROC curve (multiclass: one-vs-rest, macro average)",
            ),
            _info(
                "pr_auc",
                "classification",
                "higher",
                "area under the precision-recall curve, as average precision (binary only)",
            ),
            _info(
                "log_loss",
                "classification",
                "lower",
                "mean negative log-likelihood of the true class",
            ),
            _info(
                "brier_score",
                "classification",
                "lower",
                "mean squared error of the positive-class probability (binary only)",
            ),
            _info(
                "expected_calibration_error",
                "classification",
                "lower",
                "mean gap between "
                "predicted probability and observed frequency over equal-width bins "
                "(binary only)",
            ),
            _info("mae", "regression", "lower", "mean absolute error"),
            _info("rmse", "regression", "lower", "root mean squared error"),
            _info("r2", "regression", "higher", "coefficient of determination"),
            _info("mape", "regression", "lower", "mean absolute percentage error, as a fraction"),
            _info(
                "fairness.demographic_parity_difference",
                "fairness",
                "lower",
                "largest gap in selection rate between groups (worst sensitive attribute)",
            ),
            _info(
                "fairness.demographic_parity_ratio",
                "fairness",
                "higher",
                "smallest ratio of group selection rates, min/max (worst sensitive attribute)",
            ),
            _info(
                "fairness.equalized_odds_difference",
                "fairness",
                "lower",
                "largest gap in "
                "true or false positive rate between groups (worst sensitive attribute)",
            ),
            _info(
                "fairness.equalized_odds_ratio",
                "fairness",
                "higher",
                "smallest ratio of group true or false positive rates (worst sensitive attribute)",
            ),
        ]
    )
)


def metric_names(task: str) -> tuple[str, ...]:
    """The registered metric names of one task, in registry order.

    Raises:
        ValidationError: when ``task`` is not one of :data:`TASKS`.
    """
    if task not in TASKS:
        raise ValidationError(
            f"unknown metric task {task!r}", hint=f"use one of: {', '.join(TASKS)}"
        )
    return tuple(name for name, info in METRICS.items() if info.task == task)
