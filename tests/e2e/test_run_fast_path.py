"""The run lock: an unchanged project answers at once, and any change takes the full path.

Which path ran is read from the output ("by the run lock"), never from timing.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from tests.e2e._cli import conveyor

if TYPE_CHECKING:
    from pathlib import Path

FAST = "by the run lock"


def _statuses(out: str) -> dict[str, str]:
    """Step name -> ran/cached, from the full path's progress lines."""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ran", "cached", "failed"):
            found[parts[1]] = parts[0]
    return found


def _first_run(project: Path) -> None:
    first = conveyor("run", cwd=project)
    assert first.code == 0, first.err
    assert FAST not in first.out


def test_an_unchanged_project_answers_from_the_lock(project: Path) -> None:
    _first_run(project)
    again = conveyor("run", cwd=project)
    assert again.code == 0, again.err
    assert FAST in again.out
    assert "6 steps: 0 ran, 6 cached" in again.out
    assert "already registered as version 1" in again.out
    forced = conveyor("run", "--force", cwd=project)
    assert FAST not in forced.out
    assert set(_statuses(forced.out).values()) == {"ran"}


def test_a_changed_param_reruns_exactly_its_steps(project: Path) -> None:
    _first_run(project)
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace("n_estimators: 200", "n_estimators: 60"))
    result = conveyor("run", cwd=project)
    assert FAST not in result.out
    ran = {name for name, status in _statuses(result.out).items() if status == "ran"}
    assert ran == {"model", "metrics"}


def test_an_edited_helper_module_takes_the_full_path(project: Path) -> None:
    _first_run(project)
    steps = project / "training" / "steps.py"
    steps.write_text(steps.read_text() + "\n# a comment changes the file's fingerprint\n")
    result = conveyor("run", cwd=project)
    assert result.code == 0, result.err
    assert FAST not in result.out
    # The full path then decides with real cache keys: the module's code changed, so every
    # step that uses it runs again.
    assert "ran" in _statuses(result.out).values()
    assert FAST in conveyor("run", cwd=project).out  # and the new lock holds


def test_a_touched_but_identical_data_file_is_checked_then_cached(project: Path) -> None:
    _first_run(project)
    data = project / "data" / "2026-01.csv"
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    result = conveyor("run", cwd=project)
    assert FAST not in result.out
    assert set(_statuses(result.out).values()) == {"cached"}


def test_a_changed_data_file_reruns_from_ingest(project: Path) -> None:
    _first_run(project)
    shutil.copy(project / "data" / "2026-02.csv", project / "data" / "2026-01.csv")
    result = conveyor("run", cwd=project)
    assert FAST not in result.out
    statuses = _statuses(result.out)
    assert statuses["raw"] == "ran"
    assert statuses["eval_set"] == "cached"
    assert "registered version 2" in result.out


def test_a_deleted_output_artifact_takes_the_full_path(project: Path) -> None:
    _first_run(project)
    objects = [p for p in (project / ".conveyor" / "artifacts").rglob("*") if p.is_file()]
    victim = max(objects, key=lambda p: p.stat().st_size)
    victim.unlink()
    result = conveyor("run", cwd=project)
    assert result.code == 0, result.err
    assert FAST not in result.out


def test_another_store_takes_the_full_path(project: Path, tmp_path: Path) -> None:
    _first_run(project)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = conveyor("run", cwd=project, env={"CONVEYOR_STORE": other})
    assert result.code == 0, result.err
    assert FAST not in result.out
    assert "registered version 1" in result.out  # a new store: registered there afresh
