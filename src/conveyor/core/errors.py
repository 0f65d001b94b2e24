"""The error family of Conveyor, and what each error means to a shell and to an HTTP client.

Every error Conveyor raises on purpose derives from :class:`ConveyorError`. A subclass fixes the
process exit code (read by CI) and the HTTP status (read by API clients); the CLI entry point and
the HTTP error handler are the only places that translate them.

    ConveyorError                      exit 2   HTTP 400
    ├── UsageError                     exit 2   HTTP 400   a wrong argument or command
    ├── ConfigError                    exit 2   HTTP 400   conveyor.yaml, policies.yaml, env vars
    ├── NotFoundError                  exit 2   HTTP 404   unknown model, version, artifact, run
    ├── ConflictError                  exit 2   HTTP 409   the request contradicts current state
    ├── ValidationError                exit 2   HTTP 422   data or a request does not fit a schema
    ├── ForbiddenError                 exit 1   HTTP 403   a rule forbids this actor this action
    │   └── UnauthorizedError          exit 1   HTTP 401   no valid credentials were presented
    ├── StepError                      exit 1   HTTP 409   user code in a pipeline step raised
    ├── CheckFailedError               exit 1   HTTP 409   a gate or data check did not pass
    │   └── ApprovalPendingError       exit 1   HTTP 409   checks passed; reviews are missing
    └── InfrastructureError            exit 3   HTTP 503   a store or service is unavailable
        └── IntegrityError             exit 3   HTTP 503   stored bytes do not match their digest
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar

__all__ = [
    "ApprovalPendingError",
    "CheckFailedError",
    "ConfigError",
    "ConflictError",
    "ConveyorError",
    "ExitCode",
    "ForbiddenError",
    "InfrastructureError",
    "IntegrityError",
    "NotFoundError",
    "StepError",
    "UnauthorizedError",
    "UsageError",
    "ValidationError",
]


class ExitCode(IntEnum):
    """Process exit codes; CI pipelines depend on these numbers, so they never change."""

    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    INFRASTRUCTURE = 3


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose.

    Args:
        message: What went wrong, naming the object ("model 'churn' has no version 9").
        hint: What to do next ("see `conveyor model list churn`"), shown after the message.
        details: Structured data for JSON renderings (API bodies, CI reports).
    """

    exit_code: ClassVar[ExitCode] = ExitCode.USAGE
    http_status: ClassVar[int] = 400
    code: ClassVar[str] = "error"

    def __init__(
        self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of this error: ``{"code", "message"}`` plus details when present."""
        body: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.details:
            body["details"] = self.details
        return body


class UsageError(ConveyorError):
    """A command or argument that cannot work as given."""

    code = "usage"


class ConfigError(ConveyorError):
    """A configuration file or environment variable is invalid."""

    code = "config"


class NotFoundError(ConveyorError):
    """A named object (model, version, artifact, run, file) does not exist."""

    http_status = 404
    code = "not_found"


class ConflictError(ConveyorError):
    """The request contradicts the current state (a stage move that is not allowed, say)."""

    http_status = 409
    code = "conflict"


class ValidationError(ConveyorError):
    """Data or a request does not match the schema it must follow."""

    http_status = 422
    code = "invalid"


class ForbiddenError(ConveyorError):
    """A rule forbids this actor this action (approving their own version, say)."""

    exit_code = ExitCode.CHECK_FAILED
    http_status = 403
    code = "forbidden"


class UnauthorizedError(ForbiddenError):
    """No valid credentials: a missing, unknown, expired or revoked token (HTTP 401)."""

    http_status = 401
    code = "unauthorized"


class StepError(ConveyorError):
    """User code inside a pipeline step raised; the run is recorded as failed."""

    exit_code = ExitCode.CHECK_FAILED
    http_status = 409
    code = "step_failed"


class CheckFailedError(ConveyorError):
    """A gate or check did not pass; ``details["checks"]`` holds the structured results."""

    exit_code = ExitCode.CHECK_FAILED
    http_status = 409
    code = "check_failed"


class ApprovalPendingError(CheckFailedError):
    """Every automated check passed, but the stage needs reviews it does not have yet;
    ``details["waiting_for"]`` says how many and from whom."""

    code = "approval_pending"


class InfrastructureError(ConveyorError):
    """A store, database or service Conveyor needs is unavailable."""

    exit_code = ExitCode.INFRASTRUCTURE
    http_status = 503
    code = "unavailable"


class IntegrityError(InfrastructureError):
    """Stored bytes no longer match the digest they were stored under."""

    code = "integrity"
