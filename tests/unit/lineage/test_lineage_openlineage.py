"""OpenLineage events of real pipeline runs, validated against the official JSON schemas.

The schemas are vendored in tests/data/openlineage (see its README); facet ``$ref``s resolve
there, never over the network.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from conveyor.core.errors import StepError
from conveyor.core.ids import new_id
from conveyor.lineage.openlineage import (
    CONVEYOR_RUN_FACET_SCHEMA,
    DEFAULT_EVENTS_FILE,
    run_uuid,
    step_run_uuid,
)
from conveyor.project import open_project, run

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conveyor.project import RunReport

SPEC = Path(__file__).parents[2] / "data" / "openlineage"

FILES = {
    "conveyor.yaml": """
        project: churn
        pipeline: flow.pipe:pipeline
        params:
          data_path: data/train.csv
          fail: false
    """,
    "flow/__init__.py": "",
    "flow/pipe.py": """
        import pandas as pd

        from conveyor import Pipeline, step


        @step(files=("data_path",))
        def raw(data_path):
            return pd.read_csv(data_path)


        @step
        def features(raw, fail):
            if fail:
                raise ValueError("income has negative values")
            return pd.DataFrame(
                {"id": raw["id"], "age": raw["age"], "income_k": raw["income"] / 1000.0}
            )


        @step
        def summary(features):
            return {"rows": len(features)}


        pipeline = Pipeline([raw, features, summary], name="flow")
    """,
    "data/train.csv": "id,age,income\n1,34,52000\n2,51,61000\n3,29,38000\n",
}


def _registry() -> Registry[Any]:
    resources = []
    for path in sorted(SPEC.glob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    conveyor = Resource.from_contents(CONVEYOR_RUN_FACET_SCHEMA)
    resources.append((CONVEYOR_RUN_FACET_SCHEMA["$id"], conveyor))
    return Registry().with_resources(resources)


REGISTRY = _registry()
EVENT_SCHEMA = json.loads((SPEC / "OpenLineage.json").read_text())


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from event["run"].get("facets", {}).items()
    for ds in event.get("inputs", []) + event.get("outputs", []):
        yield from ds.get("facets", {}).items()


def validate(event: dict[str, Any]) -> None:
    """The event against OpenLineage.json, and each facet against the schema its
    ``_schemaURL`` names (which must be vendored: no facet goes unchecked)."""
    Draft202012Validator(
        EVENT_SCHEMA, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    ).validate(event)
    for _, facet in _facets(event):
        Draft202012Validator(
            {"$ref": facet["_schemaURL"]},
            registry=REGISTRY,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        ).validate(facet)


def events_of(root: Path) -> list[dict[str, Any]]:
    lines = (root / DEFAULT_EVENTS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)
    project_root = (tmp_path / "proj").resolve()
    for rel, text in FILES.items():
        path = project_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    yield project_root
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


def run_project(root: Path, settings: dict[str, Any] | None = None, **flags: Any) -> RunReport:
    with open_project(root, flags or None) as project:
        return run(project, actor="tester", openlineage=settings)


def test_a_run_emits_start_and_complete_events_that_match_the_schema(root: Path) -> None:
    report = run_project(root)
    events = events_of(root)
    for event in events:
        validate(event)
    pipeline_run = run_uuid(report.pipeline.pipeline_run_id)
    jobs = [(e["job"]["name"], e["eventType"]) for e in events]
    assert jobs == [
        ("flow", "START"),
        ("flow.raw", "START"),
        ("flow.raw", "COMPLETE"),
        ("flow.features", "START"),
        ("flow.features", "COMPLETE"),
        ("flow.summary", "START"),
        ("flow.summary", "COMPLETE"),
        ("flow", "COMPLETE"),
    ]
    assert {e["job"]["namespace"] for e in events} == {"conveyor://churn"}
    assert events[0]["run"]["runId"] == events[-1]["run"]["runId"] == pipeline_run
    for e in events[1:-1]:
        step = e["job"]["name"].removeprefix("flow.")
        assert e["run"]["runId"] == step_run_uuid(report.pipeline.pipeline_run_id, step)
        assert e["run"]["facets"]["parent"]["run"]["runId"] == pipeline_run
        parent_job = e["run"]["facets"]["parent"]["job"]
        assert (parent_job["namespace"], parent_job["name"]) == ("conveyor://churn", "flow")

    # The data file: relative to the project, CSV header only (no types), its digest as version.
    complete = events[-1]
    (data,) = complete["inputs"]
    assert data["name"] == "data/train.csv"
    assert data["namespace"] == f"file://{socket.gethostname()}{root.as_posix()}"
    assert data["facets"]["dataSource"]["uri"] == data["namespace"]
    assert [f["name"] for f in data["facets"]["schema"]["fields"]] == ["id", "age", "income"]
    assert "type" not in data["facets"]["schema"]["fields"][0]
    digests = {s.name: s.output_digest for s in report.pipeline.steps}
    assert [(o["name"], o["facets"]["version"]["datasetVersion"]) for o in complete["outputs"]] == [
        (f"flow.{name}", digests[name]) for name in ("raw", "features", "summary")
    ]


def test_the_schema_facet_lists_the_real_columns_and_types_of_a_parquet_output(
    root: Path,
) -> None:
    run_project(root)
    features = next(
        e
        for e in events_of(root)
        if e["job"]["name"] == "flow.features" and e["eventType"] == "COMPLETE"
    )
    (output,) = features["outputs"]
    fields = output["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"], f["ordinal_position"]) for f in fields] == [
        ("id", "int64", 1),
        ("age", "int64", 2),
        ("income_k", "double", 3),
    ]
    # Same-named columns link to the upstream output; income_k has no same-named input.
    lineage = output["facets"]["columnLineage"]["fields"]
    assert sorted(lineage) == ["age", "id"]
    (source,) = lineage["age"]["inputFields"]
    assert (source["name"], source["field"]) == ("flow.raw", "age")
    assert source["transformations"] == [
        {
            "type": "DIRECT",
            "subtype": "UNKNOWN",
            "description": "same column name; how the value was derived is not known",
        }
    ]


def test_a_cached_run_emits_again_and_marks_the_cache_hits(root: Path) -> None:
    run_project(root)
    second = run_project(root)
    assert {s.status for s in second.pipeline.steps} == {"cached"}
    events = events_of(root)
    assert len(events) == 16
    for event in events[8:]:
        validate(event)
    hits = [e["run"]["facets"]["conveyor"]["cacheHit"] for e in events[9:-1]]
    assert hits == [True] * 6


def test_a_failing_step_emits_fail_with_the_error_message(root: Path) -> None:
    (root / "conveyor.yaml").write_text(
        (root / "conveyor.yaml").read_text().replace("fail: false", "fail: true")
    )
    with pytest.raises(StepError, match="income has negative values"):
        run_project(root)
    events = events_of(root)
    for event in events:
        validate(event)
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("flow", "START"),
        ("flow.raw", "START"),
        ("flow.raw", "COMPLETE"),
        ("flow.features", "START"),
        ("flow.features", "FAIL"),
        ("flow", "FAIL"),
    ]
    error = events[-1]["run"]["facets"]["errorMessage"]
    assert "step 'features' failed: ValueError: income has negative values" in error["message"]
    assert error["programmingLanguage"] == "PYTHON"


def test_a_broken_transport_logs_a_warning_and_the_run_succeeds(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Closed now: nothing listens on the port, so a connection is refused at once.
    settings = {
        "transport": {"type": "http", "url": f"http://127.0.0.1:{port}", "retry": {"total": 0}}
    }
    with caplog.at_level(logging.WARNING, logger="conveyor.lineage.openlineage"):
        report = run_project(root, settings)
    assert {s.status for s in report.pipeline.steps} == {"ran"}
    warnings = [r for r in caplog.records if r.name == "conveyor.lineage.openlineage"]
    # One warning, not one per event: the rest of the run's events are dropped.
    assert len(warnings) == 1
    assert "OpenLineage event not sent" in warnings[0].getMessage()
    assert not (root / DEFAULT_EVENTS_FILE).exists()


def test_disabled_in_the_settings_emits_nothing(root: Path) -> None:
    run_project(root, {"enabled": False})
    assert not (root / DEFAULT_EVENTS_FILE).exists()


def test_the_validator_rejects_broken_events(root: Path) -> None:
    run_project(root)
    events = events_of(root)
    validate(events[-1])

    bad_run_id = json.loads(json.dumps(events[0]))
    bad_run_id["run"]["runId"] = "not-a-uuid"
    with pytest.raises(ValidationError, match="not-a-uuid"):
        validate(bad_run_id)

    bad_facet = json.loads(json.dumps(events[-1]))
    bad_facet["inputs"][0]["facets"]["schema"]["fields"] = [{"type": "int64"}]  # no name
    with pytest.raises(ValidationError, match="'name' is a required property"):
        validate(bad_facet)

    bad_error = json.loads(json.dumps(events[0]))
    bad_error["run"]["facets"]["errorMessage"] = {
        "_producer": "urn:x",
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
        "message": "boom",
    }
    with pytest.raises(ValidationError, match="'programmingLanguage' is a required property"):
        validate(bad_error)


def test_run_ids_map_to_uuid7_one_to_one_and_in_time_order() -> None:
    first, second = new_id(), new_id()
    a, b = uuid.UUID(run_uuid(first)), uuid.UUID(run_uuid(second))
    assert (a.version, a.variant) == (7, uuid.RFC_4122)
    # The UUID's 48-bit timestamp is the id's millisecond clock, and its random bits the id's.
    assert f"{a.int >> 80:012x}" == first[:12]
    rand = ((a.int >> 64) & 0xFFF) << 44 | ((a.int & ((1 << 62) - 1)) >> 18)
    assert f"{rand:014x}" == first[12:]
    assert (str(a) < str(b)) == (first < second)
    assert uuid.UUID(run_uuid("not-ours")).version == 5
    assert run_uuid("not-ours") == run_uuid("not-ours") != run_uuid("not-ours2")
