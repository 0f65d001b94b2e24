"""Pipelines of cached steps: ``@step`` functions wired by name, run with ``run_pipeline``."""

from __future__ import annotations

from conveyor.pipeline._dask import DaskExecutor
from conveyor.pipeline._executor import (
    Executor,
    InProcessExecutor,
    ProcessExecutor,
    StepOutcome,
    StepTask,
    execute,
    executor_for,
    using_executor,
)
from conveyor.pipeline._loader import load_pipeline
from conveyor.pipeline._pipeline import Pipeline
from conveyor.pipeline._runner import PipelineResult, StepEvent, StepResult, run_pipeline
from conveyor.pipeline._step import Step, step

__all__ = [
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "Pipeline",
    "PipelineResult",
    "ProcessExecutor",
    "Step",
    "StepEvent",
    "StepOutcome",
    "StepResult",
    "StepTask",
    "execute",
    "executor_for",
    "load_pipeline",
    "run_pipeline",
    "step",
    "using_executor",
]
