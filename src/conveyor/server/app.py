"""The Open Inference Protocol v2 application: routes, the poll task, and :func:`create_app`.

Routes (``[...]`` is optional; without a version the production version answers)::

    GET  /v2/health/live
    GET  /v2/health/ready                               200 when every served model is loaded
    GET  /v2                                            server metadata
    GET  /v2/models/{name}[/versions/{version}]         model metadata
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer
    POST /v2/models/{name}[/versions/{version}]/invocations   MLflow scoring (``invocations``)
    POST /invocations                                   the same, for the one served model
    GET  /ping, /health                                 MLflow's probe: 200 when ready, else 503
    GET  /metrics                                       Prometheus metrics (see ``metrics``)
    GET  /openapi.json                                  the OpenAPI document (see ``openapi``)
    GET  /api/lineage/..., /api/models/{name}/changelog  lineage queries (see ``lineage_api``)

A small request body is parsed and checked on the event loop (that is cheaper than a thread
hop); a large one in a worker thread. ``predict`` always runs in a worker thread, for a batch of
the requests that queued while the model was busy (see :mod:`conveyor.server.batching`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor import __version__
from conveyor.access.roles import PUBLIC
from conveyor.core.errors import ConveyorError, NotFoundError, UsageError
from conveyor.core.names import validate_name
from conveyor.server.dispatch import SHADOW_THREADS, Dispatcher, feedback
from conveyor.server.errors import EXCEPTION_HANDLERS, ModelNotReadyError, RequestTooLargeError
from conveyor.server.invocations import decode_invocations
from conveyor.server.lineage_api import lineage_routes
from conveyor.server.metrics import CONTENT_TYPE, ServerMetrics
from conveyor.server.openapi import openapi_document
from conveyor.server.recorder import ServingRecorder
from conveyor.server.repository import ModelRepository
from conveyor.server.security import (
    HostAndOriginMiddleware,
    ServerAccess,
    guard,
    requires,
)
from conveyor.server.tensors import (
    REQUEST_CONTENT_TYPES,
    InferRequest,
    decode_request,
    parse_json,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from conveyor.monitoring import InferenceLogger
    from conveyor.project import Project
    from conveyor.server.features import OnlineFeatures
    from conveyor.server.repository import ServedModel
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

SERVER_NAME = "conveyor"
PLATFORM = "sklearn"
#: Largest request body accepted (413 above it): a million rows of a few columns.
MAX_BODY_BYTES = 64 * 1024 * 1024


def create_app(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    *,
    models: list[str] | None = None,
    poll_interval: float = 1.0,
    version: int | None = None,
    access: ServerAccess | None = None,
    allowed_hosts: list[str] | None = None,
    inference_log: InferenceLogger | None = None,
    online_features: OnlineFeatures | None = None,
    ui: Project | None = None,
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
        access: Who may call what (see :mod:`conveyor.server.security`); by default inference
            is open and the management API needs a bearer token.
        allowed_hosts: Answer only these ``Host`` names (None: any).
        inference_log: Log every answered request (and labels sent as feedback) there for
            monitoring; the app closes it, writing what is queued, when it stops. Its counters
            and the monitoring state (alerts, windows, incidents) join ``/metrics``.
        online_features: The project's online feature store: a version whose bundle names a
            feature service then also answers requests that send only entity keys (see
            :mod:`conveyor.server.features`). The app closes it when it stops (a store
            it opened itself).
        ui: Serve the dashboard of this project under ``/ui`` (see :mod:`conveyor.ui`).

    Raises:
        UsageError: ``version`` is given without exactly one model.
    """
    metrics = ServerMetrics()
    # A pinned server (a promotion's inference test) serves outside any rollout: its traffic
    # must not count as evidence for or against a version.
    recorder = ServingRecorder() if version is None else None
    shadows = _ShadowThreads(SHADOW_THREADS)
    repository = ModelRepository(
        metadata,
        artifacts,
        models=models,
        version=version,
        metrics=metrics,
        recorder=recorder,
        shadow_run_sync=shadows.run_sync,
        online_features=online_features,
    )
    dispatcher = Dispatcher(repository, metrics, recorder)
    dispatcher.inference_log = inference_log
    if inference_log is not None:
        from conveyor.monitoring import MonitoringCollector

        metrics.registry.register(_Tolerant(MonitoringCollector(metadata, logger=inference_log)))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Load before accepting requests, so "ready" is true from the first answer in the
        # usual case; if the store is down, start anyway (not ready) and keep trying.
        await _refresh(repository)
        async with anyio.create_task_group() as tasks:
            dispatcher.tasks = tasks
            tasks.start_soon(_poll, repository, poll_interval)
            if recorder is not None:
                tasks.start_soon(_flush, recorder, repository, metadata, poll_interval)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
                dispatcher.tasks = None
        if recorder is not None:  # the last window, so a stopped replica's evidence counts
            with anyio.CancelScope(shield=True):
                await _flush_once(recorder, repository, metadata)
        if inference_log is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(inference_log.close)
        if online_features is not None:
            online_features.close()

    access = access or ServerAccess()
    routes: list[BaseRoute] = [
        Route(r.path, guard(r.endpoint, access, metadata), methods=r.methods) for r in _routes()
    ]
    if ui is not None:
        from conveyor.ui import ui_mount

        # The dashboard guards its own routes (a session cookie, CSRF tokens, a permission per
        # page and action), so it is mounted as it is, not through the API's bearer guard.
        routes.append(ui_mount(ui))
    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
        middleware=[Middleware(HostAndOriginMiddleware, allowed_hosts=allowed_hosts)],
    )
    app.state.repository = repository
    app.state.metadata = metadata
    app.state.metrics = metrics
    app.state.recorder = recorder
    app.state.dispatcher = dispatcher
    return app


