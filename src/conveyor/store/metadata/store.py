"""The metadata store: one SQLAlchemy engine, read transactions and serialised write transactions.

Writes are serialised on purpose: on SQLite with ``BEGIN IMMEDIATE`` (the write lock is taken
up front, so two writers never deadlock on a lock upgrade) and on PostgreSQL with a
transaction-scoped advisory lock. Registry writes are rare and small, and serialising them is what
keeps version numbers and the audit chain gap-free without retry loops.

PostgreSQL can still abort a transaction that did nothing wrong: with a serialisation failure
(SQLSTATE 40001: a REPEATABLE READ transaction updated a row another transaction changed after
its snapshot, or a read on a hot standby conflicted with replay) or as the victim of a deadlock
(40P01: with a process that is not Conveyor and does not take our advisory lock). Both mean "run
the whole transaction again"; :meth:`MetadataStore.run_read` and :meth:`MetadataStore.run_write`
do that, a bounded number of times with exponential backoff and jitter. A ``with`` block cannot
be re-run, so :meth:`~MetadataStore.read` and :meth:`~MetadataStore.write` raise
:class:`TransactionConflictError` instead, which names the conflict rather than calling the
database unavailable.

Connection pooling on PostgreSQL is set in the store URL's query string, next to the database it
applies to (``CONVEYOR_STORE`` or ``store:`` in ``conveyor.yaml``)::

    postgresql+psycopg://conveyor@db/conveyor?pool_size=10&max_overflow=20&pool_recycle=900

``pool_size`` (default 5) connections are kept open per process, ``max_overflow`` (10) more are
opened under load and closed again, a connection older than ``pool_recycle`` seconds (1800) is
replaced (load balancers and PgBouncer drop idle connections), ``pool_pre_ping`` (true) tests a
connection before it is handed out, and ``pool_timeout`` (30) is how long a checkout waits for a
free connection. With N server replicas the database sees up to N x (pool_size + max_overflow)
connections: keep that under its ``max_connections``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from conveyor.core.clock import utcnow
from conveyor.core.errors import ConfigError, ConflictError, ConveyorError, InfrastructureError
from conveyor.store.metadata.audit import AuditEvent, append_event
from conveyor.store.metadata.migrations_runner import ensure_schema

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Iterator

__all__ = ["MetadataStore", "RetryPolicy", "TransactionConflictError", "Tx"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

# Any constant will do; it only has to be the same for every Conveyor process on the database.
_WRITE_LOCK_KEY = 0x436F6E76  # "Conv"
_SQLITE_BUSY_TIMEOUT_MS = 30_000
# SQLSTATEs after which the whole transaction may simply run again: serialization_failure and
# deadlock_detected. Nothing else is retried: a constraint violation or a lost connection would
# only fail again, or hide a bug.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# Pool settings accepted in a PostgreSQL store URL's query string, with their types and defaults.
_POOL_DEFAULTS: dict[str, int | bool] = {
    "pool_size": 5,
    "max_overflow": 10,
    "pool_recycle": 1800,
    "pool_timeout": 30,
    "pool_pre_ping": True,
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class TransactionConflictError(ConflictError):
    """The database aborted a transaction over a concurrent one (serialisation failure or
    deadlock); running it again is expected to succeed."""

    def __init__(self, url: str, sqlstate: str, reason: str, *, attempts: int = 1) -> None:
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(
            f"metadata store {url} aborted a transaction over a concurrent one{tried}: {reason}",
            hint="run the command again; if it keeps happening, look for long transactions "
            "holding locks on the database",
            details={"sqlstate": sqlstate, "attempts": attempts},
        )
        self.sqlstate = sqlstate
        self.reason = reason
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transaction aborted by a conflict is run again.

    The n-th retry waits ``min(max_delay, base_delay * 2**(n-1))`` seconds, times a random
    factor in [0.5, 1): transactions that collided once should not collide again in lockstep.
    """

    attempts: int = 5
    base_delay: float = 0.01
    max_delay: float = 0.5

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


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

    def __init__(self, engine: sa.Engine, *, retry: RetryPolicy | None = None) -> None:
        self.engine = engine
        self.retry = retry or RetryPolicy()
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
        """A read transaction; it sees one consistent snapshot.

        Raises:
            TransactionConflictError: the database aborted it over a concurrent transaction
                (:meth:`run_read` runs it again instead).
            InfrastructureError: the database cannot be reached.
        """
        try:
            with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    # PostgreSQL's default, READ COMMITTED, takes a new snapshot per statement.
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from exc

    @contextlib.contextmanager
    def write(self, actor: str) -> Iterator[Tx]:
        """A serialised write transaction; it commits on success and rolls back on any error.

        Raises:
            TransactionConflictError: the database aborted it over a concurrent transaction
                (:meth:`run_write` runs it again instead).
            InfrastructureError: the database cannot be reached.
        """
        try:
            with self._writer.connect() as conn, conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_WRITE_LOCK_KEY)))
                yield Tx(conn, actor, utcnow())
        except DBAPIError as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def run_read(self, work: Callable[[sa.Connection], _T]) -> _T:
        """``work(conn)`` in a read transaction, run again if the database aborts it over a
        concurrent transaction; returns what ``work`` returns.

        ``work`` may run more than once, so it must not have effects outside the transaction.

        Raises:
            TransactionConflictError: it was aborted on every one of ``retry.attempts`` tries.
            InfrastructureError: the database cannot be reached.
        """

        def attempt() -> _T:
            with self.read() as conn:
                return work(conn)

        return self._retrying(attempt)

    def run_write(self, actor: str, work: Callable[[Tx], _T]) -> _T:
        """``work(tx)`` in a serialised write transaction, run again (from a fresh transaction)
        if the database aborts it over a concurrent one; returns what ``work`` returns.

        ``work`` may run more than once, so it must not have effects outside the transaction.

        Raises:
            TransactionConflictError: it was aborted on every one of ``retry.attempts`` tries.
            InfrastructureError: the database cannot be reached.
        """

        def attempt() -> _T:
            with self.write(actor) as tx:
                return work(tx)

        return self._retrying(attempt)

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        tries = max(1, self.retry.attempts)
        for number in range(1, tries + 1):
            try:
                return attempt()
            except TransactionConflictError as exc:
                if number == tries:
                    raise TransactionConflictError(
                        self.url, exc.sqlstate, exc.reason, attempts=number
                    ) from exc
                delay = self.retry.delay(number)
                logger.info(
                    "transaction conflict, retrying",
                    extra={"sqlstate": exc.sqlstate, "attempt": number, "delay_s": delay},
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _translate(self, exc: DBAPIError) -> ConveyorError | None:
        """The error to raise instead of a database error, or None to let it through (a
        constraint violation is a bug, or a race its caller handles: not ours to rename)."""
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate in _RETRYABLE_SQLSTATES:
            return TransactionConflictError(self.url, str(sqlstate), _first_line(exc))
        if isinstance(exc, OperationalError):
            return _unavailable(self.url, exc)
        return None


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)


