"""Errors of the artifact store.

NotFoundError
└── ArtifactNotFoundError     no object with that digest
IntegrityError
└── CorruptArtifactError      the stored bytes hash to another digest
"""

from __future__ import annotations

from conveyor.core.errors import IntegrityError, NotFoundError

__all__ = ["ArtifactNotFoundError", "CorruptArtifactError"]


class ArtifactNotFoundError(NotFoundError):
    def __init__(self, digest: str, uri: str) -> None:
        super().__init__(
            f"artifact {digest} is not in the artifact store at {uri}",
            hint="check that CONVEYOR_ARTIFACTS or `artifacts:` points to the right store",
        )


class CorruptArtifactError(IntegrityError):
    def __init__(self, digest: str, actual: str, where: str) -> None:
        super().__init__(
            f"artifact {digest} is corrupt: its bytes at {where} hash to {actual}",
            hint="restore it from a backup or re-create it (re-run the step or re-register)",
            details={"digest": digest, "actual": actual, "location": where},
        )
