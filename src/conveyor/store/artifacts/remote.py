"""Artifacts on any fsspec filesystem (S3, GCS, Azure, ...), chosen by URL.

fsspec and the filesystem's own package are optional extras, imported only when a URL needs
them. Object stores have no rename, but a PUT of a whole object is atomic, and an object is
only visible once the upload completes, so readers never see a partial artifact.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from conveyor.core.digest import Hasher, digest_bytes, digest_file, parse_digest
from conveyor.core.errors import ConfigError, InfrastructureError
from conveyor.store.artifacts._protocol import ArtifactRef
from conveyor.store.artifacts.errors import ArtifactNotFoundError, CorruptArtifactError

__all__ = ["FsspecArtifactStore"]

_CHUNK = 8 * 1024 * 1024
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
            raise ConfigError(
                f"artifact store {url} needs the '{protocol}' filesystem ({exc.name} is missing)",
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
        try:
            return bool(self._fs.exists(self._key(digest)))
        except OSError as exc:
            raise InfrastructureError(f"artifact store {self.uri} is unavailable: {exc}") from exc

    def put_bytes(self, data: bytes) -> ArtifactRef:
        digest = digest_bytes(data)
        key = self._key(digest)
        try:
            if not self._fs.exists(key):
                self._fs.pipe_file(key, data)
        except OSError as exc:
            raise InfrastructureError(f"cannot write to artifact store {self.uri}: {exc}") from exc
        return ArtifactRef(digest, len(data))

    def put_file(self, path: Path) -> ArtifactRef:
        digest = digest_file(path)
        key = self._key(digest)
        try:
            if not self._fs.exists(key):
                self._fs.put_file(str(path), key)
        except OSError as exc:
            raise InfrastructureError(f"cannot write to artifact store {self.uri}: {exc}") from exc
        return ArtifactRef(digest, path.stat().st_size)

    def get_bytes(self, digest: str) -> bytes:
        key = self._key(digest)
        try:
            data: bytes = self._fs.cat_file(key)
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(digest, self.uri) from exc
        except OSError as exc:
            raise InfrastructureError(f"cannot read from artifact store {self.uri}: {exc}") from exc
        actual = digest_bytes(data)
        if actual != digest:
            raise CorruptArtifactError(digest, actual, self.location(digest))
        return data

    def get_file(self, digest: str, dest: Path) -> Path:
        key = self._key(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        hasher = Hasher()
        with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
            tmp_path = Path(tmp.name)
            try:
                with self._fs.open(key, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        hasher.update(chunk)
                        tmp.write(chunk)
            except FileNotFoundError as exc:
                tmp_path.unlink(missing_ok=True)
                raise ArtifactNotFoundError(digest, self.uri) from exc
            except OSError as exc:
                tmp_path.unlink(missing_ok=True)
                raise InfrastructureError(
                    f"cannot read from artifact store {self.uri}: {exc}"
                ) from exc
        if hasher.hexdigest() != digest:
            tmp_path.unlink(missing_ok=True)
            raise CorruptArtifactError(digest, hasher.hexdigest(), self.location(digest))
        tmp_path.replace(dest)
        return dest
