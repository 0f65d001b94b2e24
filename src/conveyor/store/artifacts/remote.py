"""Artifacts on any fsspec filesystem (S3, GCS, Azure, ...), chosen by URL.

fsspec and the filesystem's own package are optional extras, imported only when a URL needs
them. Object stores have no rename, but a PUT of a whole object is atomic, and an object is
only visible once the upload completes, so readers never see a partial artifact.

A file is written straight to its digest's key, never to a temporary key that is then copied
(S3 has no rename: a copy would double the traffic and leave garbage behind on a crash). That
needs the digest before the upload, so the file is hashed, then streamed up while being hashed
again: if the two digests differ, the file changed in between, and the upload is abandoned
before it completes (the multipart upload aborted, or the single PUT never sent), as the local
store refuses a file that changes while it is copied. Otherwise the bytes under a key could
differ from its name, and every later ``put`` would skip them as already stored. Files up to
one part (8 MiB) go up in one PUT; larger ones as a multipart upload of 8 MiB parts, so memory
stays at about one part whatever the file's size.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from conveyor.core.atomic import atomic_write
from conveyor.core.digest import Hasher, digest_bytes, digest_file, parse_digest
from conveyor.core.errors import (
    ConfigError,
    ConflictError,
    ConveyorError,
    InfrastructureError,
    NotFoundError,
)
from conveyor.store.artifacts._protocol import ArtifactRef
from conveyor.store.artifacts.errors import ArtifactNotFoundError, CorruptArtifactError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FsspecArtifactStore"]

_CHUNK = 8 * 1024 * 1024
#: The upload's part size: S3 takes parts of 5 MiB to 5 GiB (the last may be smaller) and at most
#: 10,000 of them, so 8 MiB parts reach 78 GiB; a larger file gets larger parts.
_PART = 8 * 1024 * 1024
_MAX_PARTS = 10_000
# What a filesystem call can raise when the store is unreachable or refuses: fsspec backends do
# not all translate their client's errors to OSError (s3fs lets botocore's
# EndpointConnectionError through), so everything that is not our own error counts.
_BACKEND_ERRORS = (Exception,)
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


class FsspecArtifactStore:
    """A content-addressed prefix on an fsspec filesystem."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        try:
            import fsspec
        except ImportError as exc:
            raise ConfigError(
                f"artifact store {url} needs fsspec",
                hint="pip install 'conveyor[fsspec]'",
            ) from exc
        protocol = url.split("://", 1)[0]
        try:
            self._fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as exc:
            extra = _EXTRAS.get(protocol, "fsspec")
            # fsspec re-raises a bare ImportError ("Please install gcsfs ..."); the module that
            # is missing is named on its cause.
            missing = exc.name or getattr(exc.__cause__, "name", None) or "a package"
            raise ConfigError(
                f"artifact store {url} needs the '{protocol}' filesystem ({missing} is missing)",
                hint=f"pip install 'conveyor[{extra}]'",
            ) from exc
        except ValueError as exc:
            raise ConfigError(f"artifact store URL {url!r} is not understood: {exc}") from exc
        self._url = url.rstrip("/")
        self._root = root.rstrip("/")

    @property
    def uri(self) -> str:
        return self._url

    def _key(self, digest: str) -> str:
        algo, hexdigest = parse_digest(digest).split(":", 1)
        return f"{self._root}/{algo}/{hexdigest[:2]}/{hexdigest[2:]}"

    def location(self, digest: str) -> str:
        protocol = self._url.split("://", 1)[0]
        return f"{protocol}://{self._key(digest)}"

    def exists(self, digest: str) -> bool:
        key = self._key(digest)
        try:
            return bool(self._fs.exists(key))
        except _BACKEND_ERRORS as exc:
            raise InfrastructureError(f"artifact store {self.uri} is unavailable: {exc}") from exc

    def put_bytes(self, data: bytes) -> ArtifactRef:
        digest = digest_bytes(data)
        key = self._key(digest)
        try:
            if not self._fs.exists(key):
                self._fs.pipe_file(key, data)
        except _BACKEND_ERRORS as exc:
            raise InfrastructureError(f"cannot write to artifact store {self.uri}: {exc}") from exc
        return ArtifactRef(digest, len(data))

    def put_file(self, path: Path) -> ArtifactRef:
        """Store a file's content at its digest's key, in one PUT or one multipart upload.

        Raises:
            ConflictError: the file changed between hashing and uploading; nothing was stored.
            NotFoundError: the file does not exist.
            InfrastructureError: the store cannot be reached or written.
        """
        try:
            size = path.stat().st_size
            digest = digest_file(path)
        except FileNotFoundError as exc:
            raise NotFoundError(f"cannot store {path}: it does not exist") from exc
        key = self._key(digest)
        try:
            if not self._fs.exists(key):
                self._upload(path, key, digest, size)
        except ConveyorError:
            raise
        except _BACKEND_ERRORS as exc:
            raise InfrastructureError(f"cannot write to artifact store {self.uri}: {exc}") from exc
        return ArtifactRef(digest, size)

    def _upload(self, path: Path, key: str, digest: str, size: int) -> None:
        part = max(_PART, -(-size // _MAX_PARTS))
        hasher = Hasher()
        sent = 0
        # Not a ``with`` block: leaving one closes the file, and closing a file being written
        # completes its upload, even when leaving on an exception.
        out = self._fs.open(key, "wb", block_size=part)
        try:
            with path.open("rb") as src:
                while chunk := src.read(part):
                    hasher.update(chunk)
                    out.write(chunk)
                    sent += len(chunk)
            if sent != size or hasher.hexdigest() != digest:
                raise ConflictError(
                    f"{path} changed while it was being stored; nothing was stored",
                    hint="store it again once nothing is writing to it",
                    details={"path": str(path)},
                )
        except BaseException:
            _abandon(out)
            self._remove_if_corrupt(key, digest)
            raise
        out.close()

    def _remove_if_corrupt(self, key: str, digest: str) -> None:
        """After an abandoned upload: a filesystem that writes in place (fsspec's memory and
        local ones) shows the partial object; remove it, unless it is whole after all (a
        concurrent put of the same bytes)."""
        with contextlib.suppress(Exception):  # already failing: that error is the one to see
            if self._fs.exists(key) and digest_bytes(self._fs.cat_file(key)) != digest:
                self._fs.rm_file(key)

    def get_bytes(self, digest: str) -> bytes:
        key = self._key(digest)
        try:
            data: bytes = self._fs.cat_file(key)
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(digest, self.uri) from exc
        except _BACKEND_ERRORS as exc:
            raise InfrastructureError(f"cannot read from artifact store {self.uri}: {exc}") from exc
        actual = digest_bytes(data)
        if actual != digest:
            raise CorruptArtifactError(digest, actual, self.location(digest))
        return data

    def get_file(self, digest: str, dest: Path) -> Path:
        key = self._key(digest)
        hasher = Hasher()
        try:
            # atomic_write fsyncs before the rename and removes its temporary file on any error,
            # so a missing, unreadable or corrupt object never leaves a partial ``dest`` behind.
            with self._fs.open(key, "rb") as src, atomic_write(dest) as out:
                while chunk := src.read(_CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                if hasher.hexdigest() != digest:
                    raise CorruptArtifactError(digest, hasher.hexdigest(), self.location(digest))
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(digest, self.uri) from exc
        except ConveyorError:
            raise
        except _BACKEND_ERRORS as exc:
            raise InfrastructureError(
                f"cannot copy artifact {digest} from {self.uri} to {dest}: {exc}"
            ) from exc
        return dest


def _abandon(out: Any) -> None:
    """Drop an upload without completing it: abort the multipart upload, forget the buffer."""
    from fsspec.spec import AbstractBufferedFile

    with contextlib.suppress(Exception):  # already failing: the first error is the one to see
        out.discard()
    if isinstance(out, AbstractBufferedFile):
        # Otherwise its __del__ closes it, which would complete the upload after all.
        out.closed = True
