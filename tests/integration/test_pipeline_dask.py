"""Pipeline steps on a real Dask cluster: a ``distributed.LocalCluster`` of three worker
processes, started once for the module and reached through its scheduler's address, as
``conveyor run --executor dask://HOST:PORT`` reaches one.

Independent steps run at the same time; cache keys, outputs, run records, lineage edges and
audit events are those of the in-process executor; a step that raises on a worker is reported
like a local one; an unreachable scheduler fails before anything is recorded.
"""

from __future__ import annotations

import json
import socket
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from tests.e2e._cli import conveyor

from conveyor.core.errors import InfrastructureError, StepError
from conveyor.pipeline import DaskExecutor, InProcessExecutor, load_pipeline, run_pipeline
from conveyor.store.artifacts import LocalArtifactStore
from conveyor.store.metadata import MetadataStore, verify_chain
from conveyor.store.metadata.schema import audit_event, lineage_edge, pipeline_run, run

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.pipeline import Executor, PipelineResult

WORKERS = 3
#: Each slow step sleeps this long: the work itself, which three workers do side by side.

SLOW_FLOW = """
import time

from conveyor import Pipeline, step


@step
def left(delay):
    time.sleep(delay)
    return {"side": "left"}


@step
def middle(delay):
    time.sleep(delay)
    return [1, 2, 3]


@step
def right(delay):
    time.sleep(delay)
    return "right"


@step
def joined(left, middle, right, seed):
    import random

    return {"left": left, "middle": middle, "right": right, "draw": random.random()}


pipeline = Pipeline([left, middle, right, joined], name="slow")
"""

MEETING_FLOW = """
import pathlib
import time

from conveyor import Pipeline, step

BRANCHES = ("left", "middle", "right")


def meet(folder, me):
    # Each branch says it is running, then waits until every branch is: run one after the
    # other, the first would wait for the others for ever (here: until the deadline).
    here = pathlib.Path(folder)
    (here / me).touch()
    deadline = time.monotonic() + 120
    while not all((here / name).exists() for name in BRANCHES):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{me} ran alone: the other branches never ran beside it")
        time.sleep(0.01)
    return me


@step
def left(meeting):
    return meet(meeting, "left")


@step
def middle(meeting):
    return meet(meeting, "middle")


@step
def right(meeting):
    return meet(meeting, "right")


@step
def joined(left, middle, right):
    return [left, middle, right]


pipeline = Pipeline([left, middle, right, joined], name="meeting")
"""

FAILING_FLOW = """
import time

from conveyor import Pipeline, step


@step
def fine(delay):
    time.sleep(delay)
    return {"ok": True}


@step
def broken(delay):
    raise ValueError(f"boom after {delay} s")


@step
def after(fine, broken):
    return [fine, broken]


pipeline = Pipeline([fine, broken, after], name="failing")
"""


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a local cluster's scheduler, with its workers ready."""
    import distributed

    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        client.wait_for_workers(WORKERS)
        # Each worker imports Conveyor before the timed runs, as a long-lived cluster has.
        client.run(__import__, "conveyor.pipeline._executor")
        yield str(cluster.scheduler_address)


@pytest.fixture
def executor(scheduler: str) -> Iterator[DaskExecutor]:
    dask = DaskExecutor(scheduler.replace("tcp://", "dask://"))
    yield dask
    dask.close()


def _project(root: Path, flow: str, params: dict[str, Any]) -> Path:
    (root / "flow").mkdir(parents=True)
    (root / "flow" / "__init__.py").write_text("")
    (root / "flow" / "pipe.py").write_text(textwrap.dedent(flow).lstrip())
    lines = [f"  {k}: {v}" for k, v in params.items()]
    (root / "conveyor.yaml").write_text(
        "project: dasktest\npipeline: flow.pipe:pipeline\nparams:\n" + "\n".join(lines) + "\n"
    )
    return root


def _run(
    root: Path,
    params: dict[str, Any],
    metadata: MetadataStore,
    artifacts: LocalArtifactStore,
    executor: Executor,
    *,
    force: bool = False,
) -> PipelineResult:
    return run_pipeline(
        load_pipeline("flow.pipe:pipeline", root),
        params=params,
        metadata=metadata,
        artifacts=artifacts,
        actor="tester",
        root=root,
        force=force,
        executor=executor,
    )


