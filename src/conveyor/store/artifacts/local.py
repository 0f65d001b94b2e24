"""Artifacts in a local folder: ``<root>/blake3/ab/cdef...``, written atomically."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from conveyor.core.atomic import atomic_write, atomic_write_bytes, fsync_dir
from conveyor.core.digest import digest_bytes, digest_file, parse_digest
from conveyor.store.artifacts._protocol import ArtifactRef
from conveyor.store.artifacts.errors import ArtifactNotFoundError, CorruptArtifactError

__all__ = ["LocalArtifactStore"]

_CHUNK = 8 * 1024 * 1024
# Below this, reading the file into memory and hashing it once is the cheapest way.
_SMALL = 8 * 1024 * 1024
_COPY_RANGE = 1 << 30
# ioctl request number of FICLONE (linux/fs.h): a copy-on-write clone on btrfs, XFS, bcachefs.
_FICLONE = 0x40049409
# Temporary copies live inside the store, on its filesystem, so the final rename is atomic.
_STAGING = "staging"


class LocalArtifactStore:
    """A content-addressed folder on a local filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, digest: str) -> Path:
        algo, hexdigest = parse_digest(digest).split(":", 1)
        return self.root / algo / hexdigest[:2] / hexdigest[2:]

    def location(self, digest: str) -> str:
        return str(self._path(digest))

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def put_bytes(self, data: bytes) -> ArtifactRef:
        digest = digest_bytes(data)
        path = self._path(digest)
        if not path.is_file():
            atomic_write_bytes(path, data)
            _make_readonly(path)
        return ArtifactRef(digest, len(data))

    def put_file(self, path: Path) -> ArtifactRef:
        """Copy the file into the store, then name it by the digest of the copy.

        One copy (a reflink where the filesystem can clone, else a kernel-side copy) and one
        hash of the copied bytes while they are still in the page cache, on all cores. Hashing
        the copy rather than the source means the stored bytes always match their name, even
        if the source changes while it is being stored.
        """
        if path.stat().st_size < _SMALL:
            return self.put_bytes(path.read_bytes())
        staging = self.root / _STAGING
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=staging, suffix=".part")
        tmp = Path(tmp_name)
        try:
            with path.open("rb") as src, os.fdopen(fd, "wb") as out:
                _copy(src, out)
                out.flush()
                size = out.tell()
                digest = digest_file(tmp)
                dest = self._path(digest)
                if dest.is_file():
                    return ArtifactRef(digest, size)
                os.fsync(out.fileno())
            _make_readonly(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
            return ArtifactRef(digest, size)
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(digest, self.uri) from exc
        actual = digest_bytes(data)
        if actual != digest:
            raise CorruptArtifactError(digest, actual, str(path))
        return data

    def get_file(self, digest: str, dest: Path) -> Path:
        src = self._path(digest)
        if not src.is_file():
            raise ArtifactNotFoundError(digest, self.uri)
        actual = digest_file(src)
        if actual != digest:
            raise CorruptArtifactError(digest, actual, str(src))
        dest.parent.mkdir(parents=True, exist_ok=True)
        with src.open("rb") as fin, atomic_write(dest) as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
        return dest


def _copy(src: BinaryIO, out: BinaryIO) -> None:
    """Copy ``src`` to ``out``: clone if the filesystem can, else copy inside the kernel."""
    try:
        fcntl.ioctl(out.fileno(), _FICLONE, src.fileno())
        out.seek(0, os.SEEK_END)
        return
    except OSError:
        pass  # ext4, tmpfs, different filesystems: no clone, copy instead
    offset = 0
    try:
        while copied := os.copy_file_range(src.fileno(), out.fileno(), _COPY_RANGE, offset):
            offset += copied
    except OSError:
        # Filesystems or kernels without copy_file_range: copy through user space.
        src.seek(offset)
        out.seek(offset)
        shutil.copyfileobj(src, out, _CHUNK)
    out.seek(0, os.SEEK_END)


def _make_readonly(path: Path) -> None:
    # Objects are immutable; dropping write bits keeps a stray editor or script from changing one.
    with contextlib.suppress(OSError):
        os.chmod(path, 0o444)
