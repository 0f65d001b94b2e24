"""What is particular to each artifact backend; the shared behaviour is in the conformance suite
(tests/integration/test_store_artifacts.py)."""

from __future__ import annotations

import stat
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.core.digest import digest_bytes
from conveyor.core.errors import ConfigError, InfrastructureError
from conveyor.store.artifacts import (
    ArtifactNotFoundError,
    ArtifactRef,
    LocalArtifactStore,
    MemoryArtifactStore,
    open_artifact_store,
)
from conveyor.store.artifacts.remote import FsspecArtifactStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


# ------------------------------------------------------------------ local


def test_local_layout_is_algorithm_then_two_hex_digits(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "arts")
    ref = store.put_bytes(b"layout")
    hexdigest = ref.digest.removeprefix("blake3:")
    expected = (tmp_path / "arts" / "blake3" / hexdigest[:2] / hexdigest[2:]).resolve()
    assert Path(store.location(ref.digest)) == expected
    assert expected.read_bytes() == b"layout"
    assert store.uri == str((tmp_path / "arts").resolve())


def test_local_objects_are_read_only(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    src = tmp_path / "src.bin"
    src.write_bytes(b"from a file")
    for ref in (store.put_bytes(b"from bytes"), store.put_file(src)):
        mode = Path(store.location(ref.digest)).stat().st_mode
        assert mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0


def test_local_put_file_of_a_large_file_copies_it_whole(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "arts")
    src = tmp_path / "big.bin"
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: the copy path, not the small-file path
    src.write_bytes(data)
    ref = store.put_file(src)
    assert ref == ArtifactRef(digest_bytes(data), len(data))
    assert store.get_bytes(ref.digest) == data
    stored = Path(store.location(ref.digest))
    assert not stored.stat().st_mode & 0o222  # read-only once stored


def test_local_get_file_of_a_missing_digest_creates_no_folder(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "arts")
    with pytest.raises(ArtifactNotFoundError):
        store.get_file("blake3:" + "1" * 64, tmp_path / "out" / "x.bin")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ choosing a backend


@pytest.mark.parametrize(
    ("uri", "cls"),
    [
        ("{tmp}/arts", LocalArtifactStore),
        ("file://{tmp}/arts", LocalArtifactStore),
        ("memory://", MemoryArtifactStore),
        ("memory://conveyor-tests/{uid}", FsspecArtifactStore),
    ],
)
def test_open_artifact_store_chooses_by_url(uri: str, cls: type, tmp_path: Path) -> None:
    store = open_artifact_store(uri.format(tmp=tmp_path, uid=uuid.uuid4().hex))
    assert isinstance(store, cls)


def test_local_uri_is_the_folder(tmp_path: Path) -> None:
    store = open_artifact_store(f"file://{tmp_path}/arts")
    assert store.uri == str((tmp_path / "arts").resolve())


def test_unknown_protocol_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="is not understood"):
        FsspecArtifactStore("nosuchprotocol://bucket/prefix")


@pytest.mark.parametrize(("url", "module", "extra"), [("gs://b/p", "gcsfs", "gcs")])
def test_missing_filesystem_package_names_the_package_and_the_extra(
    url: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import gcsfs` fail, installed or not.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError) as info:
        FsspecArtifactStore(url)
    assert f"({module} is missing)" in info.value.message
    assert info.value.hint == f"pip install 'conveyor[{extra}]'"


# ------------------------------------------------------------------ fsspec failure modes


@pytest.fixture
def fsspec_store() -> Iterator[FsspecArtifactStore]:
    import fsspec

    prefix = f"conveyor-tests/{uuid.uuid4().hex}"
    yield FsspecArtifactStore(f"memory://{prefix}")
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{prefix}"):
        fs.rm(f"/{prefix}", recursive=True)


class BackendDown(Exception):
    """Stands for a client error that is not an OSError (botocore's EndpointConnectionError)."""


def _raise_backend_down(*_args: Any, **_kwargs: Any) -> Any:
    raise BackendDown("could not connect to the endpoint")


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("exists", lambda s, tmp: s.exists(digest_bytes(b"x"))),
        ("exists", lambda s, tmp: s.put_bytes(b"x")),
        ("cat_file", lambda s, tmp: s.get_bytes(digest_bytes(b"x"))),
        ("open", lambda s, tmp: s.get_file(digest_bytes(b"x"), tmp / "out.bin")),
    ],
)
def test_client_errors_become_infrastructure_errors(
    fsspec_store: FsspecArtifactStore,
    method: str,
    call: Callable[[FsspecArtifactStore, Path], object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fsspec_store._fs, method, _raise_backend_down)
    with pytest.raises(InfrastructureError, match="could not connect") as info:
        call(fsspec_store, tmp_path)
    assert isinstance(info.value.__cause__, BackendDown)
    assert list(tmp_path.iterdir()) == []


def test_fsspec_get_file_interrupted_midway_leaves_no_temporary_file(
    fsspec_store: FsspecArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = fsspec_store.put_bytes(b"x" * 1000)
    real_open = fsspec_store._fs.open

    class Interrupting:
        def __init__(self, fh: Any) -> None:
            self.fh = fh
            self.reads = 0

        def __enter__(self) -> Interrupting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def read(self, size: int) -> bytes:
            self.reads += 1
            if self.reads > 1:
                raise KeyboardInterrupt
            return bytes(self.fh.read(10))

    monkeypatch.setattr(fsspec_store._fs, "open", lambda *a, **k: Interrupting(real_open(*a, **k)))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        fsspec_store.get_file(ref.digest, out / "model.bin")
    assert list(out.iterdir()) == []
