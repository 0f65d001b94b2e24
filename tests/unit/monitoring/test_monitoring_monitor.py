"""The monitor: the training reference from lineage, and `conveyor monitor run --once`."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from tests.unit.monitoring._monitoring_support import register_bundle

from conveyor.cli._main import cli
from conveyor.core.digest import digest_bytes
from conveyor.monitoring import InferenceLogger, training_reference
from conveyor.monitoring._log import DEFAULT_LOG_DIR
from conveyor.registry import parse_policy, promote, register_version
from conveyor.store.metadata.lineage import add_edges
from conveyor.store.metadata.schema import dataset_version

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.store.metadata import MetadataStore


def _register(store: MetadataStore, *, production: bool = False) -> int:
    version, _ = register_version(
        store,
        model="churn",
        artifact_digest=digest_bytes(b"v1"),
        metrics={"accuracy": 0.9},
        run_id=None,
        actor="scientist",
    )
    if production:
        policy = parse_policy("stages: {}\n")
        for stage in ("candidate", "production"):
            promote(
                store, model="churn", version=version.version, to=stage, policy=policy, actor="l"
            )
    return version.version


def _dataset(store: MetadataStore, digest: str, uri: str) -> None:
    with store.write("t") as tx:
        tx.conn.execute(
            sa.insert(dataset_version).values(id=digest, name="d", source_uri=uri, created_at=tx.at)
        )


def test_training_reference_is_the_nearest_dataset_upstream(sqlite_store: MetadataStore) -> None:
    version = _register(sqlite_store)
    assert training_reference(sqlite_store, "churn", version) is None
    _dataset(sqlite_store, "blake3:raw", "/data/raw.csv")
    _dataset(sqlite_store, "blake3:train", "/data/train.parquet")
    with sqlite_store.write("t") as tx:
        add_edges(
            tx.conn,
            [
                ("run:train", f"model:churn/{version}", "trained"),
                ("artifact:features", "run:train", "input"),
                ("dataset:blake3:train", "run:train", "input"),
                ("run:prep", "artifact:features", "output"),
                ("dataset:blake3:raw", "run:prep", "input"),
            ],
            tx.at,
        )
    found = training_reference(sqlite_store, "churn", version)
    assert found is not None
    assert found.as_posix() == "/data/train.parquet"


def test_monitor_run_once_stores_a_window_and_evaluates_rules(tmp_path: Path) -> None:
    from conveyor.project import open_project

    (tmp_path / "conveyor.yaml").write_text("project: demo\n")
    (tmp_path / "monitoring.yaml").write_text(
        "alerts:\n  - {name: nulls, metric: quality.null_share, op: '>', threshold: 0.1}\n"
    )
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 500), "c": rng.choice(["a", "b"], 500)})
    reference.to_csv(tmp_path / "reference.csv", index=False)
    with open_project(tmp_path) as project:
        register_bundle(project.metadata, project.artifacts)
        log_root = project.config.state_dir / DEFAULT_LOG_DIR
    from conveyor.monitoring._log import window_start

    # In the middle of the last complete hour, which `--window 3600` reads.
    start = window_start(dt.datetime.now(dt.UTC), dt.timedelta(hours=1)) - dt.timedelta(minutes=30)
    log = InferenceLogger(log_root, clock=lambda: start, window=dt.timedelta(minutes=1))
    for i in range(50):
        log.log("churn", 1, f"r{i}", {"x": None if i < 20 else 0.1 * i, "c": "a"}, 1, 0.01)
    log.close()

    args = ["-C", str(tmp_path), "monitor", "run", "--once", "--window", "3600"]
    args += ["--reference", str(tmp_path / "reference.csv")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 window(s) stored, 1 alert transition(s)" in result.output
    assert "churn nulls: inactive -> firing (0.4)" in result.output
    assert "[FIRING] nulls on model 'churn'" in result.output


def test_run_once_over_a_span_stores_that_window_once(
    sqlite_store: MetadataStore, tmp_path: Path
) -> None:
    from conveyor.core.errors import UsageError
    from conveyor.monitoring import Monitor, WindowSpec, parse_rules

    t0 = dt.datetime(2026, 3, 2, 10, 0, 7, tzinfo=dt.UTC)
    clock = {"now": t0}
    log = InferenceLogger(tmp_path, clock=lambda: clock["now"], window=dt.timedelta(minutes=1))
    for i in range(30):  # one request every 10 s from t0
        clock["now"] = t0 + dt.timedelta(seconds=10 * i)
        log.log("churn", 1, f"r{i}", {"x": float(i)}, 1, 0.01)
    log.close()
    rules = parse_rules("alerts:\n  - {name: rows, metric: rows, op: '>', threshold: 5}\n")
    reference = pd.DataFrame({"x": np.arange(30, dtype=float)})
    now = t0 + dt.timedelta(seconds=100)  # a window is fresh for the rules for its own length
    mon = Monitor(
        sqlite_store,
        rules,
        log_root=tmp_path,
        specs={"churn": WindowSpec(reference=reference)},
        clock=lambda: now,
    )
    span = (t0 + dt.timedelta(seconds=25), t0 + dt.timedelta(seconds=95))  # requests 3..9
    first = mon.run_once(span=span)
    again = mon.run_once(span=span)
    (window,) = first.windows
    assert (window.start, window.end, window.metrics["rows"]) == (*span, 7)
    assert [(t.before, t.after) for t in first.transitions] == [("inactive", "firing")]
    assert again.windows == []
    assert again.transitions == []
    with pytest.raises(UsageError, match="has not ended yet"):
        mon.run_once(span=(t0, now + dt.timedelta(seconds=1)))


def test_a_round_the_store_cannot_serve_is_tried_again(
    sqlite_store: MetadataStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from conveyor.core.errors import InfrastructureError
    from conveyor.monitoring import Monitor

    stop = threading.Event()
    rounds: list[int] = []

    def specs() -> dict[str, object]:  # called at the start of every round
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise InfrastructureError("the metadata store is unreachable", hint="start it")
        if len(rounds) == 3:
            stop.set()
        if len(rounds) == 4:
            raise ValueError("a bug is not an outage")
        return {}

    mon = Monitor(sqlite_store, [], log_root=tmp_path, specs=specs)  # type: ignore[arg-type]
    assert mon.run(stop, interval_s=0.001) == 1
    assert rounds == [0, 1, 2]
    assert "round failed, trying again in 0.001 s: the metadata store is unreachable" in caplog.text
    with pytest.raises(ValueError, match="a bug"):
        mon.run(threading.Event(), interval_s=0.001)
