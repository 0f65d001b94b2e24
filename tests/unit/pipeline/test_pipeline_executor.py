"""Executors: the coordinator hands steps over as they become ready, several at once when the
executor runs several; what is recorded does not depend on where the steps ran.

That independent steps are handed over together is shown with a barrier their tasks wait on
(one alone would time out), and ordering with futures the test executor completes in the
order it chooses; never with sleeps.
"""

from __future__ import annotations

import concurrent.futures as cf
import pickle
import threading
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from conveyor.core.errors import InfrastructureError, StepError, UsageError
from conveyor.pipeline import (
    InProcessExecutor,
    ProcessExecutor,
    StepOutcome,
    StepTask,
    _env,
    execute,
    executor_for,
    run_pipeline,
    using_executor,
)
from conveyor.store.artifacts import MemoryArtifactStore
from conveyor.store.metadata.schema import pipeline_run, run, run_output

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.unit.pipeline.conftest import MakeProject, Project

    from conveyor.pipeline import PipelineResult, StepEvent
    from conveyor.store.metadata import MetadataStore

PARALLEL_FILES = {
    "flow/__init__.py": "",
    "flow/pipe.py": """
        from conveyor import Pipeline, step


        @step
        def left(width):
            return list(range(width))


        @step
        def right(width):
            return {"width": width}


        @step
        def both(left, right):
            return {"n": len(left), "width": right["width"]}


        pipeline = Pipeline([left, right, both], name="parallel")
    """,
}

FAILING_FILES = {
    "flow/__init__.py": "",
    "flow/pipe.py": """
        from conveyor import Pipeline, step


        @step
        def fine(width):
            return [width]


        @step
        def broken(width):
            raise KeyError(f"column {width} is missing")


        @step
        def after_fine(fine):
            return fine + fine


        pipeline = Pipeline([fine, broken, after_fine], name="failing")
    """,
}


class ThreadExecutor:
    """Each task on a thread of this process; ``remote`` pickles the task first, as a worker
    receives it (no live step, no live values: the step is imported, inputs are read)."""

    def __init__(self, *, remote: bool = False, env: str | None = None) -> None:
        self.pool = cf.ThreadPoolExecutor(4)
        self.remote = remote
        self.env = env or _env.env_digest()
        self.submitted: list[str] = []

    def env_digest(self) -> str:
        return self.env

    def environment_document(self) -> dict[str, Any]:
        return _env.environment_document()

    def submit(self, task: StepTask) -> cf.Future[StepOutcome]:
        self.submitted.append(task.name)
        if self.remote:
            task = pickle.loads(pickle.dumps(task))
            assert task.step is None
            assert task.values == {}
        return self.pool.submit(self._execute, task)

    def _execute(self, task: StepTask) -> StepOutcome:
        outcome = execute(task)
        return pickle.loads(pickle.dumps(outcome)) if self.remote else outcome


@pytest.fixture
def threads() -> Iterator[ThreadExecutor]:
    executor = ThreadExecutor()
    yield executor
    executor.pool.shutdown(wait=True)


def _run(
    project: Project,
    executor: Any,
    *,
    force: bool = False,
    on_event: Callable[[StepEvent], None] | None = None,
) -> PipelineResult:
    return run_pipeline(
        project.load(),
        params=project.params,
        metadata=project.metadata,
        artifacts=project.artifacts,
        actor="tester",
        root=project.root,
        force=force,
        on_event=on_event,
        executor=executor,
    )


def _rows(store: MetadataStore, query: sa.Select[Any]) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def _keys(result: PipelineResult) -> list[tuple[Any, ...]]:
    return [(s.name, s.cache_key, s.output_digest, s.media_type) for s in result.steps]


def test_independent_steps_are_handed_over_together(make_project: MakeProject) -> None:
    project = make_project(PARALLEL_FILES, {"width": 3})
    rendezvous = threading.Barrier(2)

    class Meeting(ThreadExecutor):
        def _execute(self, task: StepTask) -> StepOutcome:
            if task.name in ("left", "right"):
                rendezvous.wait(timeout=10)  # both handed over before either finished
            return execute(task)

    executor = Meeting()
    events: list[StepEvent] = []
    try:
        result = _run(project, executor, on_event=events.append)
    finally:
        executor.pool.shutdown(wait=True)
    assert executor.submitted == ["left", "right", "both"]
    assert [s.name for s in result.steps] == ["left", "right", "both"]
    assert {s.status for s in result.steps} == {"ran"}
    assert events[-1].name == "both"
    assert result.load("both") == {"n": 3, "width": 3}
    assert not rendezvous.broken


def test_a_worker_gets_names_and_digests_and_records_match_the_in_process_run(
    flow_sqlite: Project,
) -> None:
    local = _run(flow_sqlite, InProcessExecutor())
    remote_executor = ThreadExecutor(remote=True)
    try:
        remote = _run(flow_sqlite, remote_executor, force=True)
    finally:
        remote_executor.pool.shutdown(wait=True)
    assert _keys(remote) == _keys(local)
    assert {s.status for s in remote.steps} == {"ran"}
    assert remote.load("total") == local.load("total")
    rows = _rows(flow_sqlite.metadata, sa.select(run))
    fields = ("step", "status", "cache_key", "code_digest", "env_digest", "params", "seed")

    def of(run_id: str) -> list[tuple[Any, ...]]:
        picked = [r for r in rows if r["pipeline_run_id"] == run_id]
        return sorted(tuple(r[f] for f in fields) for r in picked)

    assert of(remote.pipeline_run_id) == of(local.pipeline_run_id)
    again = _run(flow_sqlite, InProcessExecutor())
    assert {s.status for s in again.steps} == {"cached"}


