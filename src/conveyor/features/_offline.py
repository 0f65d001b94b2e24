"""The offline store: every computed feature value, as Parquet, and point-in-time training sets.

Layout under the root (default ``<project>/.conveyor/features/offline``)::

    <feature name>/<version hex>/part-<source digest hex[:16]>.parquet

with columns ``(<entity key>, event_timestamp, <feature name>)``. One file per source snapshot a
version was computed from: computing the same version from the same data writes the same file
(idempotent), from newer data adds one beside it.

A training set takes, for each label row, the latest value of each feature *at or before* the
label's timestamp, never after (the label would otherwise see the future): DuckDB's
``ASOF LEFT JOIN``, one per feature, straight off the Parquet files. A value older than the
feature's TTL at the label's time is returned as null.

Only the labels' entity keys, times and row numbers enter DuckDB, and the joined rows come back
unordered (``preserve_insertion_order`` off, no ``ORDER BY``: both cost a sort of the result);
they are put back in label order by a scatter on the row number, beside the labels' other
columns, which never leave pandas. At 1M labels x 5M feature rows this is ~0.6 s against ~2 s
with ``row_number() OVER ()`` and ``ORDER BY``, yet still slower than pandas ``merge_asof`` on
rows already sorted by time (~0.2 s, single pass): DuckDB's ASOF join sorts both sides.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.atomic import atomic_write_bytes
from conveyor.core.errors import InfrastructureError, ValidationError
from conveyor.features._frames import (
    EVENT_TIMESTAMP,
    check_entity,
    require_columns,
    utc_timestamps,
)
from conveyor.features.errors import UnknownFeatureError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import duckdb
    import pandas as pd

    from conveyor.features._definition import FeatureRecord

__all__ = ["OfflineStore", "point_in_time_join"]

logger = logging.getLogger(__name__)


class OfflineStore:
    """Feature values as Parquet files under ``root`` (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def folder(self, feature: FeatureRecord) -> Path:
        return self.root / feature.name / feature.version.partition(":")[2]

    def write(self, feature: FeatureRecord, values: pd.DataFrame, *, source_digest: str) -> Path:
        """Store the values computed from the source with digest ``source_digest`` (atomic).

        Returns:
            The Parquet file written (or already there, for the same source).
        """
        from conveyor.packaging import encode_frame

        path = self.folder(feature) / f"part-{source_digest.partition(':')[2][:16]}.parquet"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, encode_frame(values, what=f"feature '{feature.name}'"))
        return path

    def files(self, feature: FeatureRecord) -> list[Path]:
        """The feature's Parquet files.

        Raises:
            UnknownFeatureError: nothing was materialised offline for this version.
        """
        found = sorted(self.folder(feature).glob("part-*.parquet"))
        if not found:
            raise UnknownFeatureError(
                f"feature {feature.name}@{feature.version[:19]} has no offline values "
                f"under {self.root}",
                hint="compute them: `conveyor features apply` (with the feature's source data)",
            )
        return found

    def scan(self, feature: FeatureRecord) -> str:
        """A DuckDB table expression reading the feature's values."""
        paths = ", ".join(_quote(str(p)) for p in self.files(feature))
        return f"read_parquet([{paths}])"

    def read(self, feature: FeatureRecord) -> pd.DataFrame:
        """All offline values of the feature, ordered by entity and time."""
        with _connect() as con:
            order = f"{ident(feature.entity)}, {EVENT_TIMESTAMP}"
            return _fetch(con, f"SELECT * FROM {self.scan(feature)} ORDER BY {order}")  # noqa: S608

    def training_set(
        self,
        features: Sequence[FeatureRecord],
        labels: pd.DataFrame,
        *,
        timestamp: str = EVENT_TIMESTAMP,
        timezone: str | None = None,
    ) -> pd.DataFrame:
        """``labels`` with one column per feature: its value as of each label's time.

        Args:
            features: The features (of one entity), e.g. a service's ``features``.
            labels: Rows with the entity key column, a timestamp column and anything else
                (kept as is, in order).
            timestamp: The labels' timestamp column.
            timezone: How to read naive label timestamps (``"UTC"``); None refuses them.

        Raises:
            MissingColumnError: the labels lack the entity key or the timestamp column.
            NullEntityError: null entity keys among the labels.
            TimezonePolicyError: naive label timestamps and no ``timezone``.
            UnknownFeatureError: a feature has no offline values.
        """
        entity = _one_entity(features)
        tables = [(self.scan(f), [f.name], f.ttl_seconds) for f in features]
        return point_in_time_join(
            labels, tables, entity=entity, timestamp=timestamp, timezone=timezone
        )


