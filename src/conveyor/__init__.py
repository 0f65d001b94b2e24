"""Conveyor: continuous delivery of machine-learning models.

The names users' code needs are importable from here: ``from conveyor import Model, Pipeline,
step``. They are loaded on first use, so importing :mod:`conveyor` (and running
``conveyor --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.packaging import Model
    from conveyor.pipeline import Pipeline, step
    from conveyor.tracking import get_metrics, list_runs, start_run

__all__ = ["Model", "Pipeline", "__version__", "get_metrics", "list_runs", "start_run", "step"]

__version__ = "0.1.0"

_LAZY = {
    "Model": "conveyor.packaging",
    "Pipeline": "conveyor.pipeline",
    "get_metrics": "conveyor.tracking",
    "list_runs": "conveyor.tracking",
    "start_run": "conveyor.tracking",
    "step": "conveyor.pipeline",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
