"""The dashboard's routes: pages (GET) and the few actions (POST forms), as one Starlette app.

Routes, relative to where the dashboard is mounted (``/ui`` on the API server and under
``conveyor ui``)::

    GET  /login, POST /login, POST /logout     sign in with an API token (see ``_auth``)
    GET  /                                     models                              read
    GET  /models/{name}[?page=N]               a model's versions, paginated        read
    GET  /models/{name}/versions/{version}     one version                          read
    GET  /deployments                          rollouts with telemetry              read
    GET  /data                                 data quality and drift               read
    GET  /monitoring                           alerts and incidents                 read
    GET  /audit[?action=&target=&actor=&before=]  the audit log and its chain       read
    POST /models/{name}/versions/{version}/review   approve or reject               review
    POST /models/{name}/rollback               roll back to the previous version    rollback
    POST /deployments/{name}/pause|abort       pause or abort the rollout           deploy
    GET  /static/conveyor.css                  the style sheet                      public

Every page is built in a worker thread (the services are synchronous), rendered there by
Jinja2 with autoescaping on. A :class:`~conveyor.core.errors.ConveyorError` becomes an HTML
page with its status, message and hint; an unauthenticated page visit goes to the login form.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from conveyor import __version__
from conveyor.access import PUBLIC, authenticate, permissions_of
from conveyor.core.errors import ConveyorError, UnauthorizedError, UsageError
from conveyor.core.names import validate_name
from conveyor.ui import _pages
from conveyor.ui._auth import COOKIE, CsrfKey, guard, presented_token, requires

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from starlette.middleware import Middleware
    from starlette.requests import Request

    from conveyor.project import Project

__all__ = ["DEFAULT_PREFIX", "create_ui_app", "ui_app", "ui_mount"]

DEFAULT_PREFIX = "/ui"
_HERE = Path(__file__).parent
_CSS = "conveyor.css"


class _Context:
    """What every request of one dashboard shares: the project, templates, the CSRF key."""

    def __init__(self, project: Project) -> None:
        import jinja2

        self.project = project
        self.csrf = CsrfKey()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["num"] = _num
        self.templates.filters["when"] = _when
        self.css = (_HERE / "static" / _CSS).read_bytes()
        self.chain = _pages.ChainVerdicts()


def _num(value: Any, digits: int = 4) -> str:
    from conveyor.project._report import fmt

    return fmt(value, digits)


def _when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def ui_app(project: Project) -> Starlette:
    """The dashboard as an ASGI app, to mount anywhere (its links are relative to the mount).

    Raises:
        RuntimeError: a route declares no permission (a bug: the app must not start).
    """
    context = _Context(project)
    routes = [
        Route(path, guard(endpoint, project.metadata), methods=methods)
        for path, endpoint, methods in _ROUTES
    ]
    app = Starlette(routes=routes, exception_handlers={ConveyorError: _error_page})
    app.state.ui = context
    return app


def ui_mount(project: Project, path: str = DEFAULT_PREFIX) -> Mount:
    """The dashboard mounted at ``path``: what the API server adds to its routes."""
    return Mount(path, app=ui_app(project), name="ui")


def create_ui_app(project: Project, *, middleware: Sequence[Middleware] = ()) -> Starlette:
    """The dashboard alone (``conveyor ui``): mounted at ``/ui``, with ``/`` leading there."""

    @requires(PUBLIC)
    async def root(_request: Request) -> Response:
        return RedirectResponse(f"{DEFAULT_PREFIX}/", status_code=303)

    return Starlette(
        routes=[Route("/", root, methods=["GET"]), ui_mount(project)], middleware=list(middleware)
    )


# ----------------------------------------------------------------------------- plumbing


def _context(request: Request) -> _Context:
    context: _Context = request.app.state.ui
    return context


def _base(request: Request) -> str:
    """The dashboard's own path prefix (where it is mounted), without a trailing slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")


