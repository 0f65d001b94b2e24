"""Runbook templates for the common production failures, written into a project.

The templates are markdown files shipped in ``conveyor/monitoring/runbooks/`` (drift, latency,
error spike, bad rollout); alert rules link them with ``runbook: runbooks/drift.md``, and the
link lands in every incident's evidence and notification.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from conveyor.core.atomic import atomic_write_bytes

__all__ = ["RUNBOOKS", "write_runbooks"]

RUNBOOKS = ("bad-rollout.md", "drift.md", "error-spike.md", "latency.md")


def write_runbooks(folder: Path, *, overwrite: bool = False) -> list[Path]:
    """Write the runbook templates into ``folder`` (``<project>/runbooks``); returns the paths
    written. Existing files are kept unless ``overwrite``: a team edits its runbooks."""
    source = importlib.resources.files("conveyor.monitoring").joinpath("runbooks")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in RUNBOOKS:
        target = folder / name
        if target.exists() and not overwrite:
            continue
        atomic_write_bytes(target, source.joinpath(name).read_bytes())
        written.append(target)
    return written
