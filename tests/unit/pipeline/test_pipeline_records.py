"""What a pipeline run writes: run rows, edges, artifact rows and audit events, in few
transactions; and what a failing step leaves behind."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from conveyor.core.errors import InfrastructureError, StepError, ValidationError
from conveyor.pipeline._provenance import SNAPSHOT_MEDIA_TYPE
from conveyor.pipeline._record import ENVIRONMENT_MEDIA_TYPE
from conveyor.store.metadata import verify_chain
from conveyor.store.metadata.schema import artifact, audit_event, run, run_input, run_output

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.unit.pipeline.conftest import MakeProject, Project

    from conveyor.pipeline import StepEvent
    from conveyor.store.metadata import MetadataStore, Tx


def _rows(store: MetadataStore, table: sa.Table) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(r) for r in conn.execute(sa.select(table)).mappings()]


def _count_writes(store: MetadataStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = store.write

    @contextlib.contextmanager
    def counting(actor: str) -> Iterator[Tx]:
        calls.append(1)
        with original(actor) as tx:
            yield tx

    monkeypatch.setattr(store, "write", counting)
    return calls


def _step_outputs(store: MetadataStore) -> list[dict[str, Any]]:
    """The artifact rows of step outputs: not the code snapshot or environment document."""
    return [
        a
        for a in _rows(store, artifact)
        if a["media_type"] not in (SNAPSHOT_MEDIA_TYPE, ENVIRONMENT_MEDIA_TYPE)
    ]


def test_a_run_records_runs_edges_artifacts_and_audit_events(flow: Project) -> None:
    result = flow.run()
    runs = {r["step"]: r for r in _rows(flow.metadata, run)}
    assert set(runs) == {"raw", "scaled", "total", "label"}
    total = runs["total"]
    assert total["status"] == "succeeded"
    assert total["cache_hit"] is False
    assert total["params"] == {"offset": 0}  # only the params it reads
    assert total["pipeline"] == "flow"
    assert {r["pipeline_run_id"] for r in runs.values()} == {result.pipeline_run_id}
    assert total["cache_key"] == next(s.cache_key for s in result.steps if s.name == "total")
    assert total["ended_at"] >= total["started_at"]

    inputs = _rows(flow.metadata, run_input)
    assert {(i["name"], i["kind"]) for i in inputs if i["run_id"] == total["id"]} == {
        ("scaled", "artifact")
    }
    raw_inputs = [i for i in inputs if i["run_id"] == runs["raw"]["id"]]
    assert [(i["name"], i["kind"]) for i in raw_inputs] == [("data/nums.txt", "file")]
    assert raw_inputs[0]["ref"].startswith("blake3:")

    outputs = {o["run_id"]: o for o in _rows(flow.metadata, run_output)}
    digests = {s.name: s.output_digest for s in result.steps}
    assert outputs[total["id"]]["ref"] == digests["total"]
    assert outputs[total["id"]]["kind"] == "artifact"

    artifacts = {a["digest"]: a for a in _step_outputs(flow.metadata)}
    assert set(artifacts) == set(digests.values())
    assert artifacts[digests["total"]]["media_type"] == "application/json"

    events = _rows(flow.metadata, audit_event)
    assert [e["action"] for e in events] == ["run.step_completed"] * 4
    assert {e["target"] for e in events} == {f"run:{r['id']}" for r in runs.values()}
    with flow.metadata.read() as conn:
        assert verify_chain(conn).ok


def test_a_cached_run_records_cache_hits_with_their_edges(flow: Project) -> None:
    flow.run()
    second = flow.run()
    hits = [r for r in _rows(flow.metadata, run) if r["pipeline_run_id"] == second.pipeline_run_id]
    assert len(hits) == 4
    assert all(r["cache_hit"] and r["status"] == "succeeded" for r in hits)
    outputs = {o["run_id"] for o in _rows(flow.metadata, run_output)}
    assert {r["id"] for r in hits} <= outputs
    assert len(_step_outputs(flow.metadata)) == 4  # nothing stored twice
    assert len(_rows(flow.metadata, artifact)) == 6  # and the code snapshot and environment


def test_a_cached_step_result_names_the_run_that_produced_its_output(flow: Project) -> None:
    first = flow.run()
    second = flow.run()
    assert [s.run_id for s in second.steps] == [s.run_id for s in first.steps]
    hit_ids = {r["id"] for r in _rows(flow.metadata, run) if r["cache_hit"]}
    assert hit_ids.isdisjoint(s.run_id for s in second.steps)


def test_a_no_op_run_is_one_write_transaction(
    flow: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow.run()
    writes = _count_writes(flow.metadata, monkeypatch)
    flow.run()
    assert len(writes) == 1


def test_each_executed_step_is_written_when_it_finishes(
    flow: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _count_writes(flow.metadata, monkeypatch)
    flow.run()
    assert len(writes) == 5  # and the pipeline_run row, at the end


FAILING = {
    "flow/__init__.py": "",
    "flow/pipe.py": """
        from conveyor import Pipeline, step


        @step
        def raw():
            return {"age": 1}


        @step
        def validated(raw):
            if "name" not in raw:
                raise ValueError("column 'name' missing")
            return raw


        @step
        def after(validated):
            return validated


        pipeline = Pipeline([raw, validated, after], name="failing")
    """,
}


def test_a_failing_step_is_recorded_and_raises_step_error(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(FAILING)
    events: list[StepEvent] = []
    with pytest.raises(StepError) as caught:
        project.run(events=events)
    err = caught.value
    assert err.message == "step 'validated' failed: ValueError: column 'name' missing"
    assert err.details["step"] == "validated"
    assert "flow/pipe.py" in err.details["traceback"]
    assert 'raise ValueError("column' in err.details["traceback"]
    # The trace starts in the user's code, not in Conveyor's runner.
    assert "_runner.py" not in err.details["traceback"]
    assert err.hint
    assert [(e.name, e.status) for e in events] == [("raw", "ran"), ("validated", "failed")]

    runs = {r["step"]: r for r in _rows(project.metadata, run)}
    assert set(runs) == {"raw", "validated"}  # `after` never started
    assert runs["validated"]["status"] == "failed"
    assert runs["validated"]["error"].startswith("ValueError: column 'name' missing")
    failed_id = runs["validated"]["id"]
    assert all(o["run_id"] != failed_id for o in _rows(project.metadata, run_output))
    assert len(_step_outputs(project.metadata)) == 1  # raw's output only
    actions = [e["action"] for e in _rows(project.metadata, audit_event)]
    assert actions == ["run.step_completed", "run.step_failed"]

    # After the fix, the step that succeeded stays cached, and a failed run is never a hit.
    project.edit("flow/pipe.py", 'return {"age": 1}', 'return {"age": 1, "name": "x"}')
    assert project.ran(project.run()) == {"raw", "validated", "after"}
    assert project.ran(project.run()) == set()


def test_a_failed_run_is_not_used_as_a_cache_hit(make_project: MakeProject) -> None:
    project = make_project(FAILING)
    for _ in range(2):
        with pytest.raises(StepError):
            project.run()
    statuses = [r["status"] for r in _rows(project.metadata, run) if r["step"] == "validated"]
    assert statuses == ["failed", "failed"]


def test_an_unstorable_output_fails_the_step_with_a_validation_error(
    make_project: MakeProject,
) -> None:
    project = make_project(
        {
            "flow/__init__.py": "",
            "flow/pipe.py": """
                from conveyor import Pipeline, step


                @step
                def pair():
                    return (1, 2)


                pipeline = Pipeline([pair], name="unstorable")
            """,
        }
    )
    with pytest.raises(ValidationError, match=r"step 'pair' returned a tuple"):
        project.run()
    [row] = _rows(project.metadata, run)
    assert row["status"] == "failed"
    assert "tuple" in row["error"]
    assert _step_outputs(project.metadata) == []


def test_a_database_error_during_lookup_is_an_infrastructure_error(flow_sqlite: Project) -> None:
    flow_sqlite.run()
    with flow_sqlite.metadata.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE run_output")
    with pytest.raises(InfrastructureError, match=r"metadata store .* is unavailable"):
        flow_sqlite.run()