async def _render(
    request: Request, template: str, gather: Callable[[], dict[str, Any]], status: int = 200
) -> Response:
    context = _context(request)
    principal = getattr(request.state, "principal", None)
    session = presented_token(request) or ""

    def build() -> str:
        values = gather()
        return context.templates.get_template(template).render(
            base=_base(request),
            user=principal,
            can=permissions_of(principal.role) if principal else frozenset(),
            csrf=context.csrf.token_for(session) if session else "",
            version=__version__,
            path=request.url.path,
            **values,
        )

    body = await anyio.to_thread.run_sync(build)
    return HTMLResponse(body, status_code=status)


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConveyorError)
    if isinstance(exc, UnauthorizedError) and request.method == "GET":
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"{_base(request)}/login?next={target}", status_code=303)
    context = _context(request)
    body = context.templates.get_template("error.html").render(
        base=_base(request),
        user=getattr(request.state, "principal", None),
        can=frozenset(),
        csrf="",
        version=__version__,
        path=request.url.path,
        status=exc.http_status,
        message=exc.message,
        hint=exc.hint,
    )
    return HTMLResponse(body, status_code=exc.http_status)


def _int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    if not raw.isascii() or not raw.isdigit():
        raise UsageError(f"`{name}` must be a whole number, not {raw!r}", hint=f"e.g. ?{name}=2")
    return int(raw)


#: The largest form body read; the dashboard's forms hold a token, a comment and a reason.
MAX_FORM_BYTES = 64 * 1024


