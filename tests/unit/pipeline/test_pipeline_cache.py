"""What re-runs a step, and what leaves it cached: code, helper code, params, files, env."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.pipeline import _env

if TYPE_CHECKING:
    import pytest
    from tests.unit.pipeline.conftest import MakeProject, Project

ALL = {"raw", "scaled", "total", "label"}


def test_first_run_runs_everything_and_an_unchanged_rerun_runs_nothing(flow: Project) -> None:
    first = flow.run()
    assert flow.ran(first) == ALL
    assert [s.name for s in first.steps] == ["raw", "scaled", "total", "label"]

    again = flow.run()
    assert flow.statuses(again) == dict.fromkeys(ALL, "cached")
    assert [s.cache_key for s in again.steps] == [s.cache_key for s in first.steps]
    assert [s.output_digest for s in again.steps] == [s.output_digest for s in first.steps]
    assert again.load("total") == {"total": 18}


def test_a_changed_param_reruns_its_step_and_downstream_only(flow: Project) -> None:
    flow.run()
    flow.params["offset"] = 5
    result = flow.run()
    assert flow.statuses(result) == {
        "raw": "cached",
        "scaled": "cached",
        "total": "ran",
        "label": "cached",
    }
    assert result.load("total") == {"total": 23}


def test_a_param_no_step_reads_changes_nothing(flow: Project) -> None:
    flow.run()
    flow.params["unused"] = 1
    assert flow.ran(flow.run()) == set()


def test_an_edited_input_file_reruns_the_reader_and_downstream(flow: Project) -> None:
    flow.run()
    (flow.root / "data" / "nums.txt").write_text("1 2 3 4\n")
    result = flow.run()
    assert flow.ran(result) == {"raw", "scaled", "total"}
    assert result.load("total") == {"total": 30}


def test_identical_upstream_output_keeps_downstream_cached(flow: Project) -> None:
    flow.run()
    # Different file bytes, same parsed numbers: raw re-runs, its output is byte-identical.
    (flow.root / "data" / "nums.txt").write_text("1  2  3\n\n")
    result = flow.run()
    assert flow.statuses(result) == {
        "raw": "ran",
        "scaled": "cached",
        "total": "cached",
        "label": "cached",
    }


def test_editing_a_steps_source_reruns_it_and_downstream(flow: Project) -> None:
    flow.run()
    flow.edit("flow/pipe.py", "return helpers.scale(raw)", "return helpers.scale(raw)[::-1]")
    result = flow.run()
    assert flow.statuses(result) == {
        "raw": "cached",
        "scaled": "ran",
        # Reversed numbers: a different output, so total runs again, with the same sum.
        "total": "ran",
        "label": "cached",
    }
    assert result.load("scaled") == [9, 6, 3]


def test_editing_a_helper_module_reruns_the_steps_that_use_it(flow: Project) -> None:
    flow.run()
    flow.edit("flow/helpers.py", "FACTOR = 3", "FACTOR = 10")
    result = flow.run()
    assert flow.ran(result) == {"scaled", "total"}
    assert result.load("total") == {"total": 60}


def test_editing_an_unrelated_module_reruns_nothing(flow: Project) -> None:
    flow.run()
    flow.edit("flow/unrelated.py", "return 1", "return 2  # changed")
    flow.write("flow/new_module.py", "X = 1\n")
    assert flow.ran(flow.run()) == set()


def test_a_comment_elsewhere_in_the_pipeline_module_reruns_nothing(flow: Project) -> None:
    flow.run()
    flow.edit("flow/pipe.py", "pipeline = Pipeline(", "# the pipeline\npipeline = Pipeline(")
    assert flow.ran(flow.run()) == set()


def test_helper_imported_transitively_is_followed(make_project: MakeProject) -> None:
    project = make_project(
        {
            "flow/__init__.py": "",
            "flow/deep.py": "BASE = 1\n",
            "flow/middle.py": """
                from flow.deep import BASE


                def value():
                    return BASE + 1
            """,
            "flow/pipe.py": """
                from conveyor import Pipeline, step
                from flow import middle


                @step
                def out():
                    return middle.value()


                pipeline = Pipeline([out], name="deep")
            """,
        }
    )
    assert project.ran(project.run()) == {"out"}
    project.edit("flow/deep.py", "BASE = 1", "BASE = 41")
    result = project.run()
    assert project.ran(result) == {"out"}
    assert result.load("out") == 42


def test_a_changed_environment_reruns_everything(
    flow: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow.run()
    monkeypatch.setattr(_env, "env_digest", lambda: "blake3:" + "0" * 64)
    assert flow.ran(flow.run()) == ALL


def test_force_reruns_everything(flow: Project) -> None:
    flow.run()
    assert flow.ran(flow.run(force=True)) == ALL


def test_a_step_with_cache_false_always_runs(make_project: MakeProject) -> None:
    project = make_project(
        {
            "flow/__init__.py": "",
            "flow/pipe.py": """
                from conveyor import Pipeline, step


                @step(cache=False)
                def clock():
                    return 1


                @step
                def after(clock):
                    return clock + 1


                pipeline = Pipeline([clock, after], name="nocache")
            """,
        }
    )
    project.run()
    # clock re-runs; its output is unchanged, so its downstream step stays cached.
    assert project.statuses(project.run()) == {"clock": "ran", "after": "cached"}


def test_a_deleted_artifact_is_recomputed(flow_sqlite: Project) -> None:
    first = flow_sqlite.run()
    digest = next(s.output_digest for s in first.steps if s.name == "total")
    assert digest is not None
    path = flow_sqlite.root.parent / "artifacts" / "blake3" / digest[7:9] / digest[9:]
    path.unlink()
    result = flow_sqlite.run()
    assert flow_sqlite.ran(result) == {"total"}
    assert result.load("total") == {"total": 18}
