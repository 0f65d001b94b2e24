"""The online store: the latest value of each feature per entity, for serving.

An :class:`OnlineStore` keeps, per ``(entity key, feature name@version)``, one value and the
event time it is from. Writes are conditional: a value replaces the stored one only if its event
time is newer, so materialising time windows in any order, or twice, ends in the same state.

- :class:`SQLiteOnlineStore`, the default: one file under ``.conveyor/``, one indexed row per
  (entity, feature), read with the standard library's ``sqlite3`` (no SQLAlchemy on the hot
  path).
- :class:`RedisOnlineStore`, for production: one hash per entity (``<prefix><entity key>``),
  fields ``<ref>`` (the JSON value) and ``ts:<ref>`` (its event time); a batch is one pipeline
  of a small Lua script per entity that does the newer-only compare-and-set on the server.
  ``redis`` is the ``conveyor[redis]`` extra and is imported only here.

Event times are integers: microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.core.errors import ConfigError, InfrastructureError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "OnlineRow",
    "OnlineStore",
    "RedisOnlineStore",
    "SQLiteOnlineStore",
    "open_online_store",
]

#: ``(entity key, feature ref, value, event time in µs since the epoch, UTC)``.
OnlineRow = tuple[str, str, Any, int]
#: Per entity: feature ref -> (value, event time µs); a ref with no value is absent.
Found = dict[str, tuple[Any, int]]


class OnlineStore(Protocol):
    """Latest feature values per entity (see the module docstring)."""

    uri: str

    def write(self, rows: Iterable[OnlineRow]) -> None:
        """Store each row whose event time is newer than the stored one's."""

    def read(self, entity_keys: Sequence[str], refs: Sequence[str]) -> list[Found]:
        """For each entity key, in order, the stored values of ``refs``."""

    def close(self) -> None: ...


#: Entity keys per SQLite read query.
_READ_CHUNK = 500


class SQLiteOnlineStore:
    """The default online store: a SQLite file (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.uri = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # One connection shared by the threads of a server: reads are serialised by
            # sqlite3 itself, writes by the lock (sqlite3 connections are thread-safe in the
            # "serialized" build Python ships).
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS online_feature (entity TEXT NOT NULL, "
                "feature TEXT NOT NULL, value, event_ts INTEGER NOT NULL, "
                "PRIMARY KEY (entity, feature)) WITHOUT ROWID"
            )
        except sqlite3.Error as exc:
            raise InfrastructureError(
                f"cannot open the online feature store {self.path}: {exc}",
                hint="check that the folder is writable",
            ) from exc
        self._lock = threading.Lock()

    def write(self, rows: Iterable[OnlineRow]) -> None:
        sql = (
            "INSERT INTO online_feature (entity, feature, value, event_ts) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (entity, feature) DO UPDATE SET value = excluded.value, "
            "event_ts = excluded.event_ts WHERE excluded.event_ts > online_feature.event_ts"
        )
        with self._lock, self._conn:
            self._conn.executemany(sql, ((k, r, _plain(v), t) for k, r, v, t in rows))

    def read(self, entity_keys: Sequence[str], refs: Sequence[str]) -> list[Found]:
        wanted = set(refs)
        found: dict[str, Found] = {}
        unique = list(dict.fromkeys(entity_keys))
        # One query per _READ_CHUNK keys (SQLite's bound-variable limit is 999 on old builds).
        for start in range(0, len(unique), _READ_CHUNK):
            chunk = unique[start : start + _READ_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT entity, feature, value, event_ts FROM online_feature "  # noqa: S608
                f"WHERE entity IN ({marks})",
                chunk,
            ).fetchall()
            for entity, feature, value, ts in rows:
                if feature in wanted:
                    found.setdefault(entity, {})[feature] = (value, ts)
        return [dict(found.get(key, {})) for key in entity_keys]

    def close(self) -> None:
        self._conn.close()


_SET_IF_NEWER = """
for i = 1, #ARGV, 3 do
  local old = redis.call('HGET', KEYS[1], 'ts:' .. ARGV[i])
  if (not old) or tonumber(old) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2], 'ts:' .. ARGV[i], ARGV[i + 1])
  end