def test_a_failure_waits_for_running_steps_and_starts_no_new_one(
    make_project: MakeProject,
) -> None:
    project = make_project(FAILING_FILES, {"width": 2})
    broken_done = threading.Event()

    class Ordered(ThreadExecutor):
        """`fine` completes only after `broken` has: its downstream must then not start."""

        def _execute(self, task: StepTask) -> StepOutcome:
            if task.name == "fine":
                assert broken_done.wait(timeout=10)
                return execute(task)
            try:
                return execute(task)
            finally:
                broken_done.set()

    executor = Ordered()
    try:
        with pytest.raises(StepError) as caught:
            _run(project, executor)
    finally:
        executor.pool.shutdown(wait=True)
    assert caught.value.message == "step 'broken' failed: KeyError: 'column 2 is missing'"
    assert executor.submitted == ["fine", "broken"]
    rows = {r["step"]: r for r in _rows(project.metadata, sa.select(run))}
    assert {s: r["status"] for s, r in rows.items()} == {"fine": "succeeded", "broken": "failed"}
    assert _rows(project.metadata, sa.select(pipeline_run.c.status)) == [{"status": "failed"}]
    # What finished beside the failure stays cached.
    project.edit("flow/pipe.py", "raise KeyError", "return width  # KeyError")
    fixed = _run(project, InProcessExecutor())
    assert {s.name: s.status for s in fixed.steps} == {
        "fine": "cached",
        "broken": "ran",
        "after_fine": "ran",
    }


def test_a_lost_step_is_an_infrastructure_error_and_recorded_failed(
    make_project: MakeProject,
) -> None:
    project = make_project(FAILING_FILES, {"width": 2})

    class Losing(ThreadExecutor):
        def _execute(self, task: StepTask) -> StepOutcome:
            raise RuntimeError("worker tcp://10.0.0.7:4001 died")

    executor = Losing()
    try:
        with pytest.raises(InfrastructureError) as caught:
            _run(project, executor)
    finally:
        executor.pool.shutdown(wait=True)
    assert caught.value.message == (
        "step 'fine' did not finish: the executor lost it "
        "(RuntimeError: worker tcp://10.0.0.7:4001 died)"
    )
    rows = _rows(project.metadata, sa.select(run.c.step, run.c.status, run.c.error))
    # `broken` may have been handed over before `fine` came back lost, or not: the first loss
    # is the one reported, and whatever was handed over is recorded failed.
    assert "fine" in {r["step"] for r in rows}
    assert {r["status"] for r in rows} == {"failed"}
    assert all(r["error"].startswith("the executor lost the step: RuntimeError") for r in rows)


def test_a_worker_in_another_environment_refuses_the_step(flow_sqlite: Project) -> None:
    executor = ThreadExecutor(remote=True, env="sha256:" + "0" * 64)
    try:
        with pytest.raises(InfrastructureError) as caught:
            _run(flow_sqlite, executor)
    finally:
        executor.pool.shutdown(wait=True)
    assert caught.value.message.startswith("step 'raw' could not run on a worker: ")
    assert f"({_env.env_digest()}) is not the one of the run (sha256:000" in caught.value.message
    # The key names the environment that computes the output: nothing stored under it.
    rows = _rows(flow_sqlite.metadata, sa.select(run.c.step, run.c.status))
    assert "raw" in {r["step"] for r in rows}
    assert {r["status"] for r in rows} == {"failed"}
    assert _rows(flow_sqlite.metadata, sa.select(run_output)) == []


def test_a_process_pool_records_what_the_in_process_run_records(flow_sqlite: Project) -> None:
    local = _run(flow_sqlite, InProcessExecutor())
    with executor_for(None, jobs=2) as pool:
        assert isinstance(pool, ProcessExecutor)
        remote = _run(flow_sqlite, pool, force=True)
    assert _keys(remote) == _keys(local)
    assert {s.status for s in remote.steps} == {"ran"}
    assert remote.load("scaled") == [3, 6, 9]


def test_the_executor_in_effect_is_used_when_none_is_given(
    flow_sqlite: Project, threads: ThreadExecutor
) -> None:
    with using_executor(threads):
        flow_sqlite.run()
    assert sorted(threads.submitted) == ["label", "raw", "scaled", "total"]
    threads.submitted.clear()
    flow_sqlite.run(force=True)
    assert threads.submitted == []


def test_workers_cannot_reach_an_artifact_store_in_memory(flow_sqlite: Project) -> None:
    flow_sqlite.artifacts = MemoryArtifactStore()
    pool = ProcessExecutor(2)
    try:
        with pytest.raises(UsageError, match="memory:// lives in this process"):
            _run(flow_sqlite, pool)
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("spec", "jobs", "kind"),
    [
        (None, None, InProcessExecutor),
        ("local", 1, InProcessExecutor),
        ("local", 3, ProcessExecutor),
        ("processes", 2, ProcessExecutor),
    ],
)
def test_executor_specs(spec: str | None, jobs: int | None, kind: type) -> None:
    with executor_for(spec, jobs=jobs) as executor:
        assert type(executor) is kind
        if isinstance(executor, ProcessExecutor):
            assert executor.jobs == jobs


@pytest.mark.parametrize(
    ("spec", "jobs", "message"),
    [
        ("spark", None, "--executor 'spark' is not an executor"),
        ("dask://127.0.0.1:8786", 4, "--jobs applies to a local cluster"),
        ("processes", 0, "--jobs 0: the number of processes must be at least 1"),
    ],
)
def test_bad_executor_specs_are_usage_errors(spec: str, jobs: int | None, message: str) -> None:
    with pytest.raises(UsageError, match=message), executor_for(spec, jobs=jobs):
        pass
