"""``conveyor serve``: the Open Inference Protocol v2 server for production versions."""

from __future__ import annotations

import click

from conveyor.cli._common import open_from_context

__all__ = ["serve"]


@click.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1, CONVEYOR_HOST).")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port (default 8080).")
@click.option(
    "--poll-interval",
    default=None,
    type=click.FloatRange(min=0.01),
    help="Seconds between checks for a new production version (default 1).",
)
@click.option("--model", "models", multiple=True, help="Serve only this model (repeatable).")
@click.option(
    "--version",
    type=click.IntRange(min=1),
    default=None,
    help="Serve this version of the one --model (any stage) instead of its production version.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    poll_interval: float | None,
    models: tuple[str, ...],
    version: int | None,
) -> None:
    """Serve the production version of each model; switches version on promote or rollback
    without a restart."""
    import logging
    import os

    from conveyor.core.env import CONVEYOR_LOG_LEVEL
    from conveyor.server import serve as run_server

    # A server's log is its output: which version it serves and when it switches.
    if not os.environ.get(CONVEYOR_LOG_LEVEL):
        logging.getLogger().setLevel(logging.INFO)

    ctx.find_root().obj["overrides"].update(
        {"host": host, "port": port, "poll_interval": poll_interval, "models": list(models) or None}
    )
    with open_from_context(ctx) as project:
        run_server(project.config, version=version)
