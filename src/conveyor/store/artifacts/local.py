"""Artifacts in a local folder: ``<root>/blake3/ab/cdef...``, written atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import TYPE_CHECKING

from conveyor.core.atomic import atomic_write, atomic_write_bytes
from conveyor.core.digest import Hasher, digest_bytes, digest_file, parse_digest
from conveyor.store.artifacts._protocol import ArtifactRef
from conveyor.store.artifacts.errors import ArtifactNotFoundError, CorruptArtifactError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["LocalArtifactStore"]

_CHUNK = 4 * 1024 * 1024


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
        size = path.stat().st_size
        digest = digest_file(path)
        dest = self._path(digest)
        if dest.is_file():
            return ArtifactRef(digest, size)
        # Copy while hashing again, so a file changed between the hash and the copy can never
        # be stored under the wrong digest.
        hasher = Hasher()
        with path.open("rb") as src, atomic_write(dest) as out:
            while chunk := src.read(_CHUNK):
                hasher.update(chunk)
                out.write(chunk)
            if hasher.hexdigest() != digest:
                raise CorruptArtifactError(
                    digest, hasher.hexdigest(), f"{path} (changed while stored)"
                )
        _make_readonly(dest)
        return ArtifactRef(digest, size)

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


def _make_readonly(path: Path) -> None:
    # Objects are immutable; dropping write bits keeps a stray editor or script from changing one.
    with contextlib.suppress(OSError):
        os.chmod(path, 0o444)
