"""``LocalArtifactStore.put_file`` of large files: one pass, a digest of the stored bytes, dedup
without a copy, and every fallback (no reflink, no ``copy_file_range``, no ``sendfile``)."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
import threading
from pathlib import Path

import blake3
import pytest

from conveyor.core.digest import digest_bytes
from conveyor.core.errors import ConflictError, InfrastructureError, NotFoundError
from conveyor.store.artifacts import ArtifactRef, LocalArtifactStore, _ingest
from conveyor.store.artifacts import local as local_mod

MIB = 1024 * 1024
# Above the small-file threshold (8 MiB), not a multiple of the chunk size.
LARGE = 9 * MIB + 12345


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "arts")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Several chunks per test file, so chunk boundaries are crossed.
    monkeypatch.setattr(_ingest, "CHUNK", 2 * MIB + 4096)


def _data(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 7 + seed) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _stored_files(store: LocalArtifactStore) -> list[Path]:
    return sorted(p for p in (store.root / "blake3").rglob("*") if p.is_file())


def _staging(store: LocalArtifactStore) -> list[Path]:
    staging = store.root / "staging"
    return list(staging.iterdir()) if staging.exists() else []


def _assert_named_by_content(store: LocalArtifactStore) -> None:
    for obj in _stored_files(store):
        name = "blake3:" + obj.parent.name + obj.name
        assert digest_bytes(obj.read_bytes()) == name


def _no_hash_thread_left() -> bool:
    return not any(t.name == "conveyor-hash" for t in threading.enumerate())


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    "size",
    [0, 1, 8 * MIB - 1, 8 * MIB, LARGE, 3 * (2 * MIB + 4096)],
    ids=["empty", "1B", "below-threshold", "threshold", "large", "whole-chunks"],
)
def test_put_file_stores_every_size_whole(
    store: LocalArtifactStore, tmp_path: Path, size: int
) -> None:
    data = _data(size)
    ref = store.put_file(_write(tmp_path / "data.bin", data))
    assert ref == ArtifactRef(digest_bytes(data), size)
    assert store.get_bytes(ref.digest) == data
    assert not Path(store.location(ref.digest)).stat().st_mode & 0o222
    assert _staging(store) == []


# ------------------------------------------------------------------ digest of what is stored


def test_a_source_changed_under_the_copy_is_stored_under_the_digest_of_what_was_stored(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worst case: the source changes half-way and its modification time is put back, so
    # nothing can tell. The stored bytes are then a mix, but still named by their own digest.
    original = _data(LARGE)
    src = _write(tmp_path / "data.bin", original)
    stat = src.stat()
    real = _ingest._copy_file_range
    calls = []

    def copy_then_edit_the_source(s: int, d: int, offset: int, count: int) -> int:
        n = real(s, d, offset, count)
        calls.append(offset)
        if len(calls) == 1:
            with src.open("r+b") as fh:
                fh.seek(LARGE - 10)
                fh.write(b"X" * 10)
            os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return n

    monkeypatch.setattr(_ingest, "_copy_file_range", copy_then_edit_the_source)
    ref = store.put_file(src)

    stored = Path(store.location(ref.digest)).read_bytes()
    assert ref.digest == digest_bytes(stored)
    assert stored == original[:-10] + b"X" * 10
    assert len(calls) > 1
    _assert_named_by_content(store)


def test_a_byte_altered_in_the_copy_changes_the_digest(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever lands in the store (here: one byte flipped on the way) is what gets hashed.
    original = _data(LARGE)
    src = _write(tmp_path / "data.bin", original)
    real = _ingest._copy_file_range

    def copy_and_flip_a_byte(s: int, d: int, offset: int, count: int) -> int:
        n = real(s, d, offset, count)
        if offset == 0:
            os.pwrite(d, b"\xff", 100)
        return n

    monkeypatch.setattr(_ingest, "_copy_file_range", copy_and_flip_a_byte)
    ref = store.put_file(src)

    altered = original[:100] + b"\xff" + original[101:]
    assert ref.digest == digest_bytes(altered) != digest_bytes(original)
    assert store.get_bytes(ref.digest) == altered
    _assert_named_by_content(store)


@pytest.mark.parametrize("change", ["append", "truncate", "rewrite"])
def test_a_source_that_visibly_changes_while_copied_is_refused(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    src = _write(tmp_path / "data.bin", _data(LARGE))
    real = _ingest._copy_file_range

    def copy_while_written(s: int, d: int, offset: int, count: int) -> int:
        if offset == 0:
            if change == "append":
                with src.open("ab") as fh:
                    fh.write(b"more rows")
            elif change == "truncate":
                os.truncate(src, 3 * MIB)
            else:
                os.utime(src, ns=(0, 1_000_000_000))
        return real(s, d, offset, count)

    monkeypatch.setattr(_ingest, "_copy_file_range", copy_while_written)
    with pytest.raises(ConflictError, match="changed while it was being stored") as info:
        store.put_file(src)
    assert info.value.hint == "store it again once nothing is writing to it"
    assert _stored_files(store) == []
    assert _staging(store) == []


def test_a_copy_that_fails_half_way_leaves_nothing(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "data.bin", _data(LARGE))
    real = _ingest._copy_file_range

    def fail_after_one_chunk(s: int, d: int, offset: int, count: int) -> int:
        if offset > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(s, d, offset, count)

    monkeypatch.setattr(_ingest, "_copy_file_range", fail_after_one_chunk)
    with pytest.raises(InfrastructureError, match="No space left"):
        store.put_file(src)
    assert _stored_files(store) == []
    assert _staging(store) == []
    assert _no_hash_thread_left()


def test_an_error_in_the_hashing_thread_reaches_the_caller(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "data.bin", _data(LARGE))

    class BrokenHasher:
        def update(self, _data: object) -> None:
            raise MemoryError("no memory for the hash")

    monkeypatch.setattr(blake3, "blake3", lambda *_a, **_k: BrokenHasher())
    with pytest.raises(MemoryError, match="no memory for the hash"):
        store.put_file(src)
    assert _stored_files(store) == []
    assert _staging(store) == []
    assert _no_hash_thread_left()


# ------------------------------------------------------------------ fallbacks


def test_without_reflinks_the_file_is_copied(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ext4 and tmpfs answer FICLONE with EOPNOTSUPP, another filesystem with EXDEV.
    def no_clone(*_args: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(fcntl, "ioctl", no_clone)
    data = _data(LARGE)
    assert store.put_file(_write(tmp_path / "data.bin", data)).digest == digest_bytes(data)
    assert store.get_bytes(digest_bytes(data)) == data


def test_a_reflink_is_hashed_as_stored(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On btrfs or XFS the clone replaces the copy; simulate one, with content of its own, to
    # see that the clone (not the source) is what gets hashed and no copy follows it.
    cloned = _data(LARGE, seed=5)

    def fake_clone(_src: int, dst: int) -> bool:
        os.pwrite(dst, cloned, 0)
        return True

    def no_copy(*_args: object) -> int:
        raise AssertionError("a cloned file must not be copied")

    monkeypatch.setattr(_ingest, "clone", fake_clone)
    monkeypatch.setattr(_ingest, "_copy", no_copy)
    ref = store.put_file(_write(tmp_path / "data.bin", _data(LARGE)))
    assert ref == ArtifactRef(digest_bytes(cloned), LARGE)
    assert store.get_bytes(ref.digest) == cloned


def test_clone_answers_false_where_the_filesystem_cannot(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.bin", b"abc")
    with src.open("rb") as fin, (tmp_path / "b.bin").open("wb") as fout:
        cloned = _ingest.clone(fin.fileno(), fout.fileno())
    # Either outcome is right for the filesystem under tmp_path; it must not raise.
    assert (tmp_path / "b.bin").read_bytes() == (b"abc" if cloned else b"")


@pytest.mark.parametrize("unsupported", [["copy_file_range"], ["copy_file_range", "sendfile"]])
def test_without_kernel_copies_it_falls_back_down_to_user_space(
    store: LocalArtifactStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unsupported: list[str],
) -> None:
    # copy_file_range between filesystems is EXDEV; sendfile is EINVAL where splice is missing.
    def refuse(*_args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    for name in unsupported:
        monkeypatch.setattr(os, name, refuse)
    data = _data(LARGE)
    ref = store.put_file(_write(tmp_path / "data.bin", data))
    assert ref == ArtifactRef(digest_bytes(data), LARGE)
    assert store.get_bytes(ref.digest) == data


def test_a_source_on_another_filesystem_is_copied(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the temporary folder's")
    data = _data(LARGE)
    src = shm / f"conveyor-test-{os.getpid()}.bin"
    try:
        ref = store.put_file(_write(src, data))
    finally:
        src.unlink()
    assert store.get_bytes(ref.digest) == data


def test_without_writeback_hints_the_file_is_still_stored(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not Linux (or no sync_file_range in libc): only the final fsync makes the copy durable.
    monkeypatch.setattr(_ingest, "_sync_file_range", lambda: None)
    data = _data(LARGE)
    assert store.put_file(_write(tmp_path / "data.bin", data)).digest == digest_bytes(data)


def test_the_writeback_hint_is_found_on_linux() -> None:
    hint = _ingest._sync_file_range()
    assert (hint is not None) == os.uname().sysname.startswith("Linux")


# ------------------------------------------------------------------ dedup


def _forbid_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_write(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a stored file must not be copied again")

    monkeypatch.setattr(tempfile, "mkstemp", no_write)
    monkeypatch.setattr(local_mod, "copy_hashed", no_write)


def test_a_file_stored_again_is_not_copied(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "data.bin", _data(LARGE))
    first = store.put_file(src)
    obj = Path(store.location(first.digest))
    before = obj.stat()

    _forbid_writes(monkeypatch)
    assert store.put_file(src) == first
    assert store.put_file(_write(tmp_path / "same-bytes.bin", _data(LARGE))) == first

    after = obj.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert _staging(store) == []


def test_a_new_file_of_a_stored_size_is_hashed_first_and_stored(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    a, b = _data(LARGE, seed=1), _data(LARGE, seed=2)
    ref_a = store.put_file(_write(tmp_path / "a.bin", a))
    ref_b = store.put_file(_write(tmp_path / "b.bin", b))
    assert ref_a != ref_b
    assert store.get_bytes(ref_b.digest) == b
    _assert_named_by_content(store)


def test_an_object_stored_without_its_size_mark_is_found_and_not_stored_twice(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Objects written before the size marks existed have none: the file is copied to learn its
    # digest, the copy dropped, and the mark added for next time.
    data = _data(LARGE)
    ref = store.put_bytes(data)
    shutil.rmtree(store.root / "sizes")
    obj = Path(store.location(ref.digest))
    before = obj.stat()
    src = _write(tmp_path / "data.bin", data)

    assert store.put_file(src) == ref
    assert (obj.stat().st_ino, obj.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert _staging(store) == []
    assert _stored_files(store) == [obj]

    _forbid_writes(monkeypatch)
    assert store.put_file(src) == ref


def test_large_bytes_are_marked_too(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data(LARGE)
    ref = store.put_bytes(data)
    _forbid_writes(monkeypatch)
    assert store.put_file(_write(tmp_path / "data.bin", data)) == ref


def test_a_size_mark_without_an_object_costs_only_a_hash(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    data = _data(LARGE)
    (store.root / "sizes").mkdir(parents=True)
    (store.root / "sizes" / str(LARGE)).touch()
    ref = store.put_file(_write(tmp_path / "data.bin", data))
    assert store.get_bytes(ref.digest) == data


@pytest.mark.parametrize("size", [0, 1, 4097])
def test_copy_hashed_of_tiny_files(tmp_path: Path, size: int) -> None:
    # put_file sends these through put_bytes; the helper must still be right on its own.
    data = _data(size)
    src = _write(tmp_path / "src.bin", data)
    with src.open("rb") as fin, (tmp_path / "dst.bin").open("w+b") as fout:
        result = _ingest.copy_hashed(fin.fileno(), fout.fileno(), size)
    assert result == (digest_bytes(data), size)
    assert (tmp_path / "dst.bin").read_bytes() == data


def test_storing_a_missing_file_names_it(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "arts")
    with pytest.raises(NotFoundError, match=r"nope\.bin: it does not exist"):
        store.put_file(tmp_path / "nope.bin")
