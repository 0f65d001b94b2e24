"""The metadata store: one SQLAlchemy engine, read transactions and serialised write transactions.

Writes are serialised on purpose: on SQLite with ``BEGIN IMMEDIATE`` (the write lock is taken
up front, so two writers never deadlock on a lock upgrade) and on PostgreSQL with a
transaction-scoped advisory lock. Registry writes are rare and small, and serialising them is what
keeps version numbers and the audit chain gap-free without retry loops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from conveyor.core.clock import utcnow
from conveyor.core.errors import ConfigError, InfrastructureError
from conveyor.store.metadata.audit import AuditEvent, append_event
from conveyor.store.metadata.migrations_runner import ensure_schema

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterator

__all__ = ["MetadataStore", "Tx"]

logger = logging.getLogger(__name__)

# Any constant will do; it only has to be the same for every Conveyor process on the database.
_WRITE_LOCK_KEY = 0x436F6E76  # "Conv"
_SQLITE_BUSY_TIMEOUT_MS = 30_000


@dataclass
class Tx:
    """A write transaction: its connection, the acting user, and the audit log to append to."""

    conn: sa.Connection
    actor: str
    at: dt.datetime
    _last: AuditEvent | None = field(default=None, init=False, repr=False)

    def audit(self, action: str, target: str, payload: dict[str, Any] | None = None) -> AuditEvent:
        """Record a state change in the same transaction as the change itself."""
        self._last = append_event(
            self.conn,
            at=self.at,
            actor=self.actor,
            action=action,
            target=target,
            payload=payload or {},
            after=self._last,
        )
        return self._last


class MetadataStore:
    """Rows, transactions and migrations over SQLite (default) or PostgreSQL."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        # The same engine and pool; its connections begin their transactions as writes (see
        # the "begin" listener).
        self._writer = engine.execution_options(conveyor_write=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> MetadataStore:
        """Connect to the store at ``url`` and bring its schema up to date.

        Raises:
            ConfigError: the URL names no supported database.
            InfrastructureError: the database cannot be reached.
        """
        engine = _create_engine(url)
        store = cls(engine)
        if migrate:
            try:
                ensure_schema(engine)
            except OperationalError as exc:
                engine.dispose()
                raise _unavailable(store.url, exc) from exc
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read transaction; it sees one consistent snapshot."""
        try:
            with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    # PostgreSQL's default, READ COMMITTED, takes a new snapshot per statement.
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise _unavailable(self.url, exc) from exc

    @contextlib.contextmanager
    def write(self, actor: str) -> Iterator[Tx]:
        """A serialised write transaction; it commits on success and rolls back on any error."""
        try:
            with self._writer.connect() as conn, conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_WRITE_LOCK_KEY)))
                yield Tx(conn, actor, utcnow())
        except OperationalError as exc:
            raise _unavailable(self.url, exc) from exc


def _unavailable(url: str, exc: DBAPIError) -> InfrastructureError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return InfrastructureError(
        f"metadata store {url} is unavailable: {reason}",
        hint="check that the database is running and CONVEYOR_STORE / `store:` is right",
    )


def _create_engine(url: str) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            f"metadata store URL {url!r} is not a database URL",
            hint="use sqlite:///path/to/conveyor.db or postgresql+psycopg://user@host/db",
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
        except ImportError as exc:
            raise ConfigError(
                "the PostgreSQL metadata store needs psycopg",
                hint="pip install 'conveyor[postgres]'",
            ) from exc
    raise ConfigError(
        f"metadata store backend {backend!r} is not supported",
        hint="use sqlite:///... or postgresql+psycopg://...",
    )


def _enable_wal(cur: Any) -> None:
    """Switch the database file to WAL, once: the mode is stored in the file.

    The switch needs an exclusive lock and SQLite does not wait for it (no busy handler), so
    two processes creating the same new database at once can see "database is locked"; the one
    that loses retries until the winner's switch is visible.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.001
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


_JSON_DECODER = json.JSONDecoder()


def _json_loads(text: str) -> Any:
    """``json.loads`` for the JSON columns SQLite hands back as text, in half the time.

    ``json.loads`` matches a whitespace pattern before and after the document; text that
    SQLAlchemy wrote has none, and skipping the two matches took a small document from ~1.5 us
    to ~0.7 us (listing 1,000 runs decodes 2,000). Anything unusual goes through ``json.loads``.
    """
    try:
        value, end = _JSON_DECODER.raw_decode(text)
    except ValueError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        engine = sa.create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_deserializer=_json_loads,
        )
    else:
        path = Path(url.database or "")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InfrastructureError(
                f"cannot create the folder of {path}: {exc.strerror}"
            ) from exc
        engine = sa.create_engine(
            url,
            connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            json_deserializer=_json_loads,
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writes can ask for IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            _enable_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("conveyor_write", False)
        # Straight to the driver: through exec_driver_sql, SQLAlchemy's statement machinery
        # took 40% of an empty transaction (~70 us -> ~45 us), and every read and write has one.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
