"""The local artifact store's own folders (``staging/``, ``sizes/``) go through ``inside``: a
symbolic link planted there that leads out of the store is refused before anything is written
through it; one that stays inside the store is followed."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from conveyor.core.digest import digest_bytes
from conveyor.core.errors import IntegrityError
from conveyor.store.artifacts import LocalArtifactStore

if TYPE_CHECKING:
    from pathlib import Path

# Above the small-file threshold (8 MiB): stored through staging/, its size marked in sizes/.
LARGE = 9 * 1024 * 1024 + 321


def _data(seed: int) -> bytes:
    block = bytes((i * 7 + seed) % 251 for i in range(4096))
    return (block * (LARGE // len(block) + 1))[:LARGE]


def _everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    store = LocalArtifactStore(tmp_path / "store")
    store.root.mkdir()
    return store


def test_a_sizes_folder_linked_outside_is_refused(
    store: LocalArtifactStore, outside: Path, tmp_path: Path
) -> None:
    os.symlink(outside, store.root / "sizes")
    data = _data(1)
    source = tmp_path / "source.bin"
    source.write_bytes(data)

    with pytest.raises(IntegrityError, match="leads outside") as caught:
        store.put_bytes(data)
    assert "artifact store" in str(caught.value)
    assert "sizes" in str(caught.value)
    with pytest.raises(IntegrityError, match="leads outside"):
        store.put_file(source)
    assert _everything(outside) == []
    assert not store.exists(digest_bytes(data))


def test_a_size_mark_linked_outside_is_refused(
    store: LocalArtifactStore, outside: Path, tmp_path: Path
) -> None:
    target = outside / "victim"
    target.write_bytes(b"untouched")
    before = os.stat(target).st_mtime_ns
    (store.root / "sizes").mkdir()
    os.symlink(target, store.root / "sizes" / str(LARGE))
    source = tmp_path / "source.bin"
    source.write_bytes(_data(2))

    with pytest.raises(IntegrityError, match="leads outside"):
        store.put_file(source)
    with pytest.raises(IntegrityError, match="leads outside"):
        store.put_bytes(_data(2))
    assert target.read_bytes() == b"untouched"
    assert os.stat(target).st_mtime_ns == before


def test_a_staging_folder_linked_outside_is_refused(
    store: LocalArtifactStore, outside: Path, tmp_path: Path
) -> None:
    os.symlink(outside, store.root / "staging")
    data = _data(3)
    source = tmp_path / "source.bin"
    source.write_bytes(data)

    with pytest.raises(IntegrityError, match="leads outside") as caught:
        store.put_file(source)
    assert "staging" in str(caught.value)
    assert _everything(outside) == []
    assert not store.exists(digest_bytes(data))


def test_folders_linked_inside_the_store_are_followed(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    (store.root / "elsewhere" / "staging").mkdir(parents=True)
    (store.root / "elsewhere" / "sizes").mkdir()
    os.symlink(store.root / "elsewhere" / "staging", store.root / "staging")
    os.symlink(store.root / "elsewhere" / "sizes", store.root / "sizes")
    data = _data(4)
    source = tmp_path / "source.bin"
    source.write_bytes(data)

    ref = store.put_file(source)

    assert ref.digest == digest_bytes(data)
    assert store.get_bytes(ref.digest) == data
    assert (store.root / "elsewhere" / "sizes" / str(LARGE)).is_file()
    assert list((store.root / "elsewhere" / "staging").iterdir()) == []  # renamed, not left
