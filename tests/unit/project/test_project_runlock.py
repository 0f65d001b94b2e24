"""The run lock answers an unchanged project, and every change that could change a run's
outcome sends ``conveyor run`` down the full path, which then runs exactly what it must."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.unit.project.conftest import age

from conveyor.core.errors import StepError
from conveyor.project import LockedModel, LockedRun, open_project
from conveyor.project import _runlock_store as runlock_store
from conveyor.registry import load_policy, promote, register_version

if TYPE_CHECKING:
    from tests.unit.project.conftest import LockProject

ALL = {"raw", "scaled", "total", "label", "notes"}


def _first_run(project: LockProject) -> None:
    assert project.ran(project.run()) == ALL
    assert project.lock_file.is_file()


def test_an_unchanged_project_is_answered_by_the_lock(project: LockProject) -> None:
    report = project.run()
    locked = project.lock().unchanged()
    assert locked is not None
    assert locked.pipeline == "flow"
    assert locked.ref == "flow.pipe:pipeline"
    assert locked.root == str(project.root)
    # The answer is the run the lock vouches for: its id, and each step's key and output.
    assert locked.pipeline_run_id == report.pipeline.pipeline_run_id
    assert [(s.name, s.cache_key, s.output_digest) for s in locked.steps] == [
        (s.name, s.cache_key, s.output_digest) for s in report.pipeline.steps
    ]
    assert locked.model is None
    # And it is what the full path finds: every step cached, with the same keys and outputs.
    again = project.run()
    assert {s.status for s in again.pipeline.steps} == {"cached"}
    assert [s.cache_key for s in again.pipeline.steps] == [s.cache_key for s in locked.steps]
    assert project.unchanged() == (True, "nothing changed")


def test_no_lock_a_corrupt_one_or_another_format_means_the_full_path(
    project: LockProject,
) -> None:
    assert project.unchanged() == (False, "no run lock yet")
    _first_run(project)
    body = json.loads(project.lock_file.read_text())
    project.lock_file.write_text(json.dumps({**body, "format": 1}))
    assert project.unchanged() == (False, "run lock of format 1, not 2")
    project.lock_file.write_text("{not json")
    hit, reason = project.unchanged()
    assert not hit
    assert reason.startswith("unreadable run lock")
    del body["store"]
    project.lock_file.write_text(json.dumps(body))
    assert not project.unchanged()[0]


def test_a_changed_param_reruns_its_step(project: LockProject) -> None:
    _first_run(project)
    project.edit("conveyor.yaml", "offset: 0", "offset: 5")
    assert project.unchanged() == (False, "conveyor.yaml changed")
    assert project.ran(project.run()) == {"total"}
    assert project.unchanged() == (True, "nothing changed")


def test_an_edited_step_source_file_reruns_that_step(project: LockProject) -> None:
    _first_run(project)
    pipe = project.edit("flow/pipe.py", 'prefix * REPEAT + "!"', 'prefix * REPEAT + "?"')
    hit, reason = project.unchanged()
    assert not hit
    assert reason == f"source file {pipe} changed"
    assert project.ran(project.run()) == {"label"}


def test_an_edited_helper_module_reruns_the_steps_using_it(project: LockProject) -> None:
    _first_run(project)
    helpers = project.edit("flow/helpers.py", "FACTOR = 3", "FACTOR = 4")
    assert project.unchanged() == (False, f"source file {helpers} changed")
    assert project.ran(project.run()) == {"scaled", "total"}
    assert project.unchanged()[0]


def test_a_module_added_to_or_removed_from_the_project_is_a_change(project: LockProject) -> None:
    # A new file can shadow an import that resolved elsewhere before.
    _first_run(project)
    new = project.write("flow/extra.py", "X = 1\n")
    assert project.unchanged() == (False, f"source file {new} appeared")
    assert project.ran(project.run()) == set()
    assert project.unchanged()[0]
    new.unlink()
    assert project.unchanged() == (False, f"source file {new} disappeared")


def test_a_touched_but_identical_data_file_is_checked_then_cached(
    project: LockProject,
) -> None:
    _first_run(project)
    data = project.root / "data" / "nums.txt"
    age(data)  # a new mtime, the same bytes
    hit, reason = project.unchanged()
    assert not hit
    assert reason == f"{data} changed"
    assert project.ran(project.run()) == set()
    assert project.unchanged()[0]  # the full run wrote a lock with the new stat


def test_a_changed_data_file_reruns_from_the_step_reading_it(project: LockProject) -> None:
    _first_run(project)
    project.write("data/nums.txt", "1 2 3 4\n")
    assert not project.unchanged()[0]
    assert project.ran(project.run()) == {"raw", "scaled", "total"}


def test_a_file_added_to_a_data_folder_reruns_the_step_reading_it(
    project: LockProject,
) -> None:
    _first_run(project)
    project.write("data/notes/b.txt", "b\n")
    hit, reason = project.unchanged()
    assert not hit
    assert reason == f"{project.root / 'data' / 'notes'} changed"
    assert project.ran(project.run()) == {"notes"}


def test_a_deleted_output_reruns_the_step_that_made_it(project: LockProject) -> None:
    report = project.run()
    total = next(s for s in report.pipeline.steps if s.name == "total")
    assert total.output_digest is not None
    with open_project(project.root) as opened:
        path = opened.artifacts.location(total.output_digest)
    os.unlink(path)
    assert project.unchanged() == (False, f"stored output {path} is missing")
    assert project.ran(project.run()) == {"total"}


def test_another_store_by_environment_or_flag_means_the_full_path(
    project: LockProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first_run(project)
    other = f"sqlite:///{project.root / 'other.db'}"
    monkeypatch.setenv("CONVEYOR_STORE", other)
    assert project.unchanged() == (False, "environment variables changed")
    # A new store has no runs: every step runs again, recorded there.
    assert project.ran(project.run()) == ALL
    monkeypatch.delenv("CONVEYOR_STORE")
    assert project.unchanged() == (False, "environment variables changed")
    assert project.ran(project.run()) == set()
    assert project.unchanged({"store": other}) == (False, "--store or --artifacts changed")


def test_an_environment_variable_read_at_import_time_is_a_change(
    project: LockProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FLOW_REPEAT goes into a module constant that `label`'s cache key covers: the full path
    # runs `label` again, so the lock must not answer.
    _first_run(project)
    monkeypatch.setenv("FLOW_REPEAT", "2")
    assert project.unchanged() == (False, "environment variables changed")
    assert project.ran(project.run()) == {"label"}


def test_shell_bookkeeping_variables_are_not_a_change(
    project: LockProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first_run(project)
    monkeypatch.setenv("OLDPWD", "/somewhere/else")
    monkeypatch.setenv("SHLVL", "7")
    monkeypatch.setenv("CONVEYOR_USER", "someone-else")
    assert project.unchanged() == (True, "nothing changed")


def test_a_database_restored_in_place_means_the_full_path(project: LockProject) -> None:
    with open_project(project.root) as opened:  # creates the empty, migrated database
        db = opened.config.store.removeprefix("sqlite:///")
    empty = Path(db).read_bytes()
    _first_run(project)
    inode = os.stat(db).st_ino
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    with Path(db).open("r+b") as fh:  # the same inode, as `cp backup.db metadata.db` keeps
        fh.truncate(0)
        fh.write(empty)
    assert os.stat(db).st_ino == inode
    hit, reason = project.unchanged()
    assert not hit
    assert reason == "the metadata store has another output for step 'raw'"
    assert project.ran(project.run()) == ALL


def test_a_replaced_or_deleted_database_file_means_the_full_path(project: LockProject) -> None:
    _first_run(project)
    with open_project(project.root) as opened:
        db = opened.config.store.removeprefix("sqlite:///")
    shutil.copy(db, db + ".new")
    os.replace(db + ".new", db)
    assert project.unchanged() == (False, f"the metadata store {db} is another file now")
    os.unlink(db)
    assert project.unchanged() == (False, f"the metadata store {db} is gone")


def test_the_lock_checks_the_registered_version_and_reads_its_stage_now(
    project: LockProject,
) -> None:
    report = project.run()
    with open_project(project.root) as opened:
        db = opened.config.store.removeprefix("sqlite:///")
        digest = report.pipeline.steps[0].output_digest
        assert digest is not None
        version, _ = register_version(
            opened.metadata, model="m", artifact_digest=digest, metrics={}, run_id=None, actor="t"
        )
        locked = LockedRun(
            ref="flow.pipe:pipeline",
            root=str(project.root),
            pipeline="flow",
            pipeline_run_id=report.pipeline.pipeline_run_id,
            steps=(),
            model=LockedModel("m", version.version, digest),
        )
        found, _ = runlock_store.verify(db, locked)
        assert found is not None
        assert found.model is not None
        assert found.model.stage == "experimental"
        promote(
            opened.metadata,
            model="m",
            version=version.version,
            to="candidate",
            policy=load_policy(None),
            actor="t",
        )
        found, _ = runlock_store.verify(db, locked)
        assert found is not None
        assert found.model is not None
        assert found.model.stage == "candidate"
        other = LockedModel("m", version.version, "blake3:" + "0" * 64)
        found, reason = runlock_store.verify(db, LockedRun(**{**vars(locked), "model": other}))
        assert found is None
        assert reason == "model 'm' version 1 is not that bundle now"


def test_an_edit_during_the_run_shows_next_time(project: LockProject) -> None:
    # The fingerprints are those from before the run read anything: a source file and a data
    # file rewritten while the pipeline runs are changes for the next run.
    project.edit(
        "flow/pipe.py",
        "def label(prefix):\n",
        "def label(prefix):\n"
        "    with open(os.path.join(os.path.dirname(__file__), 'unrelated.py'), 'a') as fh:\n"
        "        fh.write('# edited while the pipeline ran\\n')\n",
    )
    _first_run(project)
    hit, reason = project.unchanged()
    assert not hit
    assert reason == f"source file {project.root / 'flow' / 'unrelated.py'} changed"


def test_a_data_file_rewritten_during_the_run_shows_next_time(project: LockProject) -> None:
    project.edit(
        "flow/pipe.py",
        "def label(prefix):\n",
        "def label(prefix):\n"
        "    data = os.path.join(os.path.dirname(__file__), '..', 'data', 'nums.txt')\n"
        "    with open(data, 'w') as fh:\n"
        "        fh.write('7 8 9\\n')\n",
    )
    _first_run(project)
    hit, reason = project.unchanged()
    assert not hit
    assert reason == f"{project.root / 'data' / 'nums.txt'} changed"


def test_a_file_changed_just_before_the_run_leaves_no_lock(project: LockProject) -> None:
    # Its mtime is within the timestamp granularity of the run's start: it could change again
    # with the same stat, so the lock cannot vouch for it.
    project.write("data/nums.txt", "4 5 6\n", aged=False)
    assert project.ran(project.run()) == ALL
    assert not project.lock_file.exists()
    assert project.unchanged() == (False, "no run lock yet")


def test_a_failed_run_removes_the_lock(project: LockProject) -> None:
    _first_run(project)
    project.edit("flow/helpers.py", "return [v * FACTOR", "return [v / 0")
    with pytest.raises(StepError):
        project.run()
    assert not project.lock_file.exists()
    project.edit("flow/helpers.py", "return [v / 0", "return [v * FACTOR")
    assert project.unchanged() == (False, "no run lock yet")
    assert project.ran(project.run()) == set()
    assert project.unchanged()[0]


def test_a_step_that_is_never_cached_means_no_lock(project: LockProject) -> None:
    project.edit("flow/pipe.py", "@step\ndef label", "@step(cache=False)\ndef label")
    project.run()
    assert not project.lock_file.exists()
    assert project.ran(project.run()) == {"label"}


def test_force_runs_everything_and_writes_the_lock(project: LockProject) -> None:
    _first_run(project)
    assert project.ran(project.run(force=True)) == ALL
    assert project.unchanged() == (True, "nothing changed")


@pytest.mark.usefixtures("backend")
def test_only_a_sqlite_store_gets_a_lock(
    project: LockProject, store_url: str, backend: str
) -> None:
    report = project.run({"store": store_url})
    assert project.ran(report) == ALL
    assert project.lock_file.exists() == (backend == "sqlite")
    assert project.unchanged({"store": store_url})[0] == (backend == "sqlite")
