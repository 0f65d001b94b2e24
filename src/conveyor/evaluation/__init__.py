"""Evaluation: metrics, calibration, slices, fairness and paired model comparisons.

Importing this package is cheap (no numpy, scipy or scikit-learn): the policy parser reads
:data:`METRICS` from the CLI start path, and every name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.evaluation._registry import METRICS, MetricInfo, metric_names
    from conveyor.evaluation.calibration import (
        ReliabilityCurve,
        expected_calibration_error,
        reliability_curve,
    )
    from conveyor.evaluation.compare import Comparison, delong, paired_bootstrap
    from conveyor.evaluation.evaluate import (
        EvaluationReport,
        evaluate_predictions,
        model_classes,
        predict_for_evaluation,
    )
    from conveyor.evaluation.fairness import FairnessReport, fairness_metrics
    from conveyor.evaluation.metrics import classification_metrics, regression_metrics
    from conveyor.evaluation.slices import slice_metrics

__all__ = [
    "METRICS",
    "Comparison",
    "EvaluationReport",
    "FairnessReport",
    "MetricInfo",
    "ReliabilityCurve",
    "classification_metrics",
    "delong",
    "evaluate_predictions",
    "expected_calibration_error",
    "fairness_metrics",
    "metric_names",
    "model_classes",
    "paired_bootstrap",
    "predict_for_evaluation",
    "regression_metrics",
    "reliability_curve",
    "slice_metrics",
]

_LAZY = {
    "METRICS": "conveyor.evaluation._registry",
    "Comparison": "conveyor.evaluation.compare",
    "EvaluationReport": "conveyor.evaluation.evaluate",
    "FairnessReport": "conveyor.evaluation.fairness",
    "MetricInfo": "conveyor.evaluation._registry",
    "ReliabilityCurve": "conveyor.evaluation.calibration",
    "classification_metrics": "conveyor.evaluation.metrics",
    "delong": "conveyor.evaluation.compare",
    "evaluate_predictions": "conveyor.evaluation.evaluate",
    "expected_calibration_error": "conveyor.evaluation.calibration",
    "fairness_metrics": "conveyor.evaluation.fairness",
    "metric_names": "conveyor.evaluation._registry",
    "model_classes": "conveyor.evaluation.evaluate",
    "paired_bootstrap": "conveyor.evaluation.compare",
    "predict_for_evaluation": "conveyor.evaluation.evaluate",
    "regression_metrics": "conveyor.evaluation.metrics",
    "reliability_curve": "conveyor.evaluation.calibration",
    "slice_metrics": "conveyor.evaluation.slices",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