class _Tolerant:
    """A Prometheus collector that yields nothing while the store behind it is unreachable, so
    a scrape still gets the serving metrics during a store outage."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def describe(self) -> list[Any]:
        return []  # nothing to check at registration: no query before the first scrape

    def collect(self) -> Iterator[Any]:
        try:
            found = list(self._inner.collect())
        except ConveyorError as exc:
            logger.warning("monitoring metrics left out of /metrics: %s", exc.message)
            return iter(())
        return iter(found)


class _ShadowThreads:
    """Runs shadow batches on at most ``threads`` worker threads of their own (the limiter is
    made on first use, inside the event loop)."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

    async def run_sync(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)


async def _flush(
    recorder: ServingRecorder, repository: ModelRepository, metadata: MetadataStore, every: float
) -> None:
    while True:
        await anyio.sleep(every)
        await _flush_once(recorder, repository, metadata)


async def _flush_once(
    recorder: ServingRecorder, repository: ModelRepository, metadata: MetadataStore
) -> None:
    try:
        await anyio.to_thread.run_sync(recorder.flush, metadata, repository.routed_models())
    except Exception:
        # A bug; serving goes on, and the windows stay for the next flush.
        logger.exception("unexpected error while writing serving telemetry")


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
        Route(f"{models}/feedback", _feedback, methods=["POST"]),
        Route(f"{models}/invocations", _invocations, methods=["POST"]),
        Route(f"{versioned}/invocations", _invocations, methods=["POST"]),
        Route("/invocations", _invocations, methods=["POST"]),
        Route("/ping", _ping, methods=["GET"]),
        Route("/health", _ping, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        *lineage_routes(),
    ]


def _repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.repository
    return repository


def _server_metrics(request: Request) -> ServerMetrics:
    metrics: ServerMetrics = request.app.state.metrics
    return metrics


@requires(PUBLIC)
async def _metrics(request: Request) -> Response:
    return Response(_server_metrics(request).exposition(), media_type=CONTENT_TYPE)


@requires(PUBLIC)
async def _live(_request: Request) -> Response:
    return JSONResponse({"live": True})


@requires(PUBLIC)
async def _ready(request: Request) -> Response:
    ready = _repository(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


#: What this server offers beyond the protocol's core (the server metadata's ``extensions``).
EXTENSIONS = ("parameters", "mlflow_invocations", "metrics", "openapi")


@requires(PUBLIC)
async def _server_metadata(_request: Request) -> Response:
    return JSONResponse(
        {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}
    )


@requires("predict")
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
            # Where MLServer puts the request codec: every input is a column of one frame.
            "parameters": {"content_type": REQUEST_CONTENT_TYPES[0]},
        }
    )


