"""``conveyor store migrate``: a real project's SQLite store, built by the CLI (two pipeline runs,
two registered versions, a promotion through the candidate gates, a signed audit checkpoint),
copied into an empty PostgreSQL database of this file's own.

What must hold on the target: every table has the source's row count; ``conveyor audit verify``
passes there (chain and checkpoints, from the database and the project's mirror file); the
project works on it (the registry answers the same, new rows get fresh keys). A non-empty target
is refused, and a copy that fails its checks leaves the target empty.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.integration.test_store_migrate_retry import fresh_database

from conveyor.store.metadata import MetadataStore, schema
from conveyor.store.metadata.transfer import copy_store

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "churn"
DATABASE = "conveyor_scale_migrate"


def conveyor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    environ["CONVEYOR_USER"] = "alice"
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],  # the CLI in its own process, as a user runs it
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok(*args: str, cwd: Path) -> str:
    result = conveyor(*args, cwd=cwd)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The churn example, small and quick, with a store built through the CLI; never changed
    by the tests (each copies it)."""
    root = tmp_path_factory.mktemp("migrate") / "churn"
    shutil.copytree(
        EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".conveyor", "*.csv")
    )
    generate = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('_gen', 'data/generate.py')\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['_gen'] = m\n"
        "spec.loader.exec_module(m)\n"
        "m.generate('2026-01', 1500, 7, drift=False).to_csv('data/2026-01.csv', index=False)\n"
        "m.generate('2026-01', 600, 9, drift=False).to_csv('data/eval-2026-01.csv', index=False)\n"
    )
    subprocess.run([sys.executable, "-c", generate], cwd=root, check=True, timeout=120)
    config = root / "conveyor.yaml"
    config.write_text(config.read_text().replace("n_estimators: 200", "n_estimators: 20"))
    ok("run", cwd=root)
    # A second version: a changed parameter re-runs training, the data steps come from cache.
    config.write_text(config.read_text().replace("learning_rate: 0.1", "learning_rate: 0.2"))
    ok("run", cwd=root)
    ok("promote", "churn", "1", "--to", "candidate", cwd=root)
    ok("audit", "checkpoint", cwd=root)
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    root = tmp_path / "churn"
    shutil.copytree(built, root, symlinks=True)
    return root


@pytest.fixture
def target() -> str:
    return fresh_database(DATABASE)


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        counts = {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in schema.metadata.sorted_tables
        }
    engine.dispose()
    return counts


def _sqlite(project: Path) -> str:
    return f"sqlite:///{project / '.conveyor' / 'metadata.db'}"


def _model_list(project: Path, *store: str) -> list[dict[str, object]]:
    listing = json.loads(ok(*store, "model", "list", "churn", "--json", cwd=project))
    assert isinstance(listing, list)
    return listing


def _migrate(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return conveyor("store", "migrate", *args, cwd=project)


def test_a_real_store_moves_to_postgresql_and_its_audit_trail_verifies_there(
    project: Path, target: str
) -> None:
    source = _counts(_sqlite(project))
    for table in ("run", "pipeline_run", "model_version", "stage_history", "evaluation"):
        assert source[table] > 0, table  # the store holds what the test claims to move
    assert source["audit_event"] > 10
    assert source["audit_checkpoint"] >= 1

    result = _migrate(project, "--to", target, "--json", "--batch-size", "7")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tables"] == {name: n for name, n in source.items()}
    assert report["rows"] == sum(source.values())
    assert report["audit_events"] == source["audit_event"]
    assert _counts(target) == source
    verified = ok("--store", target, "audit", "verify", cwd=project)
    assert f"audit trail intact: {source['audit_event']} events, last checkpoint" in verified
    assert _model_list(project, "--store", target) == _model_list(project)
    # New rows get keys past the copied ones (sequences were moved on): a second checkpoint
    # inserts into audit_checkpoint, whose id PostgreSQL numbers.
    ok("--store", target, "audit", "checkpoint", cwd=project)
    assert _counts(target)["audit_checkpoint"] == source["audit_checkpoint"] + 1
    assert "audit trail intact" in ok("--store", target, "audit", "verify", cwd=project)


def test_a_target_with_rows_is_refused_and_left_alone(project: Path, target: str) -> None:
    assert _migrate(project, "--to", target).returncode == 0
    before = _counts(target)

    again = _migrate(project, "--to", target)

    assert again.returncode == 2
    assert "is not empty: table" in again.stderr
    assert "Traceback" not in again.stderr
    assert _counts(target) == before


def test_a_target_with_other_tables_is_refused_before_any_schema_is_created(
    project: Path, target: str
) -> None:
    engine = sa.create_engine(target)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id int PRIMARY KEY)")

    result = _migrate(project, "--to", target)

    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert result.returncode == 2
    assert "tables that are not Conveyor's (invoices)" in result.stderr
    assert tables == {"invoices"}


