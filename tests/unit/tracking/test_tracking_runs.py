"""Runs: their start and end, listings, metrics read back, which store, the audit trail."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from conveyor.core.errors import ConfigError, NotFoundError, UsageError, ValidationError
from conveyor.core.ids import new_id
from conveyor.store.metadata import MetadataStore, schema
from conveyor.tracking import RunRecord, get_metrics, list_runs, start_run

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.tracking.conftest import Rows


def test_a_started_run_is_running_with_its_params(
    metadata_store: MetadataStore, rows: Rows
) -> None:
    run = start_run(
        metadata_store, pipeline="churn", step="train", params={"lr": 0.1, "layers": [3, 2]}
    )
    row = rows.run(run.id)
    assert (row["status"], row["pipeline"], row["step"]) == ("running", "churn", "train")
    assert row["params"] == {"lr": 0.1, "layers": [3, 2]}
    assert (row["pipeline_run_id"], row["cache_hit"], row["ended_at"]) == (run.id, False, None)
    assert (run.status, repr(run)) == ("running", f"<RunHandle {run.id} churn/train running>")
    [(action, target, payload)] = rows.events()
    assert (action, target) == ("run.started", f"run:{run.id}")
    assert payload == {
        "pipeline": "churn",
        "step": "train",
        "params": {"lr": 0.1, "layers": [3, 2]},
    }
    run.end()


def test_a_run_that_ends_well_succeeds(metadata_store: MetadataStore, rows: Rows) -> None:
    with start_run(metadata_store, actor="ann") as run:
        run.log_metric("loss", 0.5)
    row = rows.run(run.id)
    assert (run.status, row["status"], row["error"]) == ("succeeded", "succeeded", None)
    assert row["started_at"] <= row["ended_at"]
    assert row["metrics"] == {"loss": 0.5}


def test_an_exception_in_the_block_fails_the_run_and_goes_on(
    metadata_store: MetadataStore, rows: Rows
) -> None:
    def work() -> None:
        with start_run(metadata_store, actor="ann", flush_interval=None) as run:
            run.log_metric("loss", 0.5)  # still in memory when the block fails
            raise RuntimeError(f"boom in {run.id}")

    with pytest.raises(RuntimeError, match="boom in") as caught:
        work()
    run_id = str(caught.value).removeprefix("boom in ")
    row = rows.run(run_id)
    assert row["status"] == "failed"
    assert row["ended_at"] is not None
    assert "Traceback" in row["error"]
    assert f"RuntimeError: boom in {run_id}" in row["error"]
    assert get_metrics(metadata_store, run_id) == {"loss": [(0, 0.5)]}
    action, _target, payload = rows.events()[-1]
    assert action == "run.finished"
    assert payload == {"status": "failed", "metrics": 1, "error": f"RuntimeError: boom in {run_id}"}


def test_an_interrupt_fails_the_run_too(metadata_store: MetadataStore, rows: Rows) -> None:
    run_ids: list[str] = []
    with pytest.raises(KeyboardInterrupt):  # noqa: PT012 - the block is what is tested
        with start_run(metadata_store, actor="ann") as run:
            run_ids.append(run.id)
            raise KeyboardInterrupt
    assert rows.run(run_ids[0])["status"] == "failed"


def test_a_run_can_be_ended_as_failed_by_hand(metadata_store: MetadataStore, rows: Rows) -> None:
    run = start_run(metadata_store, actor="ann")
    run.end(error="diverged at epoch 3")
    assert (run.status, rows.run(run.id)["error"]) == ("failed", "diverged at epoch 3")
    assert rows.events()[-1][2] == {
        "status": "failed",
        "metrics": 0,
        "error": "diverged at epoch 3",
    }


def test_every_change_is_audited_and_the_chain_holds(
    metadata_store: MetadataStore, rows: Rows
) -> None:
    with start_run(metadata_store, actor="ann", flush_every=10, flush_interval=None) as run:
        for i in range(25):
            run.log_metric("loss", float(i))
    # One event per batch, not one per value.
    assert [a for a, _t, _p in rows.events()] == (
        ["run.started"] + ["run.metrics_logged"] * 3 + ["run.finished"]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pipeline": "no spaces"}, "pipeline name 'no spaces' is not valid"),
        ({"step": ""}, "step name '' is not valid"),
        ({"params": {"path": object()}}, "param 'path' = <object"),
        ({"params": {"lr": float("nan")}}, "param 'lr' = nan"),
        ({"flush_every": 0}, "flush_every must be a positive int"),
        ({"flush_interval": 0}, "flush_interval must be positive"),
        ({"flush_interval": float("inf")}, "flush_interval must be seconds or None"),
    ],
)
def test_bad_arguments_start_nothing(
    metadata_store: MetadataStore, rows: Rows, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        start_run(metadata_store, actor="ann", **kwargs)  # type: ignore[arg-type]
    assert rows.events() == []


# ------------------------------------------------------------------ listing


def _sweep(store: MetadataStore, n: int, pipeline: str = "sweep") -> list[str]:
    ids = []
    for i in range(n):
        with start_run(store, actor="ann", pipeline=pipeline, params={"i": i}) as run:
            run.log_metrics({"auc": 0.5 + i / 100, "loss": 1.0 - i / 100})
        ids.append(run.id)
    return ids


def test_runs_are_listed_newest_first_with_params_and_latest_metrics(
    metadata_store: MetadataStore,
) -> None:
    ids = _sweep(metadata_store, 3)
    with start_run(metadata_store, actor="ann", pipeline="sweep", params={"i": 3}) as run:
        run.log_metric("auc", 0.9, step=5)
        run.log_metric("auc", 0.1, step=2)  # logged last, but an earlier step
        run.log_metric("loss", 0.3, step=1)
        run.log_metric("loss", 0.2, step=1)  # the same step again: the last one counts
    listed = list_runs(metadata_store)
    assert [r.id for r in listed] == [run.id, *ids[::-1]]
    first = listed[0]
    assert first == RunRecord(
        id=run.id,
        pipeline="sweep",
        step="script",
        status="succeeded",
        params={"i": 3},
        metrics={"auc": 0.9, "loss": 0.2},
        started_at=first.started_at,
        ended_at=first.ended_at,
        error=None,
    )
    assert listed[-1].metrics == {"auc": 0.5, "loss": 1.0}
    assert json.loads(json.dumps(first.to_dict()))["metrics"] == {"auc": 0.9, "loss": 0.2}


def test_listing_filters_by_pipeline_and_status_and_stops_at_the_limit(
    metadata_store: MetadataStore,
) -> None:
    sweep = _sweep(metadata_store, 4)
    other = _sweep(metadata_store, 1, pipeline="other")
    running = start_run(metadata_store, actor="ann", pipeline="other")
    assert [r.id for r in list_runs(metadata_store, pipeline="sweep")] == sweep[::-1]
    assert [r.id for r in list_runs(metadata_store, pipeline="sweep", limit=2)] == sweep[:1:-1]
    assert [r.id for r in list_runs(metadata_store, status="running")] == [running.id]
    assert [r.id for r in list_runs(metadata_store, pipeline="other", status="succeeded")] == other
    assert [r.id for r in list_runs(metadata_store, limit=1)] == [running.id]
    assert len(list_runs(metadata_store)) == 6
    assert list_runs(metadata_store, pipeline="nothing") == []
    running.end()


def test_runs_written_without_tracking_are_listed_with_no_metrics(
    metadata_store: MetadataStore,
) -> None:
    # As the pipeline runner writes a step: no `metrics` value.
    run_id = new_id()
    with metadata_store.write("ann") as tx:
        tx.conn.execute(
            sa.insert(schema.run),
            {
                "id": run_id,
                "pipeline_run_id": run_id,
                "pipeline": "churn",
                "step": "train",
                "status": "succeeded",
                "params": {"n": 1},
                "code_digest": "blake3:00",
                "env_digest": "blake3:00",
                "cache_key": "blake3:00",
                "cache_hit": False,
                "started_at": tx.at,
                "ended_at": tx.at,
            },
        )
    [record] = list_runs(metadata_store)
    assert (record.id, record.params, record.metrics) == (run_id, {"n": 1}, {})
    assert get_metrics(metadata_store, run_id) == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "done"}, "unknown run status 'done'"),
        ({"limit": 0}, "limit must be an int from 1"),
        ({"limit": True}, "limit must be an int from 1"),
    ],
)
def test_bad_listing_arguments(
    metadata_store: MetadataStore, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        list_runs(metadata_store, **kwargs)  # type: ignore[arg-type]


def test_the_metrics_of_an_unknown_run(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="there is no run 'nope'"):
        get_metrics(metadata_store, "nope")


# ------------------------------------------------------------------ which store


def test_a_store_url_is_opened_and_closed_by_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    close = MetadataStore.close

    def counting(self: MetadataStore) -> None:
        closed.append(self.url)
        close(self)

    monkeypatch.setattr(MetadataStore, "close", counting)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with start_run(url, actor="ann", params={"lr": 0.1}) as run:
        run.log_metric("loss", 0.5)
        assert closed == []  # the run's store stays open while the run does
    assert closed == [url]
    assert [r.id for r in list_runs(url)] == [run.id]
    assert get_metrics(url, run.id) == {"loss": [(0, 0.5)]}
    assert closed == [url] * 3


def test_no_store_means_the_projects_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conveyor.yaml").write_text("project: churn\nstore: state/meta.db\n")
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")  # found from a subfolder, as `conveyor` finds it
    monkeypatch.delenv("CONVEYOR_STORE", raising=False)
    monkeypatch.setenv("CONVEYOR_USER", "bob")
    with start_run(pipeline="churn") as run:
        run.log_metric("auc", 0.8)
    assert (tmp_path / "state" / "meta.db").is_file()
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'state' / 'meta.db'}")
    try:
        assert [r.id for r in list_runs(store)] == [run.id]
        assert [r.id for r in list_runs()] == [run.id]
        assert get_metrics(None, run.id) == {"auc": [(0, 0.8)]}
        with store.read() as conn:
            actors = set(conn.execute(sa.select(schema.audit_event.c.actor)).scalars())
        assert actors == {"bob"}
    finally:
        store.close()


def test_a_bad_store_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        start_run("not a url", actor="ann")
