"""The ``ArtifactStore`` protocol that every artifact backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ArtifactRef", "ArtifactStore"]


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """What a store returns for stored bytes: their digest (the identity) and size."""

    digest: str
    size: int


@runtime_checkable
class ArtifactStore(Protocol):
    """Immutable bytes addressed by digest.

    Writing the same bytes twice stores them once. Every read verifies the digest and raises
    :class:`~conveyor.core.errors.IntegrityError` on a mismatch, so corrupt bytes are never
    returned. A write is atomic: a crash leaves either nothing or the whole object.
    """

    @property
    def uri(self) -> str:
        """Where the store lives, as configured (a folder or an fsspec URL)."""

    def put_bytes(self, data: bytes) -> ArtifactRef:
        """Store ``data``; returns its reference (no copy if already stored)."""

    def put_file(self, path: Path) -> ArtifactRef:
        """Store a file's content, without reading it into memory at once."""

    def get_bytes(self, digest: str) -> bytes:
        """The verified bytes of ``digest``; raises NotFoundError or IntegrityError."""

    def get_file(self, digest: str, dest: Path) -> Path:
        """Write the verified bytes of ``digest`` to ``dest`` atomically; returns ``dest``."""

    def exists(self, digest: str) -> bool:
        """Whether ``digest`` is stored (its bytes are not verified)."""

    def location(self, digest: str) -> str:
        """Where the bytes of ``digest`` live (a path or URL), for the metadata row."""