def _rows(store: MetadataStore, query: sa.Select[Any]) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def _steps(store: MetadataStore, pipeline_run_id: str) -> dict[str, dict[str, Any]]:
    rows = _rows(store, sa.select(run).where(run.c.pipeline_run_id == pipeline_run_id))
    return {r["step"]: r for r in rows}


def test_independent_steps_run_side_by_side_on_the_workers(
    tmp_path: Path, sqlite_store: MetadataStore, executor: DaskExecutor
) -> None:
    """The three branches meet while running: possible only if they run at the same time, on
    three workers. (How much time that saves is measured, not asserted.)"""
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    params = {"meeting": str(meeting)}
    root = _project(tmp_path / "proj", MEETING_FLOW, params)
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    result = _run(root, params, sqlite_store, artifacts, executor)
    assert {s.name: s.status for s in result.steps} == dict.fromkeys(
        ["left", "middle", "right", "joined"], "ran"
    )
    assert result.load("joined") == ["left", "middle", "right"]
    assert sorted(p.name for p in meeting.iterdir()) == ["left", "middle", "right"]


def test_records_match_the_in_process_run_and_a_second_run_is_all_cache_hits(
    tmp_path: Path, sqlite_store: MetadataStore, executor: DaskExecutor
) -> None:
    params = {"delay": 0, "seed": 11}
    root = _project(tmp_path / "proj", SLOW_FLOW, params)
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    local = _run(root, params, sqlite_store, artifacts, InProcessExecutor())
    remote = _run(root, params, sqlite_store, artifacts, executor, force=True)

    def key(r: PipelineResult) -> list[tuple[Any, ...]]:
        return [(s.name, s.status, s.cache_key, s.output_digest, s.media_type) for s in r.steps]

    assert key(remote) == key(local)
    # The seeded draw in `joined` too: the worker was seeded as this process is.
    assert remote.load("joined") == local.load("joined")
    fields = ("status", "cache_key", "code_digest", "env_digest", "params", "seed", "cache_hit")
    local_rows = _steps(sqlite_store, local.pipeline_run_id)
    remote_rows = _steps(sqlite_store, remote.pipeline_run_id)
    assert {s: [r[f] for f in fields] for s, r in remote_rows.items()} == {
        s: [r[f] for f in fields] for s, r in local_rows.items()
    }
    # Lineage: each executed run read and produced the same nodes.
    edges = _rows(sqlite_store, sa.select(lineage_edge))

    def lineage(rows: dict[str, dict[str, Any]]) -> dict[str, set[tuple[str, str]]]:
        out: dict[str, set[tuple[str, str]]] = {}
        for step_name, row in rows.items():
            node = f"run:{row['id']}"
            out[step_name] = {(e["src"], e["relation"]) for e in edges if e["dst"] == node} | {
                (e["dst"], e["relation"]) for e in edges if e["src"] == node
            }
        return out

    assert lineage(remote_rows) == lineage(local_rows)
    assert all(lineage(remote_rows).values())
    # The audit trail: one event per step, the same actions and payload keys.
    events = _rows(sqlite_store, sa.select(audit_event).order_by(audit_event.c.seq))
    per_run: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        payload = json.loads(e["payload"])
        if "pipeline_run_id" in payload:
            run_id = payload.pop("pipeline_run_id")
            per_run.setdefault(run_id, []).append((e["action"], json.dumps(payload)))
    assert sorted(per_run[remote.pipeline_run_id]) == sorted(per_run[local.pipeline_run_id])
    assert len(per_run[remote.pipeline_run_id]) == 4
    with sqlite_store.read() as conn:
        assert verify_chain(conn).ok
    runs = _rows(sqlite_store, sa.select(pipeline_run.c.id, pipeline_run.c.status))
    assert {r["id"]: r["status"] for r in runs} == {
        local.pipeline_run_id: "succeeded",
        remote.pipeline_run_id: "succeeded",
    }

    again = _run(root, params, sqlite_store, artifacts, executor)
    assert {s.status for s in again.steps} == {"cached"}
    assert [s.cache_key for s in again.steps] == [s.cache_key for s in local.steps]
    assert again.load("joined") == local.load("joined")