async def _form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form (the only kind the dashboard's pages send); the first
    value of a repeated field.

    Raises:
        UsageError: another content type, or a body over ``MAX_FORM_BYTES``.
    """
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise UsageError(
            f"this form was sent as {kind or 'no content type'!r}",
            hint="submit the dashboard's own form (application/x-www-form-urlencoded)",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise UsageError(
                f"the form is larger than {MAX_FORM_BYTES} bytes", hint="shorten the comment"
            )
    fields: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields


def _model(request: Request) -> str:
    return validate_name("model", request.path_params["name"])


# ----------------------------------------------------------------------------- sign in


@requires(PUBLIC)
async def _login_form(request: Request) -> Response:
    return await _render(
        request,
        "login.html",
        lambda: {"next": _safe_next(request, request.query_params.get("next")), "error": None},
    )


@requires(PUBLIC)
async def _login(request: Request) -> Response:
    form = await _form(request)
    token = form.get("token", "").strip()
    target = _safe_next(request, form.get("next", ""))
    try:
        # Checked here so a bad token gets the form again; the cookie is checked on every
        # request after this one.
        await anyio.to_thread.run_sync(
            authenticate, _context(request).project.metadata, token or None
        )
    except UnauthorizedError as exc:
        values = {"next": target, "error": exc}
        return await _render(request, "login.html", lambda: values, status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        path=f"{_base(request)}/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@requires(PUBLIC)
async def _logout(request: Request) -> Response:
    response = RedirectResponse(f"{_base(request)}/login", status_code=303)
    response.delete_cookie(COOKIE, path=f"{_base(request)}/")
    return response


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a path inside the dashboard, never another site."""
    base = _base(request)
    if target and target.startswith(f"{base}/") and not target.startswith("//"):
        return target
    return f"{base}/"


@requires(PUBLIC)
async def _css(request: Request) -> Response:
    return Response(
        _context(request).css,
        media_type="text/css",
        headers={"cache-control": "public, max-age=3600"},
    )


# ----------------------------------------------------------------------------- pages


@requires("read")
async def _models(request: Request) -> Response:
    project = _context(request).project
    return await _render(request, "models.html", lambda: _pages.models_page(project))


@requires("read")
async def _model_versions(request: Request) -> Response:
    project, name = _context(request).project, _model(request)
    page = _int(request, "page", 1) or 1
    return await _render(request, "model.html", lambda: _pages.model_page(project, name, page))


@requires("read")
async def _version(request: Request) -> Response:
    project, name = _context(request).project, _model(request)
    version = int(request.path_params["version"])
    return await _render(
        request, "version.html", lambda: _pages.version_page(project, name, version)
    )


@requires("read")
async def _deployments(request: Request) -> Response:
    project = _context(request).project
    return await _render(request, "deployments.html", lambda: _pages.deployments_page(project))


@requires("read")
async def _data(request: Request) -> Response:
    project = _context(request).project
    return await _render(request, "data.html", lambda: _pages.data_page(project))


@requires("read")
async def _monitoring(request: Request) -> Response:
    project = _context(request).project
    return await _render(request, "monitoring.html", lambda: _pages.monitoring_page(project))


@requires("read")
async def _audit(request: Request) -> Response:
    project = _context(request).project
    where = _pages.AuditFilter(
        action=request.query_params.get("action", "").strip(),
        target=request.query_params.get("target", "").strip(),
        actor=request.query_params.get("actor", "").strip(),
        before=_int(request, "before", None),
    )
    chain = _context(request).chain
    return await _render(request, "audit.html", lambda: _pages.audit_page(project, where, chain))


# ----------------------------------------------------------------------------- actions


async def _act(request: Request, action: Callable[[str, dict[str, str]], str]) -> Response:
    """Check the form's CSRF token, run ``action(user, form)`` in a worker thread, and go back
    to the page it names (the route's guard has checked the permission)."""
    principal = request.state.principal
    form = await _form(request)
    _context(request).csrf.check(presented_token(request), form.get("csrf"))
    back = await anyio.to_thread.run_sync(action, principal.user, form)
    return RedirectResponse(f"{_base(request)}{back}", status_code=303)


@requires("review")
async def _review(request: Request) -> Response:
    from conveyor.project import review

    project, name = _context(request).project, _model(request)
    version = int(request.path_params["version"])

    def act(user: str, form: dict[str, str]) -> str:
        decision = form.get("decision", "")
        review(
            project,
            model=name,
            version=version,
            stage=form.get("stage", ""),
            decision=decision,
            actor=user,
            comment=form.get("comment", ""),
        )
        return f"/models/{name}/versions/{version}?done={decision}"

    return await _act(request, act)


@requires("rollback")
async def _rollback(request: Request) -> Response:
    from conveyor.project import rollback

    project, name = _context(request).project, _model(request)

    def act(user: str, form: dict[str, str]) -> str:
        rollback(project, model=name, actor=user, reason=form.get("reason", ""))
        return f"/models/{name}?done=rollback"

    return await _act(request, act)


def _rollout_action(verb: str) -> Callable[[Request], Any]:
    @requires("deploy")
    async def endpoint(request: Request) -> Response:
        from conveyor.deploy import abort, pause

        store, name = _context(request).project.metadata, _model(request)

        def act(user: str, form: dict[str, str]) -> str:
            do = abort if verb == "abort" else pause
            do(store, name, actor=user, reason=form.get("reason", "") or f"{verb}ed from the UI")
            return f"/deployments?done={verb}"

        return await _act(request, act)

    endpoint.__name__ = f"_{verb}"
    return endpoint


_ROUTES: list[tuple[str, Callable[..., Any], list[str]]] = [
    ("/login", _login_form, ["GET"]),
    ("/login", _login, ["POST"]),
    ("/logout", _logout, ["POST"]),
    (f"/static/{_CSS}", _css, ["GET"]),
    ("/", _models, ["GET"]),
    ("/models/{name}", _model_versions, ["GET"]),
    ("/models/{name}/versions/{version:int}", _version, ["GET"]),
    ("/models/{name}/versions/{version:int}/review", _review, ["POST"]),
    ("/models/{name}/rollback", _rollback, ["POST"]),
    ("/deployments", _deployments, ["GET"]),
    ("/deployments/{name}/pause", _rollout_action("pause"), ["POST"]),
    ("/deployments/{name}/abort", _rollout_action("abort"), ["POST"]),
    ("/data", _data, ["GET"]),
    ("/monitoring", _monitoring, ["GET"]),
    ("/audit", _audit, ["GET"]),
]
