"""Pipelines of cached steps: ``@step`` functions wired by name, run with ``run_pipeline``."""

from __future__ import annotations

from conveyor.pipeline._loader import load_pipeline
from conveyor.pipeline._pipeline import Pipeline
from conveyor.pipeline._runner import PipelineResult, StepEvent, StepResult, run_pipeline
from conveyor.pipeline._step import Step, step

__all__ = [
    "Pipeline",
    "PipelineResult",
    "Step",
    "StepEvent",
    "StepResult",
    "load_pipeline",
    "run_pipeline",
    "step",
]
