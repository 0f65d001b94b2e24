"""Tracking: runs started from scripts and steps, metrics logged one call at a time, listings."""

from __future__ import annotations

from conveyor.tracking._handle import RunHandle
from conveyor.tracking.records import RUN_STATUSES, RunRecord
from conveyor.tracking.runs import get_metrics, list_runs, start_run

__all__ = ["RUN_STATUSES", "RunHandle", "RunRecord", "get_metrics", "list_runs", "start_run"]
