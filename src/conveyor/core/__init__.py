"""The core: errors, digests, configuration, ids and the clock; imported by all, importing none."""

from __future__ import annotations

from conveyor.core.errors import (
    CheckFailedError,
    ConfigError,
    ConflictError,
    ConveyorError,
    ExitCode,
    InfrastructureError,
    IntegrityError,
    NotFoundError,
    StepError,
    UsageError,
    ValidationError,
)

__all__ = [
    "CheckFailedError",
    "ConfigError",
    "ConflictError",
    "ConveyorError",
    "ExitCode",
    "InfrastructureError",
    "IntegrityError",
    "NotFoundError",
    "StepError",
    "UsageError",
    "ValidationError",
]