def test_a_copy_that_fails_its_checks_commits_nothing(project: Path, target: str) -> None:
    # A source whose audit chain was edited behind Conveyor's back (triggers dropped first):
    # the copy verifies the chain before committing, finds the edit and rolls everything back.
    tampered = project / "tampered.db"
    with (
        sqlite3.connect(project / ".conveyor" / "metadata.db") as src,
        sqlite3.connect(tampered) as dst,
    ):
        src.backup(dst)
    with sqlite3.connect(tampered) as db:
        db.execute("DROP TRIGGER audit_event_no_update")
        db.execute("UPDATE audit_event SET actor = 'mallory' WHERE seq = 3")
    db.close()

    result = _migrate(project, "--from", f"sqlite:///{tampered}", "--to", target)

    assert result.returncode == 3, result.stderr
    assert "does not match the source's" in result.stderr
    assert set(_counts(target).values()) == {0}


def test_source_and_target_the_same_database_is_a_usage_error(project: Path) -> None:
    result = _migrate(project, "--to", _sqlite(project))
    assert result.returncode == 2
    assert "same database" in result.stderr


# ------------------------------------------------------------------ exactness, in process


def _rows(store: MetadataStore) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, JSON decoded and tagged SQL NULL / JSON null apart."""
    out: dict[str, list[tuple[object, ...]]] = {}
    with store.read() as conn:
        for table in schema.metadata.sorted_tables:
            columns = [
                sa.cast(c, sa.Text) if isinstance(c.type, sa.JSON) else c for c in table.columns
            ]
            query = sa.select(*columns).order_by(*table.primary_key.columns)
            out[table.name] = [
                tuple(
                    ("json", json.loads(v)) if isinstance(c.type, sa.JSON) and v is not None else v
                    for c, v in zip(table.columns, row, strict=True)
                )
                for row in conn.execute(query)
            ]
    return out


def test_a_round_trip_sqlite_postgresql_sqlite_keeps_every_value(
    project: Path, target: str, tmp_path: Path
) -> None:
    source = MetadataStore.open(_sqlite(project))
    with source.write("alice") as tx:  # SQL NULL and JSON null in one nullable JSON column
        for name, stats in (("sql-null", None), ("json-null", sa.JSON.NULL)):
            values = {"id": f"blake3:{name}", "name": name, "source_uri": "x", "created_at": tx.at}
            if stats is not None:
                values["stats"] = stats
            tx.conn.execute(sa.insert(schema.dataset_version).values(**values))
    middle = MetadataStore.open(target, migrate=False)
    back = MetadataStore.open(f"sqlite:///{tmp_path / 'back.db'}", migrate=False)
    try:
        there = copy_store(source, middle, actor="alice", batch_size=3)
        again = copy_store(middle, back, actor="alice")
        original, final = _rows(source), _rows(back)
        with middle.read() as conn:
            kinds = dict(
                conn.execute(
                    sa.text(
                        "SELECT name, coalesce(jsonb_typeof(stats), 'SQL NULL') "
                        "FROM dataset_version WHERE name LIKE '%null'"
                    )
                ).all()
            )
    finally:
        for store in (source, middle, back):
            store.close()
    assert kinds == {"sql-null": "SQL NULL", "json-null": "null"}
    assert there.tables == again.tables
    assert there.audit_head == again.audit_head
    assert final == original
