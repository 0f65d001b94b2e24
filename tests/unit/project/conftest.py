"""A project on disk, run the way ``conveyor run`` runs it, with each run as in a new process."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.core import env
from conveyor.project import RunLock, RunReport, open_project, run, run_lock

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HOUR_NS = 3600 * 10**9

FILES = {
    "conveyor.yaml": """
        pipeline: flow.pipe:pipeline
        params:
          data_path: data/nums.txt
          notes_dir: data/notes
          offset: 0
          prefix: p
    """,
    "flow/__init__.py": "",
    "flow/helpers.py": """
        FACTOR = 3


        def scale(values):
            return [v * FACTOR for v in values]
    """,
    "flow/unrelated.py": """
        def other():
            return 1
    """,
    "flow/pipe.py": """
        import os

        from conveyor import Pipeline, step
        from flow import helpers

        # Read when the module is imported: the value is part of `label`'s cache key.
        REPEAT = int(os.environ.get("FLOW_REPEAT", "1"))


        @step(files=("data_path",))
        def raw(data_path):
            with open(data_path) as fh:
                return [int(x) for x in fh.read().split()]


        @step
        def scaled(raw):
            return helpers.scale(raw)


        @step
        def total(scaled, offset):
            return {"total": sum(scaled) + offset}


        @step
        def label(prefix):
            return prefix * REPEAT + "!"


        @step(files=("notes_dir",))
        def notes(notes_dir):
            return sorted(os.listdir(notes_dir))


        pipeline = Pipeline([raw, scaled, total, label, notes], name="flow")
    """,
    "data/nums.txt": "1 2 3\n",
    "data/notes/a.txt": "a\n",
}


def age(path: Path) -> None:
    """Move a file's mtime an hour back (and so away from its old one): as if written a while
    ago, so that the run lock can vouch for it (see its "racily clean" rule)."""
    st = path.stat()
    old = min(st.st_mtime_ns, time.time_ns()) - HOUR_NS
    os.utime(path, ns=(old, old))


@dataclass
class LockProject:
    """A project folder; ``run()`` and ``lock()`` behave like separate ``conveyor run``s."""

    root: Path
    _sys_path: list[str]

    def write(self, rel: str, text: str, *, aged: bool = True) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        if aged:
            age(path)
        return path

    def edit(self, rel: str, old: str, new: str, *, aged: bool = True) -> Path:
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        return self.write(rel, text.replace(old, new), aged=aged)

    def _new_process(self) -> None:
        # What a new interpreter would have: load_pipeline put the root first on sys.path.
        sys.path[:] = self._sys_path

    def lock(self, flags: dict[str, Any] | None = None) -> RunLock:
        self._new_process()
        return run_lock(self.root, flags or {})

    def unchanged(self, flags: dict[str, Any] | None = None) -> tuple[bool, str]:
        """Whether the run lock answers, and why not."""
        lock = self.lock(flags)
        return lock.unchanged() is not None, lock.reason

    def run(self, flags: dict[str, Any] | None = None, *, force: bool = False) -> RunReport:
        """A full run, as ``conveyor run`` does it when the lock does not answer."""
        lock = self.lock(flags)
        with open_project(self.root, flags) as project:
            return run(project, actor="tester", force=force, lock=lock)

    @staticmethod
    def ran(report: RunReport) -> set[str]:
        return {s.name for s in report.pipeline.steps if s.status == "ran"}

    @property
    def lock_file(self) -> Path:
        return self.root / ".conveyor" / "run-lock.json"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LockProject]:
    """The flow project, its files written an hour ago, with no ``CONVEYOR_*`` variables set."""
    for name in (*env.__all__, "FLOW_REPEAT"):
        monkeypatch.delenv(getattr(env, name, name), raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    root = (tmp_path / "proj").resolve()
    proj = LockProject(root, list(sys.path))
    for rel, text in FILES.items():
        proj.write(rel, text)
    for folder in (root / "data" / "notes", root / "data", root / "flow", root):
        age(folder)
    yield proj
    prefix = str(tmp_path.resolve())
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(prefix):
            del sys.modules[name]
