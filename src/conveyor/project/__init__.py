"""A project's workflows: open its stores, run its pipeline and register, promote, roll back."""

from __future__ import annotations

from conveyor.project._context import Project, open_project
from conveyor.project._workflows import (
    RunReport,
    audit_log,
    promote,
    rollback,
    run,
    verify_audit,
)

__all__ = [
    "Project",
    "RunReport",
    "audit_log",
    "open_project",
    "promote",
    "rollback",
    "run",
    "verify_audit",
]
