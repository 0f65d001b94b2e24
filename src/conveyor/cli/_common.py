"""What every command shares: opening the project from the group's options, and the console."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    import click
    from rich.console import Console

    from conveyor.project import Project

__all__ = ["command_path", "console", "open_from_context", "stop_on_signals"]


def open_from_context(ctx: click.Context, *, permission: str | None = None) -> Project:
    """Open the project named by ``-C`` (or found from the current folder) with flag overrides,
    once the acting user may run this command.

    The command's permission comes from :data:`conveyor.cli._permissions.COMMANDS` (or
    ``permission``, for a command whose arguments decide it); a command with none is refused.

    Raises:
        ForbiddenError: the command declares no permission, or access control is on and the
            acting user's role lacks it.
    """
    from conveyor.access import PUBLIC, require
    from conveyor.cli._permissions import permission_for
    from conveyor.core.errors import ForbiddenError
    from conveyor.core.identity import current_user
    from conveyor.project import open_project

    path = command_path(ctx)
    needed = permission or permission_for(path)
    if needed is None:
        raise ForbiddenError(
            f"`conveyor {path}` declares no permission, so it is refused (deny by default)",
            hint="this is a bug in Conveyor: add the command to cli/_permissions.py",
        )
    obj = ctx.find_root().obj or {}
    project_dir = obj.get("project_dir")
    project = open_project(Path(project_dir) if project_dir else None, obj.get("overrides"))
    if needed != PUBLIC:
        try:
            require(project.metadata, current_user(), needed, what=f"`conveyor {path}`")
        except BaseException:
            project.close()
            raise
    return project


def command_path(ctx: click.Context) -> str:
    """The command's path below the root: ``"rollout pause"``."""
    names: list[str] = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    # Lines of a story or a log are not re-wrapped to the terminal: piped into CI logs they
    # would otherwise break at 80 columns mid-sentence.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or ^C while the block runs, for long-running commands (the
    rollout controller, the monitor) to stop between two rounds rather than inside one."""
    stop = threading.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
