"""``conveyor ui``: the web dashboard alone, on its own address (the API server also mounts it
under ``/ui``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from conveyor.cli._common import open_from_context

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from conveyor.project import Project

__all__ = ["DEFAULT_PORT", "dashboard_app", "ui"]

DEFAULT_PORT = 8081


def dashboard_app(project: Project, host: str) -> Starlette:
    """The dashboard app as ``conveyor ui`` serves it on ``host``: behind the server's host
    and origin checks (only loopback ``Host`` names on a loopback address; no cross-origin
    state change)."""
    from starlette.middleware import Middleware

    from conveyor.server.security import LOOPBACK_HOSTS, HostAndOriginMiddleware
    from conveyor.ui import create_ui_app

    allowed = list(LOOPBACK_HOSTS) if host in LOOPBACK_HOSTS else None
    return create_ui_app(
        project, middleware=[Middleware(HostAndOriginMiddleware, allowed_hosts=allowed)]
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.pass_context
def ui(ctx: click.Context, host: str, port: int) -> None:
    """Serve the web dashboard: models, versions, deployments, data, monitoring, audit. Sign in
    with an API token (`conveyor auth token create USER`)."""
    import logging
    import os

    import uvicorn

    from conveyor.core.env import CONVEYOR_LOG_LEVEL
    from conveyor.server.serve import listen

    if not os.environ.get(CONVEYOR_LOG_LEVEL):
        logging.getLogger().setLevel(logging.INFO)
    with open_from_context(ctx) as project:
        app = dashboard_app(project, host)
        sock = listen(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
        click.echo(f"conveyor ui: http://{shown}:{bound_port}/ui/")
        with sock:
            server.run(sockets=[sock])
