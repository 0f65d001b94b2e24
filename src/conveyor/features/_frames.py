"""Computing a feature's values from its source rows, and the checks every frame goes through.

Inside the store every timestamp is a zone-less UTC instant (``datetime64``, read by DuckDB as
``TIMESTAMP``): one convention, so no comparison can mix zones. A frame's timestamps enter it
through :func:`utc_timestamps`: zone-aware ones are converted, naive ones are read in the
timezone the definition declares, and naive ones with no declared timezone are refused, since
guessing would shift every point-in-time join by the offset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ValidationError
from conveyor.features.errors import MissingColumnError, NullEntityError, TimezonePolicyError

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.features._definition import Feature

__all__ = ["EVENT_TIMESTAMP", "check_entity", "compute", "require_columns", "utc_timestamps"]

#: The timestamp column of the offline store's files.
EVENT_TIMESTAMP = "event_timestamp"


def require_columns(frame: pd.DataFrame, columns: list[str], *, what: str, role: str) -> None:
    """Raise MissingColumnError naming the first of ``columns`` that ``frame`` lacks."""
    for column in columns:
        if column not in frame.columns:
            raise MissingColumnError(
                f"{what}: {role} column '{column}' is not in the data",
                hint=f"its columns are: {', '.join(map(str, frame.columns))}",
                details={"column": column},
            )


def check_entity(frame: pd.DataFrame, entity: str, *, what: str) -> None:
    """Raise NullEntityError when the entity key column holds nulls (counting them)."""
    nulls = int(frame[entity].isna().sum())
    if nulls:
        raise NullEntityError(
            f"{what}: entity key '{entity}' is null in {nulls:,} of {len(frame):,} rows",
            hint="drop or fill those rows first; a value without an entity belongs to no one",
            details={"entity": entity, "nulls": nulls},
        )


def utc_timestamps(values: pd.Series, timezone: str | None, *, what: str) -> pd.Series:
    """``values`` as zone-less UTC timestamps (see the module docstring).

    Raises:
        TimezonePolicyError: naive timestamps and ``timezone`` is None.
        ValidationError: values that are not timestamps, or nulls among them.
    """
    import pandas as pd

    if not (
        pd.api.types.is_datetime64_any_dtype(values.dtype)
        or isinstance(values.dtype, pd.DatetimeTZDtype)
    ):
        try:
            values = pd.to_datetime(values)
        except (ValueError, TypeError) as exc:
            raise ValidationError(
                f"{what}: timestamp column '{values.name}' does not hold timestamps ({exc})",
                hint="store event times as timestamps or ISO 8601 text",
            ) from exc
    nulls = int(values.isna().sum())
    if nulls:
        raise ValidationError(
            f"{what}: timestamp column '{values.name}' is null in {nulls:,} rows",
            hint="every row needs the time its value became known",
        )
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if timezone is None:
        raise TimezonePolicyError(
            f"{what}: timestamp column '{values.name}' has no timezone and none is declared",
            hint="store zone-aware timestamps, or declare how to read them, e.g. timezone='UTC'",
            details={"column": str(values.name)},
        )
    if timezone.upper() == "UTC":
        return values
    try:
        return values.dt.tz_localize(timezone).dt.tz_convert("UTC").dt.tz_localize(None)
    except Exception as exc:  # pytz/zoneinfo raise several unrelated types for a bad zone
        raise ValidationError(
            f"{what}: cannot read timestamps in timezone {timezone!r} ({exc})",
            hint="use an IANA zone name such as 'UTC' or 'Europe/Paris'",
        ) from exc


def compute(feature: Feature, data: pd.DataFrame, *, what: str) -> pd.DataFrame:
    """The feature's values: ``(<entity>, event_timestamp, <feature name>)``, one per source row.

    Raises:
        MissingColumnError: the entity key, the timestamp, or a column the transformation reads
            is not in ``data`` (named).
        NullEntityError: the entity key holds nulls.
        TimezonePolicyError: naive timestamps and no declared timezone.
        ValidationError: the transformation returns the wrong number of values, or values
            that are not of the feature's dtype.
    """
    import pandas as pd

    label = f"feature '{feature.name}' on {what}"
    require_columns(data, [feature.entity], what=label, role="entity key")
    require_columns(data, [feature.timestamp], what=label, role="timestamp")
    check_entity(data, feature.entity, what=label)
    timestamps = utc_timestamps(data[feature.timestamp], feature.timezone, what=label)
    try:
        values = feature.transform(data, **feature.params)
    except KeyError as exc:
        column = exc.args[0] if exc.args else None
        if isinstance(column, str) and column not in data.columns:
            raise MissingColumnError(
                f"{label}: the transformation reads column '{column}', which is not in the data",
                hint=f"its columns are: {', '.join(map(str, data.columns))}",
                details={"feature": feature.name, "column": column},
            ) from exc
        raise
    series = pd.Series(values)
    if len(series) != len(data):
        raise ValidationError(
            f"{label}: the transformation returned {len(series):,} values for {len(data):,} rows",
            hint="return one value per row of the frame it is given",
        )
    return pd.DataFrame(
        {
            feature.entity: data[feature.entity].to_numpy(),
            EVENT_TIMESTAMP: timestamps.to_numpy(),
            feature.name: cast(series, feature.dtype, what=label).to_numpy(),
        }
    )


def cast(values: pd.Series, dtype: str, *, what: str) -> pd.Series:
    """``values`` as the feature's dtype (nullable where the dtype has no null of its own)."""
    target: Any = {"int64": "Int64", "int32": "Int32", "bool": "boolean"}.get(dtype, dtype)
    try:
        return values.reset_index(drop=True).astype(target)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"{what}: the transformation's values are not {dtype} ({exc})",
            hint=f"return {dtype} values, or declare the dtype they have",
        ) from exc
