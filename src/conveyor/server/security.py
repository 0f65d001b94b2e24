"""Who may call which route, and the checks every request passes first.

**Every route declares a permission** (:func:`requires`); :func:`guard` wraps it when the app is
built, and a route without one makes the app refuse to start (deny by default; a test
enumerates the routes too). Permissions are those of :mod:`conveyor.access.roles`:

- ``public``: health, readiness, server metadata, ``/metrics``, the OpenAPI document;
- ``predict``: the inference routes and feedback. Open to anonymous clients by default
  (``serve.auth.inference: open``: inference usually sits behind the cluster's gateway), or
  bearer tokens with ``inference: token``;
- ``read`` and up: the management API under ``/api/``, always by bearer token.

A bearer token is checked against the store on every request (a revoked token fails at once),
in a worker thread; anonymous inference pays nothing.

**Host and origin** (:class:`HostAndOriginMiddleware`): a server on a loopback address answers
only requests whose ``Host`` is a loopback name (a web page cannot reach it by DNS rebinding),
and any request that changes state (not GET/HEAD/OPTIONS) carrying an ``Origin`` other than the
server's own is refused (no cross-site request forgery from a browser).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio.to_thread

from conveyor.access.roles import PUBLIC, ROLES, allowed, permission_of, requires
from conveyor.core.errors import ForbiddenError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

    from conveyor.store.metadata import MetadataStore

    Endpoint = Callable[[Request], Awaitable[Response]]

__all__ = [
    "LOOPBACK_HOSTS",
    "HostAndOriginMiddleware",
    "ServerAccess",
    "guard",
    "requires",
]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class ServerAccess:
    """How the server authenticates: ``inference`` is ``open`` or ``token``; the management
    API always needs a token."""

    inference: Literal["open", "token"] = "open"


def guard(endpoint: Endpoint, access: ServerAccess, store: MetadataStore) -> Endpoint:
    """``endpoint`` behind its permission check.

    Raises:
        RuntimeError: the endpoint declares no permission (a bug: the app must not start).
    """
    permission = permission_of(endpoint)
    if permission is None:
        raise RuntimeError(f"route endpoint {endpoint.__name__} declares no permission")
    if permission == PUBLIC or (permission == "predict" and access.inference == "open"):
        return endpoint

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        from conveyor.access import authenticate

        presented = _bearer(request)
        principal = await anyio.to_thread.run_sync(authenticate, store, presented)
        if not allowed(principal.role, permission):
            may = ", ".join(r for r in ROLES if permission in ROLES[r])
            raise ForbiddenError(
                f"{principal.user} has the role {principal.role}; this route needs the "
                f"permission '{permission}' ({may})",
                hint="an admin grants roles: `conveyor auth user add NAME --role ROLE`",
            )
        request.state.principal = principal
        return await endpoint(request)

    return guarded


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class HostAndOriginMiddleware:
    """Refuse a foreign ``Host`` (when ``allowed_hosts`` is set) and cross-origin state changes."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed_hosts) if allowed_hosts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.allowed is not None and _hostname(host) not in self.allowed:
            await _refuse(send, 400, f"the Host header {host!r} is not served here")
            return
        origin = headers.get("origin")
        if (
            origin is not None
            and scope["method"] not in _SAFE_METHODS
            and _origin_host(origin) != host.lower()
        ):
            await _refuse(
                send, 403, f"cross-origin request from {origin!r} refused: it would change state"
            )
            return
        await self.app(scope, receive, send)


def _hostname(host: str) -> str:
    host = host.lower()
    if host.startswith("["):  # [::1]:8080
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin_host(origin: str) -> str:
    return origin.lower().split("://", 1)[-1].rstrip("/")


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
