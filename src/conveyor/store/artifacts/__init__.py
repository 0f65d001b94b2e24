"""Content-addressed, deduplicated, verified storage of bytes: local folder, memory or fsspec."""

from __future__ import annotations

from pathlib import Path

from conveyor.store.artifacts._protocol import ArtifactRef, ArtifactStore
from conveyor.store.artifacts.errors import ArtifactNotFoundError, CorruptArtifactError
from conveyor.store.artifacts.local import LocalArtifactStore
from conveyor.store.artifacts.memory import MemoryArtifactStore

__all__ = [
    "ArtifactNotFoundError",
    "ArtifactRef",
    "ArtifactStore",
    "CorruptArtifactError",
    "LocalArtifactStore",
    "MemoryArtifactStore",
    "open_artifact_store",
]


def open_artifact_store(uri: str) -> ArtifactStore:
    """The artifact store at ``uri``: a folder path, ``file://``, ``memory://`` or an fsspec URL."""
    if uri == "memory://":
        return MemoryArtifactStore()
    if "://" not in uri or uri.startswith("file://"):
        return LocalArtifactStore(Path(uri.removeprefix("file://")))
    from conveyor.store.artifacts.remote import FsspecArtifactStore

    return FsspecArtifactStore(uri)
