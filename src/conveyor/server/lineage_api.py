"""The lineage queries over HTTP: the same service calls as ``conveyor lineage`` and
``conveyor changelog``, read-only, as JSON (graphs also as DOT or Mermaid text).

Routes (errors are ``{"error": {"code", "message"}}``, the management API's shape)::

    GET /api/lineage/upstream?node=model:churn/3[&depth=2][&format=json|dot|mermaid]
    GET /api/lineage/downstream?node=dataset:blake3:...[&depth=][&format=]
    GET /api/lineage/models-using?node=...
    GET /api/lineage/evaluated-on?model=churn&version=3
    GET /api/lineage/at?time=2026-03-01T14:00:00Z[&model=churn]
    GET /api/lineage/diff?model=churn&old=6&new=7
    GET /api/models/{name}/changelog[?format=markdown|json]

Every query reads the metadata store in a worker thread; nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from conveyor.core.errors import UsageError
from conveyor.core.names import validate_name
from conveyor.server.security import requires

if TYPE_CHECKING:
    from starlette.requests import Request

    from conveyor.store.metadata import MetadataStore

__all__ = ["API_PREFIX", "lineage_routes"]

API_PREFIX = "/api/"
_GRAPH_FORMATS = ("json", "dot", "mermaid")


def lineage_routes() -> list[Route]:
    return [
        Route("/api/lineage/upstream", _upstream, methods=["GET"]),
        Route("/api/lineage/downstream", _downstream, methods=["GET"]),
        Route("/api/lineage/models-using", _models_using, methods=["GET"]),
        Route("/api/lineage/evaluated-on", _evaluated_on, methods=["GET"]),
        Route("/api/lineage/at", _at, methods=["GET"]),
        Route("/api/lineage/diff", _diff, methods=["GET"]),
        Route("/api/models/{name}/changelog", _changelog, methods=["GET"]),
    ]


def _store(request: Request) -> MetadataStore:
    store: MetadataStore = request.app.state.metadata
    return store


def _param(request: Request, name: str, *, example: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise UsageError(f"the query parameter `{name}` is missing", hint=f"e.g. ?{name}={example}")
    return value


def _int_param(request: Request, name: str, *, required: bool = True) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise UsageError(f"the query parameter `{name}` is missing", hint=f"e.g. ?{name}=3")
        return None
    if not raw.isdigit() or not raw.isascii():
        raise UsageError(
            f"the query parameter `{name}` must be a whole number, not {raw!r}",
            hint=f"e.g. ?{name}=3",
        )
    return int(raw)


def _format(request: Request, allowed: tuple[str, ...]) -> str:
    fmt = request.query_params.get("format", allowed[0])
    if fmt not in allowed:
        raise UsageError(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(allowed)}")
    return fmt


async def _walk(request: Request, direction: str) -> Response:
    from conveyor.lineage.graph import downstream, parse_target, upstream
    from conveyor.lineage.render import render

    start = parse_target(_param(request, "node", example="model:churn/3"))
    depth = _int_param(request, "depth", required=False)
    fmt = _format(request, _GRAPH_FORMATS)
    walk = upstream if direction == "upstream" else downstream
    graph = await anyio.to_thread.run_sync(
        lambda: walk(_store(request), start, depth=depth or None)
    )
    if fmt == "json":
        return JSONResponse(graph.to_json())
    return PlainTextResponse(render(graph, fmt))


@requires("read")
async def _upstream(request: Request) -> Response:
    return await _walk(request, "upstream")


@requires("read")
async def _downstream(request: Request) -> Response:
    return await _walk(request, "downstream")


@requires("read")
async def _models_using(request: Request) -> Response:
    from conveyor.lineage.graph import models_using, parse_target

    start = parse_target(_param(request, "node", example="dataset:blake3:..."))
    found = await anyio.to_thread.run_sync(models_using, _store(request), start)
    return JSONResponse({"node": start, **found})


@requires("read")
async def _evaluated_on(request: Request) -> Response:
    from conveyor.lineage.graph import evaluated_on

    model = validate_name("model", _param(request, "model", example="churn"))
    version = _int_param(request, "version")
    assert version is not None
    found = await anyio.to_thread.run_sync(evaluated_on, _store(request), model, version)
    return JSONResponse([n.to_json() for n in found])


@requires("read")
async def _at(request: Request) -> Response:
    from conveyor.lineage.graph import in_production_at

    raw = _param(request, "time", example="2026-03-01T14:00:00Z")
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"the time {raw!r} is not ISO 8601", hint="e.g. ?time=2026-03-01T14:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    model = request.query_params.get("model") or None
    if model is not None:
        validate_name("model", model)
    found = await anyio.to_thread.run_sync(
        lambda: in_production_at(_store(request), moment, model=model)
    )
    return JSONResponse({"at": moment.isoformat(), "production": found})


@requires("read")
async def _diff(request: Request) -> Response:
    from conveyor.lineage.graph import diff_versions

    model = validate_name("model", _param(request, "model", example="churn"))
    old, new = _int_param(request, "old"), _int_param(request, "new")
    assert old is not None
    assert new is not None
    found = await anyio.to_thread.run_sync(diff_versions, _store(request), model, old, new)
    return JSONResponse(found.to_json())


@requires("read")
async def _changelog(request: Request) -> Response:
    from conveyor.lineage.changelog import changelog, render_markdown

    name = validate_name("model", request.path_params["name"])
    fmt = _format(request, ("markdown", "json"))
    entries = await anyio.to_thread.run_sync(changelog, _store(request), name)
    if fmt == "json":
        body: dict[str, Any] = {"model": name, "versions": [e.to_json() for e in entries]}
        return JSONResponse(body)
    return PlainTextResponse(render_markdown(name, entries), media_type="text/markdown")
