"""The feature store's errors: each names the feature, column or version to blame.

    ConveyorError
    ├── ValidationError
    │   ├── MissingColumnError       a transformation (or key) reads a column the data lacks
    │   ├── NullEntityError          entity keys with nulls: their rows belong to no one
    │   └── TimezonePolicyError      naive timestamps and no ``timezone=`` to read them in
    ├── NotFoundError
    │   └── UnknownFeatureError      a feature or version that is not registered / not served
    └── CheckFailedError
        └── FeatureMismatchError     serving feature versions differ from the trained ones

All of them are raised with a one-line message and a hint; the structured fields are in
``details`` for JSON renderings (the CLI and the HTTP API).
"""

from __future__ import annotations

from conveyor.core.errors import CheckFailedError, NotFoundError, ValidationError

__all__ = [
    "FeatureMismatchError",
    "MissingColumnError",
    "NullEntityError",
    "TimezonePolicyError",
    "UnknownFeatureError",
]


class MissingColumnError(ValidationError):
    """A feature's transformation, entity key or timestamp names a column the data lacks."""

    code = "missing_column"


class NullEntityError(ValidationError):
    """The entity key column holds nulls."""

    code = "null_entity"


class TimezonePolicyError(ValidationError):
    """Timestamps carry no timezone and the definition declares none to assume."""

    code = "timezone_policy"


class UnknownFeatureError(NotFoundError):
    """A feature (or version) is not registered, or a service does not contain it."""

    code = "unknown_feature"


class FeatureMismatchError(CheckFailedError):
    """The features a service would serve are not the exact versions a model was trained with."""

    code = "feature_mismatch"
