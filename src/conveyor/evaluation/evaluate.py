"""One evaluation of one model's predictions on one dataset: every number a gate may read.

:func:`evaluate_predictions` computes the task's metrics, the reliability curve, per-slice
metrics and fairness per sensitive attribute, and returns an :class:`EvaluationReport` whose
``to_dict()`` is stored with the evaluation (JSON: plain floats, ``None`` for undefined values).

The fairness summaries enter ``metrics`` under their registry names
(``fairness.demographic_parity_difference`` ...) as the **worst** value over the declared
sensitive attributes: the largest difference, the smallest ratio. A policy bounds the worst
case; the per-attribute numbers are under ``fairness``. Fairness needs hard decisions, so it is
computed for binary classification only, on ``score >= threshold``.

:func:`predict_for_evaluation` turns a packaged model and a frame into the scores these
functions take, and says which task the model does (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ValidationError
from conveyor.evaluation._arrays import as_array, binary_labels
from conveyor.evaluation.calibration import ReliabilityCurve, curve_of
from conveyor.evaluation.fairness import SUMMARIES, FairnessReport, fairness_metrics
from conveyor.evaluation.metrics import classification_metrics, regression_metrics
from conveyor.evaluation.slices import slice_metrics

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt
    import pandas as pd

    from conveyor.packaging import LoadedModel

__all__ = [
    "EVALUATION_TASKS",
    "EvaluationReport",
    "evaluate_predictions",
    "model_classes",
    "predict_for_evaluation",
]

#: The tasks :func:`evaluate_predictions` takes.
EVALUATION_TASKS = ("classification", "regression")
_FAIRNESS_PREFIX = "fairness."


@dataclass(frozen=True)
class EvaluationReport:
    """Everything one evaluation measured.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        n: Rows evaluated.
        metrics: Metric name -> value (``None`` when undefined), fairness worst cases included.
        slices: ``{column: {group: {"count", "small", <metric>...}}}``.
        fairness: Sensitive attribute -> its report.
        calibration: The reliability curve (binary classification only).
        settings: ``threshold``, ``n_bins``, ``min_group_size`` used.
    """

    task: str
    n: int
    metrics: dict[str, float | None]
    slices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    fairness: dict[str, FairnessReport] = field(default_factory=dict)
    calibration: ReliabilityCurve | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: no numpy types, no NaN."""
        return {
            "task": self.task,
            "n": self.n,
            "metrics": dict(self.metrics),
            "slices": {
                c: {g: dict(v) for g, v in groups.items()} for c, groups in self.slices.items()
            },
            "fairness": {name: report.to_dict() for name, report in self.fairness.items()},
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """The report written by :meth:`to_dict`.

        Raises:
            ValidationError: when the data is not an evaluation report's.
        """
        try:
            calibration = data.get("calibration")
            return cls(
                task=str(data["task"]),
                n=int(data["n"]),
                metrics={
                    str(k): (None if v is None else float(v)) for k, v in data["metrics"].items()
                },
                slices={
                    str(c): {str(g): dict(v) for g, v in groups.items()}
                    for c, groups in (data.get("slices") or {}).items()
                },
                fairness={
                    str(k): FairnessReport.from_dict(v)
                    for k, v in (data.get("fairness") or {}).items()
                },
                calibration=None
                if calibration is None
                else ReliabilityCurve.from_dict(calibration),
                settings=dict(data.get("settings") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(
                f"not an evaluation report ({exc!r})", hint="see EvaluationReport.to_dict()"
            ) from exc


def evaluate_predictions(
    y_true: Any,
    y_score: Any,
    *,
    task: str,
    frame: pd.DataFrame | None = None,
    slices: Sequence[str] = (),
    sensitive: Sequence[str] = (),
    threshold: float = 0.5,
    n_bins: int = 10,
    min_group_size: int = 30,
    classes: Sequence[Any] | None = None,
) -> EvaluationReport:
    """Evaluate predictions against labels: metrics, calibration, slices and fairness.

    Args:
        y_true: One label (classification) or true value (regression) per row.
        y_score: Binary: positive-class probabilities; multiclass: an ``(n, k)`` probability
            matrix; regression: predictions. :func:`predict_for_evaluation` gives these.
        task: ``"classification"`` or ``"regression"``.
        frame: The evaluation rows, needed for ``slices`` and ``sensitive``.
        slices: Columns to compute per-group metrics over.
        sensitive: Columns to compute fairness over (binary classification only).
        threshold: A row is predicted positive when its score is ``>=`` this.
        n_bins: Equal-width bins of the reliability curve and the calibration error.
        min_group_size: Slices and fairness groups smaller than this are flagged (and left out
            of the fairness summaries).
        classes: As in :func:`~conveyor.evaluation.classification_metrics` (e.g. from
            :func:`model_classes`).

    Raises:
        ValidationError: on an unknown task, bad labels or scores, a slice or sensitive column
            the frame lacks (naming the columns it has), or fairness asked of a model that is
            not a binary classifier.
    """
    if task not in EVALUATION_TASKS:
        raise ValidationError(
            f"unknown evaluation task {task!r}", hint=f"use one of: {', '.join(EVALUATION_TASKS)}"
        )
    columns = [*slices, *sensitive]
    if columns and frame is None:
        raise ValidationError(
            f"slices or sensitive attributes ({', '.join(columns)}) need the evaluation frame",
            hint="pass frame=<the evaluation rows>",
        )
    n = len(as_array(y_true, "y_true"))
    binary = task == "classification" and np.ndim(y_score) == 1
    if sensitive and not binary:
        raise ValidationError(
            f"fairness over {', '.join(sensitive)} needs a binary classifier; this is "
            f"{'a multiclass classifier' if task == 'classification' else 'a regressor'}",
            hint="remove `sensitive` from the evaluation, or bound per-slice metrics instead",
        )
    calibration: ReliabilityCurve | None = None
    fairness: dict[str, FairnessReport] = {}
    values: dict[str, float]
    if task == "regression":
        values = regression_metrics(y_true, y_score)
    else:
        values = classification_metrics(
            y_true, y_score, threshold=threshold, n_bins=n_bins, classes=classes
        )
    if binary:
        y = binary_labels(y_true, classes)
        p = np.asarray(y_score, dtype=np.float64)
        calibration = curve_of(y, p, n_bins=n_bins, strategy="uniform")
        predicted = (p >= threshold).astype(np.float64)
        assert frame is not None or not sensitive
        for column in sensitive:
            assert frame is not None
            fairness[column] = fairness_metrics(
                y,
                predicted,
                _column(frame, column, "sensitive"),
                attribute=column,
                min_group_size=min_group_size,
            )
    metrics: dict[str, float | None] = {
        k: (v if np.isfinite(v) else None) for k, v in values.items()
    }
    if fairness:
        metrics.update(_worst_fairness(fairness))
    by_slice = (
        slice_metrics(
            frame,
            y_true,
            y_score,
            columns=list(slices),
            task=task,
            threshold=threshold,
            n_bins=n_bins,
            min_count=min_group_size,
            classes=classes,
        )
        if slices and frame is not None
        else {}
    )
    return EvaluationReport(
        task=task,
        n=n,
        metrics=metrics,
        slices=by_slice,
        fairness=fairness,
        calibration=calibration,
        settings={
            "threshold": float(threshold),
            "n_bins": n_bins,
            "min_group_size": min_group_size,
        },
    )


def _column(frame: pd.DataFrame, column: str, kind: str) -> pd.Series:
    if column not in frame.columns:
        raise ValidationError(
            f"{kind} column '{column}' is not in the evaluation data",
            hint=f"columns it has: {', '.join(map(str, frame.columns))}",
        )
    return frame[column]


def _worst_fairness(reports: Mapping[str, FairnessReport]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in SUMMARIES:
        values = [v for r in reports.values() if (v := getattr(r, name)) is not None]
        pick = min if name.endswith("_ratio") else max
        out[_FAIRNESS_PREFIX + name] = float(pick(values)) if values else None
    return out


def predict_for_evaluation(
    loaded_model: LoadedModel, frame: pd.DataFrame
) -> tuple[npt.NDArray[np.float64], str]:
    """The scores to evaluate a packaged model by, and its task.

    The task is read from the model's signature and estimator, in this order:

    1. it has a ``predict_proba`` output -> ``"classification"``; the scores are that output:
       the probability of ``classes_[1]`` (1-D) for a binary classifier, the ``(n, k)`` matrix
       for a multiclass one (columns in ``classes_`` order, see :func:`model_classes`);
    2. the estimator is a scikit-learn classifier without probabilities -> refused: ranking and
       calibration metrics need probabilities;
    3. otherwise -> ``"regression"``; the scores are ``predict`` as floats.

    Only the signature's input columns of ``frame`` are passed to the model, so the frame may
    hold the label and slice columns too.

    Raises:
        ValidationError: when the frame lacks an input column, the model cannot predict on it,
            or it is a classifier without ``predict_proba``.
    """
    names = list(loaded_model.signature.input_names)
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValidationError(
            f"the evaluation data lacks input column(s) {', '.join(missing)} of "
            f"model '{loaded_model.manifest.name}'",
            hint=f"columns it has: {', '.join(map(str, frame.columns))}",
        )
    outputs = {spec.name for spec in loaded_model.signature.outputs}
    if "predict_proba" in outputs:
        proba = loaded_model.predict(frame[names])["predict_proba"]
        return np.asarray(proba, dtype=np.float64), "classification"
    from sklearn.base import is_classifier

    if is_classifier(loaded_model.estimator):
        raise ValidationError(
            f"model '{loaded_model.manifest.name}' is a classifier without predict_proba; "
            "ROC AUC, log loss and calibration need probabilities",
            hint="train a classifier that has predict_proba (e.g. SVC(probability=True))",
        )
    predicted = loaded_model.predict(frame[names])["predict"]
    try:
        return np.asarray(predicted, dtype=np.float64), "regression"
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"model '{loaded_model.manifest.name}' predicts non-numeric values and has no "
            "predict_proba, so it is neither a probabilistic classifier nor a regressor",
            hint="package a classifier with predict_proba, or a regressor",
        ) from exc


def model_classes(loaded_model: LoadedModel) -> tuple[Any, ...] | None:
    """The class labels of a classifier, in the order of its probability columns (its
    ``classes_``), as plain Python values; ``None`` for a regressor."""
    classes = getattr(loaded_model.estimator, "classes_", None)
    if classes is None:
        return None
    return tuple(np.asarray(classes).tolist())
