"""The run lock: an unchanged project is answered from it, and any change takes the full path,
which runs exactly the steps it must.

Which path answered is read from ``--json`` (``"fast_path"``) or the DEBUG log, never from
timing.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import TYPE_CHECKING, Any

from tests.e2e._cli import conveyor

if TYPE_CHECKING:
    from pathlib import Path

ALL = {"raw", "validated", "train_set", "model", "eval_set", "metrics", "data_report"}


def _run(project: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``conveyor run --json``; the DEBUG log (which says why the lock did not answer) is kept
    under "log" for the assertion messages."""
    result = conveyor(
        "run", "--json", *args, cwd=project, env={"CONVEYOR_LOG_LEVEL": "DEBUG", **(env or {})}
    )
    assert result.code == 0, result.err
    body: dict[str, Any] = json.loads(result.out)
    body["log"] = "\n".join(line for line in result.err.splitlines() if "run lock" in line)
    return body


def _ran(body: dict[str, Any]) -> set[str]:
    return {s["name"] for s in body["steps"] if s["status"] == "ran"}


def _first_run(project: Path) -> dict[str, Any]:
    first = _run(project)
    assert not first["fast_path"], first["log"]
    assert _ran(first) == ALL
    return first


def _summary(out: str) -> list[str]:
    """The lines of `conveyor run` other than the per-step progress lines."""
    progress = ("ran", "cached", "failed")
    return [line for line in out.splitlines() if line.split()[:1] not in [[p] for p in progress]]


def test_an_unchanged_project_is_answered_from_the_lock(project: Path) -> None:
    first = _first_run(project)
    again = _run(project)
    assert again["fast_path"], again["log"]
    # The run the lock vouches for, and nothing recorded anew.
    assert again["pipeline_run_id"] == first["pipeline_run_id"]
    assert [(s["name"], s["cache_key"], s["output_digest"]) for s in again["steps"]] == [
        (s["name"], s["cache_key"], s["output_digest"]) for s in first["steps"]
    ]
    assert {s["status"] for s in again["steps"]} == {"cached"}
    assert again["model"] == {**first["model"], "created": False}
    assert again["model"]["stage"] == "experimental"

    # The same summary as the full path's answer for an unchanged project.
    fast = conveyor("run", cwd=project)
    (project / ".conveyor" / "run-lock.json").unlink()
    full = conveyor("run", cwd=project)
    assert fast.code == full.code == 0
    assert _summary(fast.out) == _summary(full.out)
    assert _summary(fast.out)[1:] == [
        "7 steps: 0 ran, 7 cached  (nothing changed)",
        "model churn unchanged, already registered as version 1 (experimental)",
    ]

    forced = _run(project, "--force")
    assert not forced["fast_path"], forced["log"]
    assert _ran(forced) == ALL


def test_a_promotion_since_the_last_run_shows_in_the_answer(project: Path) -> None:
    _first_run(project)
    assert conveyor("promote", "churn", "1", "--to", "candidate", cwd=project).code == 0
    again = _run(project)
    assert again["fast_path"], again["log"]
    assert again["model"]["stage"] == "candidate"


def test_the_debug_log_says_which_path_and_why(project: Path) -> None:
    debug = {"CONVEYOR_LOG_LEVEL": "DEBUG"}
    first = conveyor("run", cwd=project, env=debug)
    assert "run lock: full run: no run lock yet" in first.err
    again = conveyor("run", cwd=project, env=debug)
    assert "run lock: nothing changed since pipeline run" in again.err
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace("seed: 7", "seed: 8"))
    changed = conveyor("run", cwd=project, env=debug)
    assert "run lock: full run: conveyor.yaml changed" in changed.err


def test_a_changed_param_reruns_exactly_its_steps(project: Path) -> None:
    _first_run(project)
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace("n_estimators: 200", "n_estimators: 60"))
    result = _run(project)
    assert not result["fast_path"], result["log"]
    assert "full run: conveyor.yaml changed" in result["log"]
    assert _ran(result) == {"model", "metrics"}
    assert result["model"]["version"] == 2


def test_an_edited_step_source_file_reruns_that_step(project: Path) -> None:
    _first_run(project)
    pipeline = project / "training" / "pipeline.py"
    text = pipeline.read_text()
    assert "the gates in policies.yaml read these." in text
    pipeline.write_text(text.replace("policies.yaml read these.", "policies.yaml read them."))
    result = _run(project)
    assert not result["fast_path"], result["log"]
    assert f"full run: source file {pipeline} changed" in result["log"]
    assert _ran(result) == {"metrics"}  # same metrics: the model stays version 1
    assert result["model"]["version"] == 1


def test_an_edited_helper_module_reruns_the_steps_using_it(project: Path) -> None:
    # training/steps.py holds the code every step calls: an edit re-runs them all, and the
    # model they train is byte for byte the same, so the version is too.
    _first_run(project)
    steps = project / "training" / "steps.py"
    steps.write_text(steps.read_text() + "\n# a comment is an edit to the file\n")
    result = _run(project)
    assert not result["fast_path"], result["log"]
    assert f"full run: source file {steps} changed" in result["log"]
    assert _ran(result) == ALL
    assert result["model"]["version"] == 1
    assert not result["model"]["created"]
    again = _run(project)
    assert again["fast_path"], again["log"]  # the new lock holds


def test_a_touched_but_identical_data_file_is_checked_then_cached(project: Path) -> None:
    _first_run(project)
    data = project / "data" / "2026-01.csv"
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    result = _run(project)
    assert not result["fast_path"], result["log"]
    assert f"full run: {data} changed" in result["log"]
    assert _ran(result) == set()
    again = _run(project)
    assert again["fast_path"], again["log"]


def test_a_changed_data_file_reruns_from_the_step_reading_it(project: Path) -> None:
    _first_run(project)
    shutil.copy(project / "data" / "2026-02.csv", project / "data" / "2026-01.csv")
    result = _run(project)
    assert not result["fast_path"], result["log"]
    assert f"full run: {project / 'data' / '2026-01.csv'} changed" in result["log"]
    # data_report reads the training rows too; eval_set reads only the hold-out.
    assert _ran(result) == {"raw", "validated", "train_set", "model", "metrics", "data_report"}
    assert result["model"] == {**result["model"], "version": 2, "created": True}


def test_a_deleted_output_artifact_reruns_its_step(project: Path) -> None:
    first = _first_run(project)
    digest = next(s["output_digest"] for s in first["steps"] if s["name"] == "metrics")
    hexdigest = digest.removeprefix("blake3:")
    stored = project / ".conveyor" / "artifacts" / "blake3" / hexdigest[:2] / hexdigest[2:]
    stored.unlink()
    result = _run(project)
    assert not result["fast_path"], result["log"]
    assert f"full run: stored output {stored} is missing" in result["log"]
    assert _ran(result) == {"metrics"}


def test_another_store_takes_the_full_path(project: Path, tmp_path: Path) -> None:
    _first_run(project)
    other = {"CONVEYOR_STORE": f"sqlite:///{tmp_path / 'other.db'}"}
    result = _run(project, env=other)
    assert not result["fast_path"], result["log"]
    assert "full run: environment variables changed" in result["log"]
    assert _ran(result) == ALL  # a new store has no runs to reuse
    assert result["model"]["version"] == 1
    assert result["model"]["created"]  # registered there afresh
    again = _run(project, env=other)
    assert again["fast_path"], again["log"]
    back = _run(project)  # to the project's own store
    assert not back["fast_path"], back["log"]
    assert "full run: environment variables changed" in back["log"]
