"""Atomic writes: readers see the old file or the new one, whole; a failure leaves no trace."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from conveyor.core.atomic import atomic_write, atomic_write_bytes

if TYPE_CHECKING:
    from pathlib import Path

SIZE = 4 * 1024 * 1024
OLD = b"A" * SIZE
NEW = b"B" * SIZE


def write_then_fail(path: Path, exc: BaseException) -> None:
    with atomic_write(path) as fh:
        fh.write(b"half of the new content")
        raise exc


def test_writes_new_file_and_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(path, b"content")
    assert path.read_bytes() == b"content"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]


def test_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")
    with atomic_write(path) as fh:
        fh.write(b"new ")
        fh.write(b"content")
    assert path.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_failure_inside_the_block_keeps_old_content_and_leaves_no_temp_file(
    tmp_path: Path, exc_type: type[BaseException]
) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")
    with pytest.raises(exc_type):
        write_then_fail(path, exc_type("boom"))
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_failure_on_a_new_path_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    with pytest.raises(RuntimeError):
        write_then_fail(path, RuntimeError("boom"))
    assert list(tmp_path.iterdir()) == []


def test_reader_during_a_write_sees_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(OLD)
    half_written = threading.Event()
    read_done = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        half_written.wait()
        seen.append(path.read_bytes())
        read_done.set()

    thread = threading.Thread(target=reader)
    thread.start()
    with atomic_write(path) as fh:
        fh.write(NEW[: SIZE // 2])
        fh.flush()
        half_written.set()
        # The reader reads while half of the new content is already on disk.
        assert read_done.wait(timeout=30)
        fh.write(NEW[SIZE // 2 :])
    thread.join()
    assert seen == [OLD]
    assert path.read_bytes() == NEW


def test_concurrent_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(OLD)
    writes_done = threading.Event()
    first_read = threading.Event()
    torn: list[int] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not writes_done.is_set():
            data = path.read_bytes()
            reads += 1
            first_read.set()
            if data not in (OLD, NEW):
                torn.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    assert first_read.wait(timeout=30)
    for i in range(20):
        content = NEW if i % 2 == 0 else OLD
        with atomic_write(path) as fh:
            for start in range(0, SIZE, 256 * 1024):
                fh.write(content[start : start + 256 * 1024])
    writes_done.set()
    thread.join()
    assert torn == []
    assert reads > 1
    assert path.read_bytes() == OLD
