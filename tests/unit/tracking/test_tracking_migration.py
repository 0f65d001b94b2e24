"""Migration 0002: a store created before tracking existed is upgraded in place, rows kept."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conveyor.core.digest import digest_bytes
from conveyor.registry import get_version, register_version
from conveyor.store.metadata import HEAD_REVISION, MetadataStore, schema, upgrade, verify_chain
from conveyor.tracking import get_metrics, list_runs, start_run


def _revision(store: MetadataStore) -> str:
    with store.read() as conn:
        return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def test_a_0001_store_is_upgraded_keeping_its_rows(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The code of 0001's time recorded no lineage edges (that table came with 0005).
    monkeypatch.setattr("conveyor.registry.versions.add_edges", lambda *_args: None)
    engine = sa.create_engine(store_url)
    upgrade(engine, "0001")
    engine.dispose()

    # Rows written by the code of 0001's time: a registered version (model, version, stage,
    # audit events) and a pipeline step's run, through a store that must not migrate.
    old = MetadataStore.open(store_url, migrate=False)
    assert _revision(old) == "0001"
    with old.read() as conn:
        assert not sa.inspect(conn).has_table("metric")
    version, _ = register_version(
        old,
        model="churn",
        artifact_digest=digest_bytes(b"bundle"),
        metrics={"auc": 0.8},
        run_id=None,
        actor="ann",
    )
    monkeypatch.undo()
    at = "2026-01-01 00:00:00" if old.dialect == "sqlite" else "2026-01-01 00:00:00+00"
    with old.write("ann") as tx:
        tx.conn.execute(
            sa.text(
                "INSERT INTO run (id, pipeline_run_id, pipeline, step, status, params, "
                "code_digest, env_digest, cache_key, cache_hit, started_at, ended_at) VALUES "
                "('r1', 'p1', 'churn', 'train', 'succeeded', '{\"n\": 1}', 'c', 'e', 'k', "
                f"false, '{at}', '{at}')"
            )
        )
        tx.audit("run.step_completed", "run:r1")
    old.close()

    store = MetadataStore.open(store_url)  # migrates
    try:
        assert _revision(store) == HEAD_REVISION
        with store.read() as conn:
            # The upgraded schema is exactly the declared one, as for a new store.
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
            assert verify_chain(conn).events == 3  # model created, version registered, run
        assert get_version(store, "churn", 1) == version
        [before] = list_runs(store)
        assert (before.id, before.params, before.metrics) == ("r1", {"n": 1}, {})
        assert before.started_at.isoformat() == "2026-01-01T00:00:00+00:00"

        with start_run(store, actor="ann", pipeline="churn") as run:
            run.log_metric("loss", 0.25)
        assert get_metrics(store, run.id) == {"loss": [(0, 0.25)]}
        assert [r.id for r in list_runs(store)] == [run.id, "r1"]
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_downgrade_to_0001_removes_only_what_0002_added(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    upgrade(engine, "head")
    from alembic import command
    from alembic.config import Config

    from conveyor.store.metadata import migrations_runner

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_runner._MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert not inspector.has_table("metric")
        assert "metrics" not in {c["name"] for c in inspector.get_columns("run")}
        assert inspector.has_table("model_version")
    engine.dispose()
