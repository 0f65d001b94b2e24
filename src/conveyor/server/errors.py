"""The inference server's errors, and the one registry that turns any error into a response.

Bodies follow the Open Inference Protocol v2: ``{"error": "<message>; <hint>"}``. The status is
the ``http_status`` of the :class:`~conveyor.core.errors.ConveyorError` subclass, so services
decide what their errors mean to a client and the server never re-decides it::

    ConveyorError (core)                    status from its class (400/404/409/422/503)
    ├── UsageError
    │   ├── MalformedRequestError           400   the body is not JSON, or not a JSON object
    │   └── RequestTooLargeError            413   the body is larger than the server accepts
    ├── NotFoundError                       404   unknown model or version (from services too)
    ├── ValidationError                     422   a tensor does not fit the model's signature
    └── InfrastructureError
        └── ModelNotReadyError              503   the model is served but not loaded

Anything else is a bug: it is logged with its traceback and answered with a bare 500.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from conveyor.core.errors import ConveyorError, InfrastructureError, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request
    from starlette.types import ExceptionHandler

__all__ = [
    "EXCEPTION_HANDLERS",
    "MalformedRequestError",
    "ModelNotReadyError",
    "RequestTooLargeError",
    "error_response",
]

logger = logging.getLogger(__name__)


class MalformedRequestError(UsageError):
    """The request body cannot be read as the JSON object the protocol requires."""

    code = "malformed"


class RequestTooLargeError(UsageError):
    """The request body is larger than the server accepts."""

    http_status = 413
    code = "too_large"


class ModelNotReadyError(InfrastructureError):
    """The model is meant to be served, but no version of it is loaded (yet, or any more)."""

    code = "not_ready"


def error_response(status: int, message: str) -> JSONResponse:
    """The protocol's error body, ``{"error": message}``, with ``status``."""
    return JSONResponse({"error": message}, status_code=status)


#: Paths of the management API, whose errors take STYLE's shape ``{"error": {"code",
#: "message"}}``; the inference routes keep the protocol's ``{"error": "..."}``.
MANAGEMENT_PREFIX = "/api/"


async def _conveyor_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConveyorError)
    if exc.http_status >= 500:
        # Not a bug, but an operator wants to see it: the store or a bundle is unavailable.
        logger.warning("answering %d: %s", exc.http_status, exc)
    if request.url.path.startswith(MANAGEMENT_PREFIX):
        return JSONResponse(
            {"error": {"code": exc.code, "message": str(exc)}}, status_code=exc.http_status
        )
    return error_response(exc.http_status, str(exc))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    # Starlette's own errors: an unknown path (404) or a wrong method (405).
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"error": exc.detail}, status_code=exc.status_code, headers=dict(exc.headers or {})
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this response is sent, so the ASGI server logs
    # it as well; this line adds which request it was.
    logger.error("bug: %s %s raised %r", request.method, request.url.path, exc, exc_info=exc)
    return error_response(500, "internal server error (a bug in Conveyor; see the server log)")


#: Exception class -> handler; Starlette finds the handler by walking the raised class's MRO,
#: so one entry for ``ConveyorError`` covers every subclass, in every service.
EXCEPTION_HANDLERS: Mapping[Any, ExceptionHandler] = {
    ConveyorError: _conveyor_error,
    HTTPException: _http_error,
    Exception: _unexpected_error,
}
