"""The PostgreSQL metadata store under contention: conflicts are provoked for real, on a real
server, and the transaction is run again; pool settings come from the store URL.

- A serialisation failure (40001): a REPEATABLE READ transaction updates a row that another
  connection changed and committed after the transaction's snapshot.
- A deadlock (40P01): a write transaction and a connection that is not Conveyor lock two rows in
  opposite orders; PostgreSQL aborts the transaction that waited first (ours).
- A constraint violation is not retried, and a conflict on every attempt gives up with a
  :class:`TransactionConflictError` that counts the attempts.

Each test runs on a database of this file's own, created fresh.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from tests.conftest import PG_URL_VAR

from conveyor.core.errors import ConfigError, ConflictError
from conveyor.store.metadata import MetadataStore, verify_chain
from conveyor.store.metadata.store import RetryPolicy, TransactionConflictError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conveyor.store.metadata import Tx

pytestmark = pytest.mark.postgres

DATABASE = "conveyor_scale_retry"
FAST = RetryPolicy(attempts=5, base_delay=0.001, max_delay=0.01)


def fresh_database(name: str) -> str:
    """The URL of an empty database ``name`` (dropped and created again) on the test server."""
    base = os.environ.get(PG_URL_VAR)
    if not base:
        pytest.fail(f"{PG_URL_VAR} is not set: run the suite with `make test`")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    name = f"{name}_{worker}" if worker else name
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sa.make_url(base).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def url() -> str:
    url = fresh_database(DATABASE)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL)")
        conn.exec_driver_sql("INSERT INTO pair VALUES (1, 0), (2, 0)")
    engine.dispose()
    return url


@pytest.fixture
def store(url: str) -> Iterator[MetadataStore]:
    store = MetadataStore.open(url)
    store.retry = FAST
    yield store
    store.close()


@pytest.fixture
def other(url: str) -> Iterator[sa.Engine]:
    """Connections that are not Conveyor's: no advisory lock, autocommit unless they begin."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _values(engine: sa.Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return {int(i): int(n) for i, n in conn.execute(sa.text("SELECT id, n FROM pair"))}


def _update_after_snapshot(other: sa.Engine, conn: sa.Connection) -> None:
    """Take the transaction's snapshot, let another connection change the row and commit, then
    update the same row: PostgreSQL refuses with a serialisation failure."""
    conn.execute(sa.text("SELECT n FROM pair WHERE id = 1")).scalar_one()
    with other.connect() as rival:
        rival.execute(sa.text("UPDATE pair SET n = n + 100 WHERE id = 1"))
    conn.execute(sa.text("UPDATE pair SET n = n + 1 WHERE id = 1"))


# ------------------------------------------------------------------ serialisation failures


def test_a_serialisation_failure_in_a_read_block_is_named_a_conflict_not_an_outage(
    store: MetadataStore, other: sa.Engine
) -> None:
    with pytest.raises(TransactionConflictError) as info, store.read() as conn:
        _update_after_snapshot(other, conn)
    assert info.value.sqlstate == "40001"
    assert isinstance(info.value, ConflictError)
    assert "concurrent update" in info.value.message
    assert _values(other)[1] == 100  # ours rolled back, the rival's committed


def test_run_read_runs_a_transaction_again_after_a_serialisation_failure(
    store: MetadataStore, other: sa.Engine
) -> None:
    attempts: list[int] = []

    def work(conn: sa.Connection) -> int:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            _update_after_snapshot(other, conn)
        else:
            conn.execute(sa.text("UPDATE pair SET n = n + 1 WHERE id = 1"))
        return int(conn.execute(sa.text("SELECT n FROM pair WHERE id = 1")).scalar_one())

    result = store.run_read(work)

    assert attempts == [1, 2]
    assert result == 101  # the retry saw the rival's +100 and added its own +1 once
    assert _values(other)[1] == 101


def test_a_conflict_on_every_attempt_gives_up_and_counts_them(
    store: MetadataStore, other: sa.Engine
) -> None:
    store.retry = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)
    attempts: list[int] = []

    def work(conn: sa.Connection) -> None:
        attempts.append(1)
        _update_after_snapshot(other, conn)

    with pytest.raises(TransactionConflictError) as info:
        store.run_read(work)

    assert len(attempts) == 3
    assert info.value.attempts == 3
    assert "after 3 attempts" in info.value.message
    assert _values(other)[1] == 300  # only the rival's three updates committed


# ------------------------------------------------------------------ deadlocks


