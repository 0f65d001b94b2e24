"""``serve``: run the inference server on the configured address with uvicorn, until stopped."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import socket
import threading
from typing import TYPE_CHECKING, Any

import uvicorn

from conveyor.project import Project
from conveyor.server.app import create_app
from conveyor.server.features import OnlineFeatures
from conveyor.server.security import LOOPBACK_HOSTS, ServerAccess
from conveyor.store.artifacts import open_artifact_store
from conveyor.store.metadata import MetadataStore

if TYPE_CHECKING:
    from conveyor.core.config import Config
    from conveyor.monitoring import InferenceLogger

__all__ = ["listen", "serve"]

logger = logging.getLogger(__name__)


def serve(config: Config, *, version: int | None = None) -> None:
    """Serve the production version of each model over the Open Inference Protocol v2.

    Blocks until SIGINT or SIGTERM, then finishes the requests in flight and returns. Logs the
    URL it listens on (useful with ``port: 0``, which picks a free port).

    Args:
        config: The project configuration (stores, ``serve:`` settings).
        version: Serve this version of the one model of ``config.serve.models`` (any stage)
            instead of its production version. It is loaded before the server listens, so a
            version that cannot be served stops the server at once with its error.

    Raises:
        ConfigError: the store URLs in ``config`` are not valid.
        InfrastructureError: the address cannot be bound, or a store cannot be opened.
        ConveyorError: ``version`` does not exist or its bundle cannot be loaded.
    """
    metadata = MetadataStore.open(config.store)
    try:
        artifacts = open_artifact_store(config.artifacts)
        app = create_app(
            metadata,
            artifacts,
            models=config.serve.models,
            poll_interval=config.serve.poll_interval,
            version=version,
            access=ServerAccess(inference=config.serve.auth.inference),
            allowed_hosts=_allowed_hosts(config),
            inference_log=_inference_log(config, version),
            online_features=OnlineFeatures(config.features.online, root=config.root),
            # The dashboard under /ui, except on a pinned server (a promotion's inference test).
            ui=None if version is not None else Project(config, metadata, artifacts),
        )
        if version is not None:
            # Load now rather than in the app's startup, which logs a failure and keeps going
            # not-ready; the startup refresh then finds nothing changed and loads nothing again.
            app.state.repository.refresh()
        sock = listen(config.serve.host, config.serve.port)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        # log_config=None: the entry point configures logging, not uvicorn.
        server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=10)
        )
        logger.info("conveyor serve: listening on http://%s:%d", shown, port)
        with sock:
            _run(server, sock)
    finally:
        metadata.close()


def _inference_log(config: Config, version: int | None) -> InferenceLogger | None:
    """The monitoring log of answered requests (``monitoring.log``); none for a pinned version,
    which serves a promotion's inference test, not users."""
    settings = config.monitoring.log
    if version is not None or not settings.enabled:
        return None
    from conveyor.monitoring import InferenceLogger

    return InferenceLogger(
        config.root / settings.dir,
        sample_rate=settings.sample_rate,
        queue_size=settings.queue_size,
        batch_size=settings.batch_size,
        retention=(
            None if settings.retention_days is None else dt.timedelta(days=settings.retention_days)
        ),
    )


def _allowed_hosts(config: Config) -> list[str] | None:
    """The ``Host`` names to answer: configured, else the loopback names on a loopback address
    (so no web page can reach the server through DNS rebinding), else any."""
    if config.serve.allowed_hosts is not None:
        return config.serve.allowed_hosts
    if config.serve.host in LOOPBACK_HOSTS:
        return list(LOOPBACK_HOSTS)
    return None


def _run(server: uvicorn.Server, sock: socket.socket) -> None:
    if threading.current_thread() is not threading.main_thread():
        server.run(sockets=[sock])
        return
    # After its graceful shutdown uvicorn restores the previous SIGTERM handler and raises the
    # signal again; with the default handler the process would die by SIGTERM (exit -15) after
    # a clean stop. This handler makes a clean stop return normally (exit 0). SIGINT keeps
    # Python's KeyboardInterrupt, so Ctrl-C still reads as an interruption.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(_signum: int, _frame: Any) -> None:
    logger.info("stopped on SIGTERM")


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket with ``TCP_NODELAY`` set.

    We create the socket ourselves because uvicorn does not set ``TCP_NODELAY`` on sockets it
    creates for ``--workers``, and small keep-alive responses then wait ~40 ms for Nagle and
    delayed ACK (uvicorn issue 3149); accepted connections inherit the option on Linux.

    Raises:
        InfrastructureError: the address cannot be resolved or bound.
    """
    from conveyor.core.errors import InfrastructureError

    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise InfrastructureError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="check `serve.host` / CONVEYOR_HOST",
        ) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise InfrastructureError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="is another server using that port? choose another with --port / CONVEYOR_PORT",
        ) from exc
    return sock
