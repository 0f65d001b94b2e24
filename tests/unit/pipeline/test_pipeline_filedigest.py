"""Input files are hashed once: their digests are remembered with their stat, across runs and
processes, and never trusted when the stat changes."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import pytest

from conveyor.pipeline import _filedigest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.pipeline.conftest import Project

HOUR_NS = 3600 * 10**9


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The file names hashed, in order; and an empty in-process cache, as in a new process."""
    monkeypatch.setattr(_filedigest, "_cache", {})
    calls: list[str] = []
    from conveyor.core.digest import digest_file as original

    def counting(path: Path) -> str:
        calls.append(path.name)
        return original(path)

    monkeypatch.setattr(_filedigest, "digest_file", counting)
    return calls


def _age(path: Path) -> None:
    old = time.time_ns() - HOUR_NS
    os.utime(path, ns=(old, old))


def _cache_file(project: Project) -> Path:
    return project.root / ".conveyor" / "file-digests.json"


def test_an_unchanged_file_is_not_hashed_again_in_a_new_process(
    flow_sqlite: Project, hashed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = flow_sqlite.root / "data" / "nums.txt"
    _age(data)
    flow_sqlite.run()
    assert "nums.txt" in hashed
    assert str(data) in json.loads(_cache_file(flow_sqlite).read_text())["files"]

    monkeypatch.setattr(_filedigest, "_cache", {})  # a new process: only the file remains
    hashed.clear()
    assert flow_sqlite.ran(flow_sqlite.run()) == set()
    assert "nums.txt" not in hashed


def test_a_changed_file_is_hashed_again(flow_sqlite: Project, hashed: list[str]) -> None:
    data = flow_sqlite.root / "data" / "nums.txt"
    _age(data)
    flow_sqlite.run()
    data.write_text("4 5 6\n")
    _age(data)  # even with an old mtime, the size and the change of mtime give it away
    hashed.clear()
    result = flow_sqlite.run()
    assert "nums.txt" in hashed
    assert result.load("total") == {"total": 45}


def test_a_file_changed_moments_ago_is_not_remembered(
    flow_sqlite: Project, hashed: list[str]
) -> None:
    for source in (flow_sqlite.root / "flow").glob("*.py"):
        _age(source)
    flow_sqlite.run()  # nums.txt was just written: its mtime may not move on the next write
    files = json.loads(_cache_file(flow_sqlite).read_text())["files"]
    assert str(flow_sqlite.root / "flow" / "helpers.py") in files
    assert str(flow_sqlite.root / "data" / "nums.txt") not in files


def test_a_corrupt_cache_file_is_ignored(flow_sqlite: Project, hashed: list[str]) -> None:
    _cache_file(flow_sqlite).parent.mkdir(parents=True)
    _cache_file(flow_sqlite).write_text("{not json")
    assert flow_sqlite.run().load("total") == {"total": 18}
    assert "nums.txt" in hashed


def test_the_cache_lives_in_the_projects_state_folder() -> None:
    from conveyor.core.config import DEFAULT_STATE_DIR
    from conveyor.pipeline._runner import STATE_DIR

    assert STATE_DIR == DEFAULT_STATE_DIR
