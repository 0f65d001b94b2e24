"""An in-memory artifact store, for tests and throwaway sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.core.atomic import atomic_write_bytes
from conveyor.core.digest import digest_bytes, parse_digest
from conveyor.store.artifacts._protocol import ArtifactRef
from conveyor.store.artifacts.errors import ArtifactNotFoundError, CorruptArtifactError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MemoryArtifactStore"]


class MemoryArtifactStore:
    """Artifacts in a dict; lost when the process ends."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    @property
    def uri(self) -> str:
        return "memory://"

    def location(self, digest: str) -> str:
        return f"memory://{parse_digest(digest)}"

    def exists(self, digest: str) -> bool:
        return parse_digest(digest) in self.objects

    def put_bytes(self, data: bytes) -> ArtifactRef:
        digest = digest_bytes(data)
        self.objects.setdefault(digest, bytes(data))
        return ArtifactRef(digest, len(data))

    def put_file(self, path: Path) -> ArtifactRef:
        return self.put_bytes(path.read_bytes())

    def get_bytes(self, digest: str) -> bytes:
        try:
            data = self.objects[parse_digest(digest)]
        except KeyError as exc:
            raise ArtifactNotFoundError(digest, self.uri) from exc
        actual = digest_bytes(data)
        if actual != digest:
            raise CorruptArtifactError(digest, actual, self.location(digest))
        return data

    def get_file(self, digest: str, dest: Path) -> Path:
        atomic_write_bytes(dest, self.get_bytes(digest))
        return dest