def _unavailable(url: str, exc: DBAPIError) -> InfrastructureError:
    reason = _first_line(exc)
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
        parsed, pool = _pool_settings(parsed)
        try:
            return sa.create_engine(parsed, **pool)
        except ImportError as exc:
            raise ConfigError(
                "the PostgreSQL metadata store needs psycopg",
                hint="pip install 'conveyor[postgres]'",
            ) from exc
    raise ConfigError(
        f"metadata store backend {backend!r} is not supported",
        hint="use sqlite:///... or postgresql+psycopg://...",
    )


def _pool_settings(url: sa.URL) -> tuple[sa.URL, dict[str, int | bool]]:
    """The pool settings in ``url``'s query (over the defaults), and the URL without them: the
    rest of the query goes to the driver, which would refuse these names.

    Raises:
        ConfigError: a setting's value is not a number (or, for ``pool_pre_ping``, a boolean).
    """
    settings = dict(_POOL_DEFAULTS)
    for name, default in _POOL_DEFAULTS.items():
        if name not in url.query:
            continue
        raw = url.query[name]
        text = (raw[-1] if isinstance(raw, tuple) else raw).strip().lower()
        if isinstance(default, bool):
            if text not in _TRUE | _FALSE:
                raise ConfigError(
                    f"metadata store URL setting {name}={text!r} is not a boolean",
                    hint=f"use {name}=true or {name}=false",
                )
            settings[name] = text in _TRUE
            continue
        # pool_recycle=-1 turns recycling off; pool_size=0 means no limit (SQLAlchemy's rules).
        minimum = -1 if name == "pool_recycle" else 0
        value = int(text) if text.lstrip("-").isdigit() else None
        if value is None or value < minimum:
            raise ConfigError(
                f"metadata store URL setting {name}={text!r} is not a whole number of "
                + ("seconds" if name in ("pool_recycle", "pool_timeout") else "connections"),
                hint=f"e.g. {name}={default}",
            )
        settings[name] = value
    return url.difference_update_query(_POOL_DEFAULTS), settings


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