def test_run_write_runs_a_deadlocked_transaction_again(
    store: MetadataStore, other: sa.Engine
) -> None:
    rival_holds_row_2 = threading.Event()
    rival_errors: list[BaseException] = []

    def rival() -> None:
        try:
            with other.connect() as conn:
                conn.exec_driver_sql("BEGIN")
                conn.execute(sa.text("UPDATE pair SET n = n + 10 WHERE id = 2"))
                rival_holds_row_2.set()
                _wait_for_a_lock_wait(other)
                # Now we wait for row 1, which the store's transaction holds while it waits
                # for row 2: a cycle. The store's transaction waited first, so its deadlock
                # check runs first and it is the one aborted.
                conn.execute(sa.text("UPDATE pair SET n = n + 10 WHERE id = 1"))
                conn.exec_driver_sql("COMMIT")
        except BaseException as exc:
            rival_errors.append(exc)

    thread = threading.Thread(target=rival)
    attempts: list[int] = []

    def work(tx: Tx) -> int:
        attempts.append(1)
        tx.conn.execute(sa.text("UPDATE pair SET n = n + 1 WHERE id = 1"))
        if len(attempts) == 1:
            thread.start()
            assert rival_holds_row_2.wait(10)
        tx.conn.execute(sa.text("UPDATE pair SET n = n + 1 WHERE id = 2"))
        tx.audit("test.deadlock", "pair", {"attempt": len(attempts)})
        return len(attempts)

    started = time.monotonic()
    result = store.run_write("alice", work)
    elapsed = time.monotonic() - started
    thread.join(10)

    assert rival_errors == []
    assert result == 2
    assert _values(other) == {1: 11, 2: 11}  # each side's updates applied exactly once
    assert elapsed < 10  # deadlock_timeout is 1 s
    with store.read() as conn:
        report = verify_chain(conn)
        payloads = [
            json.loads(row.payload)
            for row in conn.execute(sa.text("SELECT payload FROM audit_event ORDER BY seq"))
        ]
    # The aborted attempt's audit event rolled back with it; the chain has only the retry's.
    assert report.ok
    assert payloads == [{"attempt": 2}]


def _wait_for_a_lock_wait(engine: sa.Engine) -> None:
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting:
                return
            time.sleep(0.005)
    raise AssertionError("the store's transaction never waited for the rival's row lock")


# ------------------------------------------------------------------ not retried


def test_a_constraint_violation_is_not_retried(store: MetadataStore, other: sa.Engine) -> None:
    attempts: list[int] = []

    def work(tx: Tx) -> None:
        attempts.append(1)
        tx.conn.execute(sa.text("INSERT INTO pair VALUES (1, 5)"))

    with pytest.raises(sa.exc.IntegrityError):
        store.run_write("alice", work)
    assert attempts == [1]
    assert _values(other) == {1: 0, 2: 0}


def test_an_error_of_the_work_itself_is_not_retried(store: MetadataStore) -> None:
    attempts: list[int] = []

    def work(conn: sa.Connection) -> None:
        attempts.append(1)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        store.run_read(work)
    assert attempts == [1]


def test_backoff_grows_exponentially_up_to_its_bound() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05)
    for retry, ceiling in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (9, 0.05)]:
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(ceiling / 2 <= d < ceiling for d in delays), (retry, min(delays))


# ------------------------------------------------------------------ pool settings


def test_pool_settings_come_from_the_url_query_and_do_not_reach_the_driver(url: str) -> None:
    store = MetadataStore.open(
        f"{url}?pool_size=2&max_overflow=1&pool_recycle=60&pool_timeout=3&pool_pre_ping=false"
        "&application_name=conveyor-test"
    )
    try:
        pool = store.engine.pool
        assert isinstance(pool, sa.QueuePool)
        assert (pool.size(), pool._max_overflow, pool._recycle, pool._timeout) == (2, 1, 60, 3)
        assert pool._pre_ping is False
        assert "pool_size" not in store.url
        with store.read() as conn:  # the rest of the query still reaches psycopg
            name = conn.execute(sa.text("SHOW application_name")).scalar_one()
        assert name == "conveyor-test"
    finally:
        store.close()


def test_pool_defaults(store: MetadataStore) -> None:
    pool = store.engine.pool
    assert isinstance(pool, sa.QueuePool)
    assert (pool.size(), pool._max_overflow, pool._recycle, pool._pre_ping) == (5, 10, 1800, True)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("pool_size=many", "pool_size"),
        ("max_overflow=-3", "max_overflow"),
        ("pool_pre_ping=maybe", "pool_pre_ping"),
    ],
)
def test_a_bad_pool_setting_is_a_config_error_naming_it(url: str, query: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        MetadataStore.open(f"{url}?{query}")