end
return 0
"""


class RedisOnlineStore:
    """The production online store: a hash per entity in Redis (see the module docstring).

    Args:
        url: ``redis://host:port/db``.
        prefix: Prefix of every key this store writes (one per project or environment).
        batch: Entities per pipeline round trip when writing.

    Raises:
        ConfigError: the ``redis`` package is not installed.
    """

    def __init__(self, url: str, *, prefix: str = "conveyor:features:", batch: int = 1000) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ConfigError(
                "the Redis online store needs the redis package",
                hint="pip install 'conveyor[redis]'",
            ) from exc
        self.uri = url
        self.prefix = prefix
        self._batch = batch
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(_SET_IF_NEWER)

    def write(self, rows: Iterable[OnlineRow]) -> None:
        by_entity: dict[str, list[Any]] = defaultdict(list)
        for key, ref, value, ts in rows:
            by_entity[key].extend((ref, ts, json.dumps(_plain(value))))
        keys = list(by_entity)
        try:
            for start in range(0, len(keys), self._batch):
                pipe = self._client.pipeline(transaction=False)
                for key in keys[start : start + self._batch]:
                    self._script(keys=[self.prefix + key], args=by_entity[key], client=pipe)
                pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def read(self, entity_keys: Sequence[str], refs: Sequence[str]) -> list[Found]:
        fields = [*refs, *(f"ts:{r}" for r in refs)]
        n = len(refs)
        try:
            if len(entity_keys) == 1:
                replies = [self._client.hmget(self.prefix + entity_keys[0], fields)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for key in entity_keys:
                    pipe.hmget(self.prefix + key, fields)
                replies = pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        # A value is written with its time in one HSET, so both are present or neither.
        return [
            {
                ref: (json.loads(reply[i] or "null"), int(reply[n + i] or 0))
                for i, ref in enumerate(refs)
                if reply[i] is not None
            }
            for reply in replies
        ]

    def delete(self, entity_keys: Sequence[str]) -> None:
        """Remove these entities' hashes (used by tests to clean up their own keys)."""
        if entity_keys:
            self._client.delete(*(self.prefix + k for k in entity_keys))

    def close(self) -> None:
        self._client.close()

    def _unavailable(self, exc: BaseException) -> InfrastructureError:
        return InfrastructureError(
            f"the Redis online store at {_safe(self.uri)} is unavailable: {exc}",
            hint="check that Redis is running and features.online (or "
            "CONVEYOR_FEATURES_ONLINE) points to it",
        )


def open_online_store(spec: str | None, *, root: Path) -> OnlineStore:
    """The online store named by ``spec``.

    Args:
        spec: ``"sqlite"`` or None (``<root>/.conveyor/features/online.db``),
            ``sqlite:///<path>``, or ``redis://...`` (optionally ``#<key prefix>``).
        root: The project folder.

    Raises:
        ConfigError: an unknown kind of store, or ``redis`` not installed.
    """
    if spec is None or spec == "sqlite":
        return SQLiteOnlineStore(root / ".conveyor" / "features" / "online.db")
    if spec.startswith("sqlite:///"):
        path = Path(spec.removeprefix("sqlite:///"))
        return SQLiteOnlineStore(path if path.is_absolute() else root / path)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        url, _, prefix = spec.partition("#")
        return RedisOnlineStore(url, prefix=prefix or "conveyor:features:")
    raise ConfigError(
        f"online feature store {_safe(spec)!r} is not a store Conveyor knows",
        hint="use 'sqlite', 'sqlite:///<path>' or 'redis://host:port/db'",
    )


def _plain(value: Any) -> Any:
    """A Python scalar for a numpy/pandas one; None for every kind of missing value."""
    if value is None:
        return None
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _safe(url: str) -> str:
    """``url`` without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
