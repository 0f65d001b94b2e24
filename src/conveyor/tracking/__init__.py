"""Tracking: runs started from scripts or steps, metrics logged one call at a time, listings."""

from __future__ import annotations

from conveyor.tracking._runs import RunHandle, RunRecord, get_metrics, list_runs, start_run

__all__ = ["RunHandle", "RunRecord", "get_metrics", "list_runs", "start_run"]
