"""Each error fixes the exit code CI reads and the HTTP status API clients read."""

from __future__ import annotations

import pytest

from conveyor.core import errors
from conveyor.core.errors import (
    ApprovalPendingError,
    CheckFailedError,
    ConfigError,
    ConflictError,
    ConveyorError,
    ExitCode,
    ForbiddenError,
    InfrastructureError,
    IntegrityError,
    NotFoundError,
    StepError,
    UnauthorizedError,
    UsageError,
    ValidationError,
)


def test_exit_codes_never_change() -> None:
    assert {c.name: c.value for c in ExitCode} == {
        "OK": 0,
        "CHECK_FAILED": 1,
        "USAGE": 2,
        "INFRASTRUCTURE": 3,
    }


@pytest.mark.parametrize(
    ("cls", "exit_code", "status", "code"),
    [
        (ConveyorError, 2, 400, "error"),
        (UsageError, 2, 400, "usage"),
        (ConfigError, 2, 400, "config"),
        (NotFoundError, 2, 404, "not_found"),
        (ConflictError, 2, 409, "conflict"),
        (ValidationError, 2, 422, "invalid"),
        (StepError, 1, 409, "step_failed"),
        (CheckFailedError, 1, 409, "check_failed"),
        (ApprovalPendingError, 1, 409, "approval_pending"),
        (ForbiddenError, 1, 403, "forbidden"),
        (UnauthorizedError, 1, 401, "unauthorized"),
        (InfrastructureError, 3, 503, "unavailable"),
        (IntegrityError, 3, 503, "integrity"),
    ],
)
def test_exit_code_http_status_and_code(
    cls: type[ConveyorError], exit_code: int, status: int, code: str
) -> None:
    err = cls("something failed")
    assert isinstance(err, ConveyorError)
    assert err.exit_code == exit_code
    assert err.http_status == status
    assert err.code == code


def test_every_error_in_the_module_is_in_the_table_above() -> None:
    exported = {getattr(errors, n) for n in errors.__all__}
    classes = {c for c in exported if isinstance(c, type) and issubclass(c, ConveyorError)}
    assert len(classes) == 13


def test_integrity_is_an_infrastructure_error() -> None:
    assert issubclass(IntegrityError, InfrastructureError)


def test_message_and_hint() -> None:
    err = NotFoundError(
        "model 'churn' has no version 9 (latest is 7)", hint="see `conveyor model list churn`"
    )
    assert str(err) == (
        "model 'churn' has no version 9 (latest is 7); see `conveyor model list churn`"
    )
    assert err.message == "model 'churn' has no version 9 (latest is 7)"
    assert err.details == {}


def test_to_dict_without_details() -> None:
    err = ConflictError("version 3 is archived", hint="promote another version")
    assert err.to_dict() == {
        "code": "conflict",
        "message": "version 3 is archived; promote another version",
    }


def test_to_dict_with_details() -> None:
    checks = [{"check": "auc >= 0.8", "observed": 0.75, "threshold": 0.8, "passed": False}]
    err = CheckFailedError("gate 'production' failed for churn/3", details={"checks": checks})
    assert err.to_dict() == {
        "code": "check_failed",
        "message": "gate 'production' failed for churn/3",
        "details": {"checks": checks},
    }


def lookup(models: dict[str, int], name: str) -> int:
    try:
        return models[name]
    except KeyError as exc:
        raise NotFoundError(f"model {name!r} does not exist") from exc


def test_cause_is_kept_when_raised_from() -> None:
    with pytest.raises(NotFoundError) as info:
        lookup({}, "churn")
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.to_dict()["message"] == "model 'churn' does not exist"