def test_workers_run_the_code_now_on_disk_after_an_edit(
    tmp_path: Path, sqlite_store: MetadataStore, executor: DaskExecutor
) -> None:
    params = {"delay": 0, "seed": 5}
    root = _project(tmp_path / "proj", SLOW_FLOW, params)
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    first = _run(root, params, sqlite_store, artifacts, executor)
    assert first.load("right") == "right"
    pipe = root / "flow" / "pipe.py"
    pipe.write_text(pipe.read_text().replace('return "right"', 'return "right, edited"'))
    second = _run(root, params, sqlite_store, artifacts, executor)
    assert {s.name: s.status for s in second.steps} == {
        "left": "cached",
        "middle": "cached",
        "right": "ran",
        "joined": "ran",
    }
    assert second.load("joined")["right"] == "right, edited"


def test_a_local_cluster_started_for_the_run_records_what_an_in_process_run_does(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path / "proj", SLOW_FLOW, {"delay": 0, "seed": 2})
    on_dask = conveyor("run", "--json", "--executor", "dask", "--jobs", "2", cwd=root)
    assert on_dask.code == 0, on_dask.err
    in_process = conveyor("run", "--json", "--force", cwd=root)
    assert in_process.code == 0, in_process.err

    def steps(out: str) -> list[tuple[str, str, str]]:
        body = json.loads(out)
        return [(s["name"], s["cache_key"], s["output_digest"]) for s in body["steps"]]

    assert steps(on_dask.out) == steps(in_process.out)
    assert {s["status"] for s in json.loads(on_dask.out)["steps"]} == {"ran"}


def test_a_step_failing_on_a_worker_is_reported_and_recorded_like_a_local_one(
    tmp_path: Path, sqlite_store: MetadataStore, executor: DaskExecutor
) -> None:
    params = {"delay": 0.2}
    root = _project(tmp_path / "proj", FAILING_FLOW, params)
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    with pytest.raises(StepError) as caught:
        _run(root, params, sqlite_store, artifacts, executor)
    error = caught.value
    assert error.message == "step 'broken' failed: ValueError: boom after 0.2 s"
    assert "raise ValueError" in error.details["traceback"]
    assert "Traceback" not in str(error)
    rows = _steps(sqlite_store, error.details["pipeline_run_id"])
    # The step running beside it was waited for and stays cached; `after` never started.
    assert {s: r["status"] for s, r in rows.items()} == {"fine": "succeeded", "broken": "failed"}
    assert rows["broken"]["error"].startswith("ValueError: boom after 0.2 s\n")
    status = _rows(sqlite_store, sa.select(pipeline_run.c.status))
    assert status == [{"status": "failed"}]


def test_the_cli_runs_on_the_scheduler_and_reports_a_failure_in_one_line(
    tmp_path: Path, scheduler: str
) -> None:
    address = scheduler.replace("tcp://", "dask://")
    root = _project(tmp_path / "proj", FAILING_FLOW, {"delay": 0})
    failed = conveyor("run", "--executor", address, cwd=root)
    assert failed.code == 1, failed.err
    assert failed.err.strip().splitlines() == [
        "error: step 'broken' failed: ValueError: boom after 0 s; "
        "fix the step and run again; the steps that finished stay cached"
    ]
    ok_root = _project(tmp_path / "ok", SLOW_FLOW, {"delay": 0, "seed": 1})
    ok = conveyor("run", "--executor", address, cwd=ok_root)
    assert ok.code == 0, ok.err
    assert "4 steps: 4 ran, 0 cached" in ok.out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_scheduler_fails_in_one_line_and_records_nothing(tmp_path: Path) -> None:
    address = f"dask://127.0.0.1:{_closed_port()}"
    with pytest.raises(InfrastructureError, match=r"cannot reach the Dask scheduler at dask://"):
        DaskExecutor(address, connect_timeout=1)

    root = _project(tmp_path / "proj", SLOW_FLOW, {"delay": 0, "seed": 1})
    result = conveyor(
        "run",
        "--executor",
        address,
        cwd=root,
        env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"},
    )
    assert result.code == 3, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"error: cannot reach the Dask scheduler at {address}: ")
    assert lines[0].endswith("start it (`dask scheduler`) or fix the address given to --executor")
    state = root / ".conveyor" / "metadata.db"
    if state.exists():
        store = MetadataStore.open(f"sqlite:///{state}")
        try:
            assert _rows(store, sa.select(run)) == []
            assert _rows(store, sa.select(pipeline_run)) == []
        finally:
            store.close()
