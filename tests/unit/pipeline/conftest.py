"""Throwaway projects on disk: real ``.py`` files, imported the way ``conveyor run`` does."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.pipeline import PipelineResult, load_pipeline, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from conveyor.pipeline import Pipeline, StepEvent
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore


@dataclass
class Project:
    """A project folder with its stores; ``run()`` loads the pipeline afresh, like the CLI."""

    root: Path
    metadata: MetadataStore
    artifacts: ArtifactStore
    params: dict[str, Any]
    ref: str = "flow.pipe:pipeline"

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))

    def load(self) -> Pipeline:
        return load_pipeline(self.ref, self.root)

    @staticmethod
    def statuses(result: PipelineResult) -> dict[str, str]:
        return {s.name: s.status for s in result.steps}

    def run(self, *, force: bool = False, events: list[StepEvent] | None = None) -> PipelineResult:
        return run_pipeline(
            self.load(),
            params=self.params,
            metadata=self.metadata,
            artifacts=self.artifacts,
            actor="tester",
            root=self.root,
            force=force,
            on_event=events.append if events is not None else None,
        )

    @staticmethod
    def ran(result: PipelineResult) -> set[str]:
        """The steps that executed (not cached) in a run."""
        return {s.name for s in result.steps if s.status == "ran"}


if TYPE_CHECKING:
    MakeProject = Callable[..., Project]


@pytest.fixture(autouse=True)
def _isolated_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test's project modules leave sys.path and sys.modules as they were.

    Bytecode is not written: a file edited twice within one second with the same size would
    otherwise be loaded from a stale .pyc (whose check is mtime in seconds plus size).
    """
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield
    prefix = str(tmp_path.resolve())
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(prefix):
            del sys.modules[name]


FLOW_FILES = {
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
        from conveyor import Pipeline, step
        from flow import helpers


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
            return prefix + "!"


        pipeline = Pipeline([raw, scaled, total, label], name="flow")
    """,
    "data/nums.txt": "1 2 3\n",
}


FLOW_PARAMS = {"data_path": "data/nums.txt", "offset": 0, "prefix": "p"}


def _factory(root: Path, metadata: MetadataStore, artifacts: ArtifactStore) -> MakeProject:
    def make(files: dict[str, str], params: dict[str, Any] | None = None) -> Project:
        project = Project(root, metadata, artifacts, dict(params or {}))
        for rel, text in files.items():
            project.write(rel, text)
        return project

    return make


@pytest.fixture
def make_project(
    tmp_path: Path, sqlite_store: MetadataStore, artifact_store: ArtifactStore
) -> MakeProject:
    """``make_project(files, params)``: a project in tmp_path/proj, on SQLite."""
    return _factory(tmp_path / "proj", sqlite_store, artifact_store)


@pytest.fixture
def flow(tmp_path: Path, metadata_store: MetadataStore, artifact_store: ArtifactStore) -> Project:
    """raw (reads a file) -> scaled (uses a helper module) -> total (reads `offset`); and
    label, independent of the others. On both metadata backends."""
    return _factory(tmp_path / "proj", metadata_store, artifact_store)(FLOW_FILES, FLOW_PARAMS)


@pytest.fixture
def flow_sqlite(make_project: MakeProject) -> Project:
    """The same project on SQLite only, for tests that are not about the backend."""
    return make_project(FLOW_FILES, FLOW_PARAMS)
