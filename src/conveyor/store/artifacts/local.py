"""Artifacts in a local folder: ``<root>/blake3/ab/cdef...``, written atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from conveyor.core.atomic import atomic_write, atomic_write_bytes, fsync_dir
from conveyor.core.digest import digest_bytes, digest_file, parse_digest
from conveyor.core.errors import (
    ConflictError,
    InfrastructureError,
    IntegrityError,
    NotFoundError,
    ValidationError,
)
from conveyor.core.paths import inside
from conveyor.store.artifacts._ingest import copy_hashed, digest_fd
from conveyor.store.artifacts._protocol import ArtifactRef
from conveyor.store.artifacts.errors import ArtifactNotFoundError, CorruptArtifactError

__all__ = ["LocalArtifactStore"]

_CHUNK = 8 * 1024 * 1024
# Below this, reading the file into memory and hashing it once is the cheapest way.
_SMALL = 8 * 1024 * 1024
# Temporary copies live inside the store, on its filesystem, so the final rename is atomic.
_STAGING = "staging"
# An empty file per size of the large objects stored: "sizes/1073741824". A file of a size never
# stored cannot be a duplicate, so it is copied and hashed in one pass; one of a known size is
# hashed first, so that a file stored again is not copied again.
_SIZES = "sizes"
_READ_ONLY = 0o444


class LocalArtifactStore:
    """A content-addressed folder on a local filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, digest: str) -> Path:
        """Where ``digest`` lives, inside the root.

        Raises:
            IntegrityError: the path goes through a symbolic link. The store never makes one;
                a planted one could lead anywhere (read: any file, even /dev/zero; written: a
                file outside the store).
        """
        algo, hexdigest = parse_digest(digest).split(":", 1)
        top = f"{self.root}/{algo}"
        fan_out = f"{top}/{hexdigest[:2]}"
        path = f"{fan_out}/{hexdigest[2:]}"
        # Three lstat calls on strings: as cheap as building the Path was before this check.
        # Not ``inside``: resolving the whole path would cost ~50 us on every read and write,
        # and the store makes no links at all, so refusing any link is the stricter rule anyway.
        for part in (top, fan_out, path):
            if os.path.islink(part):
                target = os.path.realpath(part)
                raise IntegrityError(
                    f"artifact {digest} in the artifact store at {self.uri} is reached through "
                    f"a symbolic link, {part} -> {target}; it was not read or written",
                    hint="the store never makes links: remove it, then restore the artifact "
                    "(re-run the step or re-register)",
                    details={"digest": digest, "link": part, "target": target},
                )
        return Path(path)

    def location(self, digest: str) -> str:
        return str(self._path(digest))

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def put_bytes(self, data: bytes) -> ArtifactRef:
        digest = digest_bytes(data)
        path = self._path(digest)
        if not path.is_file():
            if len(data) >= _SMALL:
                self._mark_size(len(data))
            atomic_write_bytes(path, data)
            _make_readonly(path)
        return ArtifactRef(digest, len(data))

    def put_file(self, path: Path) -> ArtifactRef:
        """Copy the file into the store, then name the copy by its own digest.

        One pass: a reflink where the filesystem can clone, else a kernel-side copy hashed as
        it lands, with its write to disk started on the way (see ``_ingest``). Hashing the
        copy rather than the source means the stored bytes always match their name.

        A file that may already be stored (an object of the same size exists) is hashed
        first instead, and not copied at all when it is.

        Raises:
            ConflictError: the file changed (size or modification time) while it was copied.
            NotFoundError: the file does not exist.
            InfrastructureError: the store cannot be written (disk full, permissions).
        """
        try:
            return self._put_file(path)
        except FileNotFoundError as exc:
            if exc.filename is not None and Path(exc.filename) == path:
                raise NotFoundError(f"cannot store {path}: it does not exist") from exc
            raise InfrastructureError(f"cannot write to artifact store {self.uri}: {exc}") from exc
        except OSError as exc:
            raise InfrastructureError(
                f"cannot store {path} in artifact store {self.uri}: {exc.strerror or exc}",
                hint="free disk space or fix the store folder's permissions, then retry",
            ) from exc

    def _put_file(self, path: Path) -> ArtifactRef:
        with path.open("rb") as src:
            before = os.fstat(src.fileno())
            size = before.st_size
            if size < _SMALL:
                return self.put_bytes(src.read())
            if self._size_mark(size).exists():
                digest = digest_fd(src.fileno(), size)
                if self.exists(digest):
                    return ArtifactRef(digest, size)
            return self._copy_in(path, src.fileno(), before)

    def _folder(self, relative: str) -> Path:
        """``relative`` under the root, through :func:`~conveyor.core.paths.inside`.

        Raises:
            IntegrityError: a symbolic link on the way leads outside the store.
        """
        try:
            return inside(self.root, relative)
        except ValidationError as exc:
            raise IntegrityError(
                f"the artifact store at {self.uri} is not intact: {exc.message}; "
                "nothing was written",
                hint="the store never makes links: remove the link, then retry",
                details={"path": relative},
            ) from exc

    def _copy_in(self, path: Path, src: int, before: os.stat_result) -> ArtifactRef:
        staging = self._folder(_STAGING)
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=staging, suffix=".part")
        tmp = Path(tmp_name)
        try:
            digest, size = copy_hashed(src, fd, before.st_size)
            if size != before.st_size or _changed(before, os.fstat(src)):
                raise ConflictError(
                    f"{path} changed while it was being stored; nothing was stored",
                    hint="store it again once nothing is writing to it",
                    details={"path": str(path)},
                )
            self._mark_size(size)
            dest = self._path(digest)
            if dest.is_file():
                # An object stored before its size was marked: the copy is dropped, never renamed.
                return ArtifactRef(digest, size)
            with contextlib.suppress(OSError):
                os.fchmod(fd, _READ_ONLY)
            os.fsync(fd)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
            return ArtifactRef(digest, size)
        finally:
            os.close(fd)
            tmp.unlink(missing_ok=True)

    def _size_mark(self, size: int) -> Path:
        # Resolved once per large file only (8 MiB or more): negligible next to hashing it.
        return self._folder(f"{_SIZES}/{size}")

    def _mark_size(self, size: int) -> None:
        # Written before the object is renamed into place, so every large object has its mark.
        # A mark without an object (a crash in between, a deleted object) costs one extra hash.
        mark = self._size_mark(size)
        if not mark.exists():
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()

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


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    # A write moves the modification time; coarse timestamps can miss one that lands in the same
    # tick as the first stat, but the digest still names exactly the bytes that were stored.
    return (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


def _make_readonly(path: Path) -> None:
    # Objects are immutable; dropping write bits keeps a stray editor or script from changing one.
    with contextlib.suppress(OSError):
        os.chmod(path, _READ_ONLY)
