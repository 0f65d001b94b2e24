"""Who may see and do what in the dashboard: the session cookie, CSRF tokens, permissions.

The browser signs in with an API token (``conveyor auth token create``), pasted once into the
login form. The token is kept in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to the
dashboard's path, and checked against the store on every request exactly like a bearer token
(:func:`conveyor.access.authenticate`: hashed, looked up, compared in constant time), so a
revoked or expired token stops working at the next click. Scripts on the page cannot read the
cookie, and no other site's page can make the browser send it.

**Every route declares a permission** (:func:`requires`, the same names as the API's:
:mod:`conveyor.access.roles`); building the routes refuses one that declares none (deny by
default). A page needs ``read``; approve and reject need ``review``, pause and abort a rollout
``deploy``, a rollback ``rollback``.

**State changes** are POST forms carrying a CSRF token: an HMAC, under a key the app draws at
start, of the session token's hash. A form from another session (or an older server) is
refused; the server's ``HostAndOriginMiddleware`` already refuses cross-origin POSTs, and
``SameSite=Strict`` keeps the cookie off them: three fences, each enough alone.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

import anyio.to_thread

from conveyor.access import (
    PUBLIC,
    ROLES,
    Principal,
    allowed,
    authenticate,
    permission_of,
    requires,
)
from conveyor.core.errors import ForbiddenError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from conveyor.store.metadata import MetadataStore

    Endpoint = Callable[[Request], Awaitable[Response]]

__all__ = [
    "COOKIE",
    "CsrfKey",
    "check_allowed",
    "guard",
    "permission_of",
    "presented_token",
    "requires",
]

#: The session cookie: the API token itself, readable by the server only.
COOKIE = "conveyor_session"


def presented_token(request: Request) -> str | None:
    """The token of the request: the session cookie, else an ``Authorization: Bearer`` header
    (so scripts and tests can read pages the way they call the API)."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return cookie
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class CsrfKey:
    """Issues and checks the CSRF token of a session (see the module docstring)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def token_for(self, session: str) -> str:
        digest = hashlib.sha256(session.encode()).digest()
        return hmac.new(self._key, digest, hashlib.sha256).hexdigest()

    def check(self, session: str | None, presented: str | None) -> None:
        """Refuse a state change whose form does not carry this session's token.

        Raises:
            ForbiddenError: no session, no token, or another session's token.
        """
        if not session or not presented:
            raise ForbiddenError(
                "this form carries no CSRF token, so it was refused",
                hint="reload the page and submit the form again",
            )
        if not hmac.compare_digest(self.token_for(session), presented):
            raise ForbiddenError(
                "this form's CSRF token is not this session's (an old page, or another site)",
                hint="reload the page and submit the form again",
            )


def guard(endpoint: Endpoint, store: MetadataStore) -> Endpoint:
    """``endpoint`` behind its permission check; the principal lands in ``request.state``.

    Raises:
        RuntimeError: the endpoint declares no permission (a bug: the routes must not build).
    """
    permission = permission_of(endpoint)
    if permission is None:
        raise RuntimeError(f"dashboard endpoint {endpoint.__name__} declares no permission")
    if permission == PUBLIC:
        return endpoint

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        principal = await anyio.to_thread.run_sync(authenticate, store, presented_token(request))
        check_allowed(principal, permission)
        request.state.principal = principal
        return await endpoint(request)

    return guarded


def check_allowed(principal: Principal, permission: str) -> None:
    """Refuse ``principal`` unless their role has ``permission``.

    Raises:
        ForbiddenError: naming the role, the permission and the roles that have it.
    """
    if allowed(principal.role, permission):
        return
    may = ", ".join(r for r in ROLES if permission in ROLES[r])
    raise ForbiddenError(
        f"{principal.user} has the role {principal.role}; this needs the permission "
        f"'{permission}' ({may})",
        hint="an admin grants roles: `conveyor auth user add NAME --role ROLE`",
    )
