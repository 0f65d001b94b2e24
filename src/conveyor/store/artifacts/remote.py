"""Artifacts on any fsspec filesystem (S3, GCS, Azure, ...), chosen by URL.

fsspec and the filesystem's own package are optional extras, imported only when a URL needs
them. Object stores have no rename, but a PUT of a whole object is atomic, and an object is
only visible once the upload completes, so readers never see a partial artifact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.core.atomic import atomic_write
from conveyor.core.digest import Hasher, digest_bytes, digest_file, parse_digest
from conveyor.core.errors import ConfigError, ConveyorError, InfrastructureError
from conveyor.store.artifacts._protocol import ArtifactRef
from conveyor.store.artifacts.errors import ArtifactNotFoundError, CorruptArtifactError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FsspecArtifactStore"]

_CHUNK = 8 * 1024 * 1024
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
        digest = digest_file(path)
        key = self._key(digest)
        try:
            if not self._fs.exists(key):
                self._fs.put_file(str(path), key)
        except _BACKEND_ERRORS as exc:
            raise InfrastructureError(f"cannot write to artifact store {self.uri}: {exc}") from exc
        return ArtifactRef(digest, path.stat().st_size)

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
