"""``unchanged_run``: the run lock's answer, found without importing the stores' libraries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.core.project_dir import config_path
from conveyor.project import _runlock

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["unchanged_run"]


def unchanged_run(project_dir: Path | None, flags: dict[str, Any]) -> _runlock.LockedRun | None:
    """The last run, if nothing that decides a run's outcome has changed since; else None.

    Args:
        project_dir: The ``-C`` folder, or None to find the project from the current folder.
        flags: The store flags given on the command line (they choose the stores).
    """
    root, config = config_path(project_dir)
    return _runlock.check(root, config, flags)
