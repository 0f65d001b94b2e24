"""Tracking: buffered metrics, run status, listings, the audit trail; SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from conveyor.core.errors import ConflictError, NotFoundError, ValidationError
from conveyor.store.metadata import MetadataStore, schema, upgrade, verify_chain
from conveyor.tracking import get_metrics, list_runs, start_run

if TYPE_CHECKING:
    from pathlib import Path


class _Handle:
    def __init__(self, run_id: str) -> None:
        self.id = run_id


def _count(store: MetadataStore, table: sa.Table) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_metrics_are_buffered_and_written_exactly(metadata_store: MetadataStore) -> None:
    with start_run(metadata_store, actor="ann", flush_every=100) as handle:
        for i in range(250):
            handle.log_metric("loss", 1.0 / (i + 1))
        # Two full batches are written; the last 50 wait for the end of the run.
        assert _count(metadata_store, schema.metric) == 200
        handle.log_metric("auc", 0.875, step=7)
    assert _count(metadata_store, schema.metric) == 251
    values = get_metrics(metadata_store, handle.id)
    assert values["loss"] == [(i, 1.0 / (i + 1)) for i in range(250)]
    assert values["auc"] == [(7, 0.875)]


def test_a_failing_run_keeps_its_metrics_and_is_marked_failed(
    metadata_store: MetadataStore,
) -> None:
    def failing_work() -> str:
        with start_run(metadata_store, actor="ann") as handle:
            handle.log_metric("loss", 0.5)
            raise RuntimeError(f"boom in {handle.id}")

    with pytest.raises(RuntimeError, match="boom") as info:
        failing_work()
    run_id = str(info.value).removeprefix("boom in ")
    h = _Handle(run_id)
    assert get_metrics(metadata_store, h.id) == {"loss": [(0, 0.5)]}
    [record] = list_runs(metadata_store)
    assert record.id == h.id
    assert record.status == "failed"
    assert record.ended_at is not None

    ended = start_run(metadata_store, actor="ann")
    ended.end()
    with pytest.raises(ConflictError, match="has ended"):
        ended.log_metric("loss", 0.4)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "0.5"])
def test_a_value_that_is_not_a_finite_number_is_refused(
    metadata_store: MetadataStore, value: object
) -> None:
    with start_run(metadata_store, actor="ann") as handle:
        with pytest.raises(ValidationError, match="finite number"):
            handle.log_metric("loss", value)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="metric name"):
            handle.log_metric("bad name/x", 1.0)


def test_list_runs_is_newest_first_filtered_and_limited(metadata_store: MetadataStore) -> None:
    ids = []
    for i in range(5):
        with start_run(metadata_store, actor="ann", pipeline="sweep", params={"i": i}) as h:
            h.log_metrics({"auc": 0.5 + i / 10, "loss": 1.0 - i / 10})
            h.log_metric("auc", 0.9 + i / 100)  # the latest value of auc is this one
        ids.append(h.id)
    with start_run(metadata_store, actor="ann", pipeline="other"):
        pass
    listed = list_runs(metadata_store, pipeline="sweep")
    assert [r.id for r in listed] == ids[::-1]
    assert listed[0].params == {"i": 4}
    assert listed[0].metrics == {"auc": pytest.approx(0.94), "loss": pytest.approx(0.6)}
    assert [r.id for r in list_runs(metadata_store, pipeline="sweep", limit=2)] == ids[:2:-1][:2]
    assert len(list_runs(metadata_store)) == 6
    assert list_runs(metadata_store, status="running") == []


def test_every_write_is_audited(metadata_store: MetadataStore) -> None:
    with start_run(metadata_store, actor="ann", flush_every=10) as handle:
        for i in range(25):
            handle.log_metric("loss", float(i))
    with metadata_store.read() as conn:
        actions = [
            a
            for (a,) in conn.execute(
                sa.select(schema.audit_event.c.action).order_by(schema.audit_event.c.seq)
            )
        ]
        assert verify_chain(conn).ok
    # One event per batch, not per value.
    assert actions == ["run.started"] + ["run.metrics_logged"] * 3 + ["run.finished"]


def test_metrics_of_an_unknown_run(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="no run 'nope'"):
        get_metrics(metadata_store, "nope")


def test_an_existing_0001_store_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0001")
    with engine.begin() as conn:
        assert not sa.inspect(conn).has_table("metric")
        conn.execute(
            sa.text(
                "INSERT INTO model (name, description, created_by, created_at) "
                "VALUES ('churn', '', 'ann', '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'old.db'}")
    with store.read() as conn:
        assert sa.inspect(conn).has_table("metric")
        assert conn.execute(sa.select(schema.model.c.name)).scalars().all() == ["churn"]
    with start_run(store, actor="ann") as handle:
        handle.log_metric("loss", 0.25)
    assert get_metrics(store, handle.id) == {"loss": [(0, 0.25)]}
    store.close()