@requires("predict")
async def _model_ready(request: Request) -> Response:
    # Not-ready is an answer here, not an error: the probe's body says which model.
    name = _model_name(request)
    try:
        await _resolve(request)
    except NotFoundError:
        raise
    except ConveyorError:
        return JSONResponse({"name": name, "ready": False}, status_code=503)
    return JSONResponse({"name": name, "ready": True})


@requires("predict")
async def _infer(request: Request) -> Response:
    name: str = request.path_params["name"]
    return await _dispatcher(request).answer(request, name, lambda: _read_body(request), _decode)


@requires("predict")
async def _feedback(request: Request) -> Response:
    name = _model_name(request)
    if not _repository(request).versions(name):
        raise NotFoundError(
            f"there is no model '{name}'", hint="see `conveyor model list` for the models"
        )
    payload = parse_json(await _read_body(request))
    log = _dispatcher(request).inference_log
    return JSONResponse(feedback(request.app.state.recorder, name, payload, inference_log=log))


def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


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
    payload = parse_json(body)
    if served.lookup is not None:
        keyed = served.lookup.decode_v2(payload)
        if keyed is not None:
            return keyed
    return decode_request(payload, served.model.signature)


async def _resolve(request: Request) -> ServedModel:
    """The model a request addresses: its production version, or the version in the path."""
    name = _model_name(request)
    return await _dispatcher(request).resolve(name, request.path_params.get("version"))


def _model_name(request: Request) -> str:
    """The model name in the request's path, checked against the one rule before any lookup.

    Raises:
        ValidationError: the name breaks the rule (422, the rule in the hint).
    """
    return validate_name("model", request.path_params["name"])


# -- MLflow's scoring protocol, and the OpenAPI document ------------------------------------------


@requires(PUBLIC)
async def _ping(request: Request) -> Response:
    # MLflow's probe answers a bare newline; its clients look at the status only.
    ready = _repository(request).ready
    return Response("\n", status_code=200 if ready else 503, media_type="application/json")


@requires("predict")
async def _invocations(request: Request) -> Response:
    # Routed like /infer (canary, shadow, telemetry); only the body format differs.
    name: str | None = request.path_params.get("name")
    if name is None:
        name = _served_names(_repository(request), single=True)[0]
    content_type = request.headers.get("content-type", "")

    def decode(served: ServedModel, body: bytes) -> InferRequest:
        if served.lookup is not None:
            keyed = served.lookup.decode_mlflow(body, content_type)
            if keyed is not None:
                return keyed
        return decode_invocations(body, content_type, served.model.signature)

    return await _dispatcher(request).answer(request, name, lambda: _read_body(request), decode)


def _served_names(repository: ModelRepository, *, single: bool = False) -> list[str]:
    """The models this server answers for (production loaded, or meant to be but failed).

    Raises:
        ModelNotReadyError: the registry has not been read yet (and no model was named).
        NotFoundError: ``single`` and no model is served.
        UsageError: ``single`` and several models are served.
    """
    names = repository.served_names()
    if names is None:
        raise ModelNotReadyError(
            "no model is loaded yet: the server has not read the registry",
            hint="the server retries on every poll; check that the metadata store is up",
        )
    if single and not names:
        raise NotFoundError(
            "this server serves no model",
            hint="promote a version to production: `conveyor promote <model> <version> "
            "--to production`",
        )
    if single and len(names) > 1:
        raise UsageError(
            f"this server serves {len(names)} models ({', '.join(names)}); "
            "POST /invocations needs exactly one",
            hint=f"name the model: POST /v2/models/{names[0]}/invocations",
        )
    return names


@requires(PUBLIC)
async def _openapi(request: Request) -> Response:
    repository = _repository(request)
    signatures = {}
    try:
        names = _served_names(repository)
    except ConveyorError:
        names = []
    for name in names:
        try:
            signatures[name] = repository.production(name).model.signature
        except ConveyorError:
            continue  # not loaded: documented by the generic routes only
    document = openapi_document(request.app.routes, signatures, version=__version__)
    return JSONResponse(document)
