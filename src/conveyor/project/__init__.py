"""A project's workflows: open its stores, run its pipeline and register, promote, roll back.

Names are imported on first use: ``conveyor run`` checks its run lock (``run_lock``) before
the stores' libraries are loaded at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.project._context import Project, open_project
    from conveyor.project._report import GateReport, gate_report, render_markdown
    from conveyor.project._report_html import render_html
    from conveyor.project._runlock import LockedModel, LockedRun, LockedStep, RunLock, run_lock
    from conveyor.project._workflows import (
        RunReport,
        audit_log,
        evaluate,
        promote,
        review,
        rollback,
        run,
        verify_audit,
    )

__all__ = [
    "GateReport",
    "LockedModel",
    "LockedRun",
    "LockedStep",
    "Project",
    "RunLock",
    "RunReport",
    "audit_log",
    "evaluate",
    "gate_report",
    "open_project",
    "promote",
    "render_html",
    "render_markdown",
    "review",
    "rollback",
    "run",
    "run_lock",
    "verify_audit",
]

_LAZY = {
    "LockedModel": "conveyor.project._runlock",
    "LockedRun": "conveyor.project._runlock",
    "LockedStep": "conveyor.project._runlock",
    "RunLock": "conveyor.project._runlock",
    "Project": "conveyor.project._context",
    "RunReport": "conveyor.project._workflows",
    "audit_log": "conveyor.project._workflows",
    "evaluate": "conveyor.project._workflows",
    "GateReport": "conveyor.project._report",
    "gate_report": "conveyor.project._report",
    "render_html": "conveyor.project._report_html",
    "render_markdown": "conveyor.project._report",
    "review": "conveyor.project._workflows",
    "open_project": "conveyor.project._context",
    "promote": "conveyor.project._workflows",
    "rollback": "conveyor.project._workflows",
    "run": "conveyor.project._workflows",
    "run_lock": "conveyor.project._runlock",
    "verify_audit": "conveyor.project._workflows",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.project' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
