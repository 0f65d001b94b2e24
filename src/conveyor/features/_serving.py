"""From the offline store to the online one, and the lookups a model server makes.

:func:`materialize` copies, for each feature and each entity, the latest offline value in a time
window ``[start, end)`` into the online store. Incremental by construction: the window is the
only data read, and the online store keeps a value only if it is newer than the one it has, so
windows can be materialised in any order (a backfill of last month after today's run does not
overwrite today's values).

:func:`get_online_features` answers "the service's features for these entity keys", checking
each requested feature is in the service and applying each feature's TTL against ``now``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.features._definition import FeatureService, ServiceRecord, as_record
from conveyor.features._frames import EVENT_TIMESTAMP
from conveyor.features._offline import _connect, _fetch, ident

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from conveyor.features._definition import FeatureRecord
    from conveyor.features._offline import OfflineStore
    from conveyor.features._online import OnlineRow, OnlineStore

__all__ = ["Materialized", "get_online_features", "materialize", "to_micros"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Materialized:
    """What one :func:`materialize` call wrote: feature ref -> entities offered."""

    start: dt.datetime | None
    end: dt.datetime | None
    entities: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "entities": self.entities,
        }


def to_micros(moment: dt.datetime) -> int:
    """Microseconds since the epoch; a naive ``moment`` is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def materialize(
    offline: OfflineStore,
    online: OnlineStore,
    features: FeatureService | ServiceRecord | Sequence[FeatureRecord],
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> Materialized:
    """Copy each entity's latest value in ``[start, end)`` of each feature online.

    Args:
        offline: Where the values are.
        online: Where they go.
        features: A service, or feature records.
        start: First event time included (None: from the beginning); naive means UTC.
        end: First event time excluded (None: to the end).

    Raises:
        UnknownFeatureError: a feature has no offline values.
        InfrastructureError: the online store is unavailable.
    """
    records = (
        as_record(features).features
        if isinstance(features, FeatureService | ServiceRecord)
        else tuple(features)
    )
    where = []
    if start is not None:
        where.append(f"{EVENT_TIMESTAMP} >= make_timestamp({to_micros(start)})")
    if end is not None:
        where.append(f"{EVENT_TIMESTAMP} < make_timestamp({to_micros(end)})")
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    counts: dict[str, int] = {}
    rows: list[OnlineRow] = []
    with _connect() as con:
        for f in records:
            key, column = ident(f.entity), ident(f.name)
            # Names quoted by ident(), paths by scan(), times are integers.
            sql = (
                f"SELECT CAST({key} AS VARCHAR) AS k, "  # noqa: S608
                f"arg_max({column}, {EVENT_TIMESTAMP}) AS v, "
                f"epoch_us(max({EVENT_TIMESTAMP})) AS t "
                f"FROM {offline.scan(f)} {condition} GROUP BY {key}"
            )
            latest = _fetch(con, sql)
            ref = f.ref
            rows.extend(
                zip(
                    latest["k"].tolist(),
                    [ref] * len(latest),
                    latest["v"].tolist(),
                    latest["t"].tolist(),
                    strict=True,
                )
            )
            counts[ref] = len(latest)
    # One write for all features: Redis then sets each entity's features in one script call.
    online.write(rows)
    return Materialized(start, end, counts)


def get_online_features(
    online: OnlineStore,
    service: FeatureService | ServiceRecord,
    entity_keys: Sequence[Any],
    *,
    features: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    as_frame: bool = False,
) -> dict[str, dict[str, Any]] | pd.DataFrame:
    """The service's feature values for each entity key, as served to a model.

    Args:
        online: The online store.
        service: The feature service.
        entity_keys: Entity key values (compared as text).
        features: Only these features of the service (default: all).
        now: The lookup time for TTLs (default: the current time).
        as_frame: Return a DataFrame (index: the entity keys) instead of a dict.

    Returns:
        ``{entity key: {feature name: value or None}}``: None where the store has no value,
        or only one older than the feature's TTL.

    Raises:
        UnknownFeatureError: ``features`` names a feature the service does not contain.
        InfrastructureError: the online store is unavailable.
    """
    record = as_record(service)
    wanted = [record.feature(n) for n in features] if features is not None else record.features
    keys = [str(k) for k in entity_keys]
    found = online.read(keys, [f.ref for f in wanted])
    oldest = _oldest_allowed(wanted, now)
    result = {
        key: {f.name: _value(got.get(f.ref), oldest[f.ref], f.dtype) for f in wanted}
        for key, got in zip(keys, found, strict=True)
    }
    if not as_frame:
        return result
    import pandas as pd

    frame = pd.DataFrame.from_dict(result, orient="index", columns=[f.name for f in wanted])
    frame.index.name = record.entity
    return frame


def _oldest_allowed(
    features: Sequence[FeatureRecord], now: dt.datetime | None
) -> dict[str, int | None]:
    if all(f.ttl_seconds is None for f in features):
        return {f.ref: None for f in features}
    at = to_micros(now or dt.datetime.now(dt.UTC))
    return {
        f.ref: None if f.ttl_seconds is None else at - round(f.ttl_seconds * 1_000_000)
        for f in features
    }


def _value(got: tuple[Any, int] | None, oldest: int | None, dtype: str) -> Any:
    if got is None:
        return None
    value, ts = got
    if value is None or (oldest is not None and ts < oldest):
        return None
    # SQLite has no boolean type and stores them as 0/1.
    return bool(value) if dtype == "bool" else value