def point_in_time_join(
    labels: pd.DataFrame,
    features: Sequence[tuple[Any, Sequence[str], float | None]],
    *,
    entity: str,
    timestamp: str = EVENT_TIMESTAMP,
    feature_timestamp: str = EVENT_TIMESTAMP,
    timezone: str | None = None,
) -> pd.DataFrame:
    """The ASOF join under :meth:`OfflineStore.training_set`, for any table of feature values.

    Args:
        labels: See :meth:`OfflineStore.training_set`.
        features: ``(table, columns, ttl)`` triples: a DuckDB table expression or a DataFrame
            holding ``entity``, ``feature_timestamp`` and ``columns`` (the values wanted,
            one ASOF join per table), and a TTL in seconds or None.
        entity: The entity key column (in the labels and in every feature table).
        timestamp: The labels' timestamp column.
        feature_timestamp: The feature tables' timestamp column (zone-less UTC).
        timezone: How to read naive label timestamps.
    """
    import pandas as pd

    what = "the labels"
    require_columns(labels, [entity], what=what, role="entity key")
    require_columns(labels, [timestamp], what=what, role="timestamp")
    check_entity(labels, entity, what=what)
    column = labels[timestamp]
    times = utc_timestamps(column, timezone, what=what)
    clash = sorted({c for _, columns, _ in features for c in columns} & set(labels.columns))
    if clash:
        raise ValidationError(
            f"the labels already have column(s) {', '.join(clash)}, named like features",
            hint="rename or drop them before building the training set",
        )
    import numpy as np

    frame = labels if times is column else labels.assign(**{timestamp: times})
    # Only the keys, the time and the row number go through DuckDB; the labels' other columns
    # stay in pandas, untouched. The joined rows come back in any order (no ORDER BY, no
    # insertion order kept: both cost a sort) and are put back in label order by ``_row``.
    keys = pd.DataFrame(
        {"_key": frame[entity].to_numpy(), "_ts": times.to_numpy(), "_row": np.arange(len(frame))}
    )
    selects, joins = ["l._row"], []
    con = _connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        con.register("_labels", keys)
        for i, (given, columns, ttl) in enumerate(features):
            table = given
            if isinstance(given, pd.DataFrame):
                con.register(f"_features_{i}", given)
                table = f"_features_{i}"
            alias = f"f{i}"
            for column in map(ident, columns):
                value = f"{alias}.{column}"
                if ttl is not None:
                    micros = round(ttl * 1_000_000)
                    value = (
                        f"CASE WHEN {alias}._ts >= l._ts - INTERVAL {micros} MICROSECOND "
                        f"THEN {value} END"
                    )
                selects.append(f"{value} AS {column}")
            wanted = ", ".join(map(ident, columns))
            joins.append(
                f"ASOF LEFT JOIN (SELECT {ident(entity)} AS _key, "  # noqa: S608
                f"{ident(feature_timestamp)} AS _ts, {wanted} FROM {table}) {alias} "
                f"ON l._key = {alias}._key AND l._ts >= {alias}._ts"
            )
        # Every name in the text is quoted by ident() and every path by _quote(); DuckDB
        # takes no parameters for identifiers or table functions' file lists.
        sql = f"SELECT {', '.join(selects)} FROM _labels l {' '.join(joins)}"  # noqa: S608
        fetched = _fetch(con, sql)
    finally:
        con.close()
    order = np.empty(len(fetched), dtype=np.int64)
    order[fetched["_row"].to_numpy()] = np.arange(len(fetched))
    values = fetched.drop(columns="_row").take(order).reset_index(drop=True)
    return pd.concat([frame.reset_index(drop=True), values], axis=1)


def _one_entity(features: Sequence[FeatureRecord]) -> str:
    entities = sorted({f.entity for f in features})
    if len(entities) != 1:
        raise ValidationError(
            f"a training set joins features of one entity key, not {len(entities)}: "
            f"{', '.join(entities) or '(no features)'}",
            hint="build one training set per entity and merge them",
        )
    return entities[0]


def _connect() -> duckdb.DuckDBPyConnection:
    try:
        import duckdb
    except ImportError as exc:  # a core dependency; only a broken install lacks it
        raise InfrastructureError(
            "duckdb is not installed", hint="reinstall conveyor: pip install conveyor"
        ) from exc
    return duckdb.connect()


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    import duckdb

    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise ValidationError(
            f"the feature query failed: {str(exc).splitlines()[0]}",
            hint="check that the labels' entity key has the same type as the features'",
        ) from exc


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
