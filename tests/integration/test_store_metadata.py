"""The metadata store against real databases: migrations, failures to connect, and concurrency."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from conveyor.core.errors import ConfigError, ExitCode, InfrastructureError
from conveyor.store.metadata import (
    HEAD_REVISION,
    MetadataStore,
    migrations_runner,
    schema,
    verify_chain,
)

MIGRATIONS = Path(migrations_runner.__file__).with_name("migrations")


# ------------------------------------------------------------------ migrations


def test_head_revision_is_alembics_only_head() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    assert script.get_heads() == [HEAD_REVISION]


def test_migrations_create_exactly_the_tables_of_the_schema(
    metadata_store: MetadataStore,
) -> None:
    with metadata_store.engine.connect() as conn:
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names()) - {"alembic_version"}
        assert tables == set(schema.metadata.tables)
        for name, table in schema.metadata.tables.items():
            columns = [c["name"] for c in inspector.get_columns(name)]
            assert columns == [c.name for c in table.columns], name
        # Types, nullability, keys and indexes too: Alembic finds nothing to autogenerate.
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert version == HEAD_REVISION


def test_reopening_a_current_database_does_not_migrate(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    MetadataStore.open(store_url).close()
    calls: list[str] = []
    monkeypatch.setattr(migrations_runner, "upgrade", lambda *a, **k: calls.append("upgrade"))

    store = MetadataStore.open(store_url)
    store.close()

    assert calls == []


def test_opening_a_new_database_migrates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the test above: the patched function is the one that runs the migrations.
    calls: list[str] = []
    monkeypatch.setattr(migrations_runner, "upgrade", lambda *a, **k: calls.append("upgrade"))
    MetadataStore.open(f"sqlite:///{tmp_path / 'new.db'}").close()
    assert calls == ["upgrade"]


def test_open_without_migrating_leaves_the_database_empty(tmp_path: Path) -> None:
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'new.db'}", migrate=False)
    with store.read() as conn:
        assert sa.inspect(conn).get_table_names() == []
    store.close()


# ------------------------------------------------------------------ failures to connect


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_postgresql_is_a_one_line_infrastructure_error() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://conveyor:s3cret@127.0.0.1:{free_port()}/conveyor"
    with pytest.raises(InfrastructureError) as info:
        MetadataStore.open(url)
    err = info.value
    assert (err.exit_code, err.http_status) == (ExitCode.INFRASTRUCTURE, 503)
    assert "\n" not in str(err)
    assert err.message.startswith("metadata store postgresql+psycopg://conveyor:***@127.0.0.1:")
    assert "s3cret" not in str(err)
    assert "Connection refused" in err.message
    assert isinstance(err.__cause__, sa.exc.OperationalError)


def test_unreachable_postgresql_on_read_and_write() -> None:
    pytest.importorskip("psycopg")
    store = MetadataStore.open(f"postgresql://u@127.0.0.1:{free_port()}/db", migrate=False)
    with pytest.raises(InfrastructureError, match="is unavailable"), store.read():
        pass
    with pytest.raises(InfrastructureError, match="is unavailable"), store.write("alice"):
        pass
    store.close()


@pytest.mark.parametrize(
    "url", ["mysql://u@db/conveyor", "mongodb://db/conveyor", "not a url", "conveyor.db"]
)
def test_unsupported_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        MetadataStore.open(url)
    assert info.value.exit_code == ExitCode.USAGE
    assert info.value.hint is not None
    assert "sqlite:///" in info.value.hint


def test_sqlite_folder_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(InfrastructureError, match="cannot create the folder"):
        MetadataStore.open(f"sqlite:///{tmp_path / 'a-file' / 'sub' / 'm.db'}")


# ------------------------------------------------------------------ concurrency

# Each worker reports "ready" once imported and connected, then waits for the parent's "go", so
# both start writing together; then it appends its events, one write transaction each.
WORKER = """
import sys
from conveyor.store.metadata import MetadataStore

url, actor, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = MetadataStore.open(url)
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    with store.write(actor) as tx:
        tx.audit("test.appended", f"test:{actor}/{i}", {"i": i})
store.close()
"""


def run_together(workers: list[list[str]]) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in workers
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", proc.communicate()[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err


def audit_events(store: MetadataStore) -> list[tuple[int, str, str]]:
    with store.read() as conn:
        query = sa.select(
            schema.audit_event.c.seq, schema.audit_event.c.actor, schema.audit_event.c.target
        ).order_by(schema.audit_event.c.seq)
        return [(seq, actor, target) for seq, actor, target in conn.execute(query)]


def test_two_processes_writing_at_once_keep_one_unbroken_chain(
    metadata_store: MetadataStore, store_url: str
) -> None:
    run_together([[WORKER, store_url, actor, "50"] for actor in ("alice", "bob")])

    events = audit_events(metadata_store)
    assert [seq for seq, _, _ in events] == list(range(1, 101))
    for actor in ("alice", "bob"):
        # Each writer's own events are in its order: no transaction was lost or reordered.
        targets = [target for _, who, target in events if who == actor]
        assert targets == [f"test:{actor}/{i}" for i in range(50)]
    with metadata_store.read() as conn:
        report = verify_chain(conn)
    assert (report.ok, report.events) == (True, 100)


OPENER = """
import sys
from conveyor.store.metadata import MetadataStore

print("ready", flush=True)
sys.stdin.readline()
MetadataStore.open(sys.argv[1]).close()
"""


def test_two_processes_opening_a_new_database_at_once(store_url: str) -> None:
    # Both find no schema and migrate; the second must wait for the first, then find it current.
    run_together([[OPENER, store_url], [OPENER, store_url]])

    store = MetadataStore.open(store_url)
    with store.read() as conn:
        assert set(schema.metadata.tables) <= set(sa.inspect(conn).get_table_names())
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    store.close()
    assert version == [(HEAD_REVISION,)]
