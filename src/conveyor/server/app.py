"""The Open Inference Protocol v2 application: routes, the poll task, and :func:`create_app`.

Routes (``[...]`` is optional; without a version the production version answers)::

    GET  /v2/health/live
    GET  /v2/health/ready                               200 when every served model is loaded
    GET  /v2                                            server metadata
    GET  /v2/models/{name}[/versions/{version}]         model metadata
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer
    GET  /metrics                                       Prometheus metrics (see ``metrics``)

A small request body is parsed and checked on the event loop (that is cheaper than a thread
hop); a large one in a worker thread. ``predict`` always runs in a worker thread, for a batch of
the requests that queued while the model was busy (see :mod:`conveyor.server.batching`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor import __version__
from conveyor.core.errors import ConveyorError, NotFoundError
from conveyor.server.errors import EXCEPTION_HANDLERS, RequestTooLargeError
from conveyor.server.metrics import CONTENT_TYPE, UNKNOWN_MODEL, ServerMetrics
from conveyor.server.repository import ModelRepository
from conveyor.server.tensors import InferRequest, decode_request, parse_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

    from conveyor.server.repository import ServedModel
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

SERVER_NAME = "conveyor"
PLATFORM = "sklearn"
#: Largest request body accepted (413 above it): a million rows of a few columns.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Bodies up to this size are parsed on the event loop (tens of microseconds); larger ones in
#: a worker thread, so that one big request does not hold up the others.
INLINE_DECODE_BYTES = 64 * 1024


def create_app(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    *,
    models: list[str] | None = None,
    poll_interval: float = 1.0,
    version: int | None = None,
) -> Starlette:
    """The inference server as an ASGI application.

    On startup it loads the production version of every served model; then, every
    ``poll_interval`` seconds, it checks the registry's routing token and swaps in new
    production versions without dropping a request.

    Args:
        metadata: The metadata store holding the registry.
        artifacts: The artifact store holding the model bundles.
        models: Serve only these models; default: every model with a production version.
        poll_interval: Seconds between checks for a changed production version.
        version: Serve this version of the one model in ``models`` where its production
            version would answer (see :class:`~conveyor.server.repository.ModelRepository`).

    Raises:
        UsageError: ``version`` is given without exactly one model.
    """
    metrics = ServerMetrics()
    repository = ModelRepository(
        metadata, artifacts, models=models, version=version, metrics=metrics
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Load before accepting requests, so "ready" is true from the first answer in the
        # usual case; if the store is down, start anyway (not ready) and keep trying.
        await _refresh(repository)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_poll, repository, poll_interval)
            yield
            tasks.cancel_scope.cancel()

    app = Starlette(routes=_routes(), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.repository = repository
    app.state.metrics = metrics
    return app


async def _refresh(repository: ModelRepository) -> None:
    try:
        await anyio.to_thread.run_sync(repository.refresh)
    except ConveyorError as exc:
        logger.warning("could not read the registry, will retry: %s", exc)
    except Exception:
        # A bug, but the server must keep serving the versions it has; the next poll retries.
        logger.exception("unexpected error while refreshing the served models")


async def _poll(repository: ModelRepository, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        await _refresh(repository)


def _routes() -> list[Route]:
    models = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2/health/live", _live, methods=["GET"]),
        Route("/v2/health/ready", _ready, methods=["GET"]),
        Route("/v2", _server_metadata, methods=["GET"]),
        Route(models, _model_metadata, methods=["GET"]),
        Route(versioned, _model_metadata, methods=["GET"]),
        Route(f"{models}/ready", _model_ready, methods=["GET"]),
        Route(f"{versioned}/ready", _model_ready, methods=["GET"]),
        Route(f"{models}/infer", _infer, methods=["POST"]),
        Route(f"{versioned}/infer", _infer, methods=["POST"]),
        Route("/metrics", _metrics, methods=["GET"]),
    ]


def _repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.repository
    return repository


def _server_metrics(request: Request) -> ServerMetrics:
    metrics: ServerMetrics = request.app.state.metrics
    return metrics


async def _metrics(request: Request) -> Response:
    return Response(_server_metrics(request).exposition(), media_type=CONTENT_TYPE)


async def _live(_request: Request) -> Response:
    return JSONResponse({"live": True})


async def _ready(request: Request) -> Response:
    ready = _repository(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def _server_metadata(_request: Request) -> Response:
    return JSONResponse({"name": SERVER_NAME, "version": __version__, "extensions": []})


async def _model_metadata(request: Request) -> Response:
    served = await _resolve(request)
    versions = _repository(request).versions(served.name) or (served.version,)
    return JSONResponse(
        {
            "name": served.name,
            "versions": [str(v) for v in versions],
            "platform": PLATFORM,
            "inputs": served.inputs,
            "outputs": served.outputs,
        }
    )


async def _model_ready(request: Request) -> Response:
    # Not-ready is an answer here, not an error: the probe's body says which model.
    name = request.path_params["name"]
    try:
        await _resolve(request)
    except NotFoundError:
        raise
    except ConveyorError:
        return JSONResponse({"name": name, "ready": False}, status_code=503)
    return JSONResponse({"name": name, "ready": True})


async def _infer(request: Request) -> Response:
    # Every answer is counted, errors included; an exception still goes on to its handler.
    metrics = _server_metrics(request)
    started = time.perf_counter()
    name: str = request.path_params["name"]
    if not _repository(request).versions(name):
        name = UNKNOWN_MODEL  # the path is the client's: no series for made-up names
    version = ""
    status = 500
    metrics.request_started(name)
    try:
        served = await _resolve(request)
        version = str(served.version)
        response = await _answer(served, request)
        status = response.status_code
    except ConveyorError as exc:
        status = exc.http_status
        raise
    finally:
        metrics.request_finished(name)
        metrics.observe_request(name, version, status, time.perf_counter() - started)
    return response


async def _answer(served: ServedModel, request: Request) -> Response:
    body = await _read_body(request)
    if len(body) <= INLINE_DECODE_BYTES:
        checked = _decode(served, body)
    else:
        checked = await anyio.to_thread.run_sync(_decode, served, body)
    content = await served.batcher.infer(checked)
    return Response(content, media_type="application/json")


async def _read_body(request: Request) -> bytes:
    # Checked here rather than with Starlette's max_body_size, whose 413 is plain text: the
    # protocol's clients expect the {"error": ...} body for every error.
    limit = MAX_BODY_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(len(body), limit)
    return bytes(body)


def _too_large(size: int, limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"the request body has {size} bytes, more than the {limit} this server accepts",
        hint="send the rows in several requests",
    )


def _decode(served: ServedModel, body: bytes) -> InferRequest:
    return decode_request(parse_json(body), served.model.signature)


async def _resolve(request: Request) -> ServedModel:
    """The model a request addresses: its production version, or the version in the path."""
    repository = _repository(request)
    name: str = request.path_params["name"]
    raw = request.path_params.get("version")
    if raw is None:
        return repository.production(name)
    version = _parse_version(name, raw)
    served = repository.cached_version(name, version)
    if served is None:
        served = await anyio.to_thread.run_sync(repository.load_version, name, version)
    return served


def _parse_version(name: str, raw: str) -> int:
    text = raw.removeprefix("v")
    if not text.isdigit() or not text.isascii():
        raise NotFoundError(
            f"model '{name}' has no version '{raw}'",
            hint=f"versions are numbers, e.g. /v2/models/{name}/versions/1",
        )
    return int(text)
