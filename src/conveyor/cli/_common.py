"""What every command shares: opening the project from the group's options, and the console."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click
    from rich.console import Console

    from conveyor.project import Project

__all__ = ["console", "open_from_context"]


def open_from_context(ctx: click.Context) -> Project:
    """Open the project named by ``-C`` (or found from the current folder) with flag overrides."""
    from conveyor.project import open_project

    obj = ctx.find_root().obj or {}
    project_dir = obj.get("project_dir")
    return open_project(Path(project_dir) if project_dir else None, obj.get("overrides"))


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    # Lines of a story or a log are not re-wrapped to the terminal: piped into CI logs they
    # would otherwise break at 80 columns mid-sentence.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)
