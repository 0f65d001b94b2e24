"""The public surface of ``conveyor.project``, and that an answer from the run lock stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import conveyor.project as project_pkg

if TYPE_CHECKING:
    from tests.unit.project.conftest import LockProject

HEAVY = ("sqlalchemy", "alembic", "pydantic", "yaml", "rich", "pandas", "numpy", "sklearn")


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert project_pkg.__all__ == sorted(project_pkg.__all__)
    for name in project_pkg.__all__:
        assert getattr(project_pkg, name).__module__.startswith("conveyor.project")


def test_the_lock_answers_conveyor_run_without_heavy_imports(project: LockProject) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    first = subprocess.run(
        [sys.executable, "-m", "conveyor", "run"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    # The CLI's own entry point, in a process that then reports what it imported.
    code = (
        "import json, sys\n"
        "from conveyor.cli import main\n"
        "code = main(['run', '--json'])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    again = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    answer, report = again.stdout.strip().rsplit("\n", 1)
    assert json.loads(answer)["fast_path"]
    assert json.loads(report) == {"code": 0, "heavy": []}
