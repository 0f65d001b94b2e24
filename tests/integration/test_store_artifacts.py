"""The ArtifactStore conformance suite: every backend stores, dedups, verifies and fails alike.

Backends: a local folder, memory, and the fsspec store over fsspec's ``memory://`` filesystem
and over a real S3 API (moto's server on loopback, reached through s3fs).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.core.digest import digest_bytes, digest_file
from conveyor.core.errors import (
    ExitCode,
    InfrastructureError,
    IntegrityError,
    NotFoundError,
    ValidationError,
)
from conveyor.store.artifacts import (
    ArtifactNotFoundError,
    ArtifactStore,
    CorruptArtifactError,
    LocalArtifactStore,
    MemoryArtifactStore,
    open_artifact_store,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

MIB = 1024 * 1024
BUCKET = "conveyor-test"
MISSING = "blake3:" + "0" * 64


# ------------------------------------------------------------------ the S3 API (moto server)


@dataclass(frozen=True)
class S3:
    endpoint: str
    client: Any  # boto3's S3 client

    @property
    def options(self) -> dict[str, Any]:
        """fsspec storage options for s3fs, pointing at this endpoint with moto's fake keys."""
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def key_of(self, location: str) -> str:
        return location.removeprefix(f"s3://{BUCKET}/")


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """A moto S3 server on a free loopback port, with one versioned bucket.

    Versioning lets the dedup test count PUTs: every write of a key adds a version.
    """
    server_mod = pytest.importorskip("moto.server", reason="needs moto[server] (dev extra)")
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs", reason="needs s3fs (the s3 extra)")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield S3(endpoint, client)
        client.close()
    finally:
        server.stop()


# ------------------------------------------------------------------ backends


class Same:
    """Equal only to a token wrapping the very same object (a rewrite makes a new one)."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.obj is self.obj

    __hash__ = None  # type: ignore[assignment]


@dataclass
class Backend:
    store: ArtifactStore
    #: Replace the stored bytes of a digest behind the store's back.
    overwrite: Callable[[str, bytes], None]
    #: A token that changes whenever the object of a digest is physically written again.
    write_token: Callable[[str], object]


def _local(tmp_path: Path) -> Backend:
    store = LocalArtifactStore(tmp_path / "store")

    def overwrite(digest: str, data: bytes) -> None:
        path = Path(store.location(digest))
        path.chmod(0o644)  # objects are read-only; a stray script would have to do this too
        with path.open("r+b") as fh:
            fh.write(data)
            fh.truncate()

    def write_token(digest: str) -> object:
        st = Path(store.location(digest)).stat()
        return (st.st_ino, st.st_mtime_ns)

    return Backend(store, overwrite, write_token)


def _memory() -> Backend:
    store = MemoryArtifactStore()

    def overwrite(digest: str, data: bytes) -> None:
        store.objects[digest] = data

    return Backend(store, overwrite, lambda digest: Same(store.objects[digest]))


def _fsspec_memory() -> Iterator[Backend]:
    import fsspec

    from conveyor.store.artifacts.remote import FsspecArtifactStore

    fs = fsspec.filesystem("memory")
    prefix = f"conveyor-tests/{uuid.uuid4().hex}"
    store = FsspecArtifactStore(f"memory://{prefix}")

    def path_of(digest: str) -> str:
        return store.location(digest).removeprefix("memory://")

    def overwrite(digest: str, data: bytes) -> None:
        fs.pipe_file(path_of(digest), data)

    yield Backend(store, overwrite, lambda digest: Same(fs.store[path_of(digest)]))
    # fsspec's memory filesystem is one global dict: free what this test put there.
    if fs.exists(f"/{prefix}"):
        fs.rm(f"/{prefix}", recursive=True)


def _s3(s3: S3) -> Backend:
    from conveyor.store.artifacts.remote import FsspecArtifactStore

    store = FsspecArtifactStore(f"s3://{BUCKET}/{uuid.uuid4().hex}", **s3.options)

    def overwrite(digest: str, data: bytes) -> None:
        s3.client.put_object(Bucket=BUCKET, Key=s3.key_of(store.location(digest)), Body=data)

    def write_token(digest: str) -> object:
        key = s3.key_of(store.location(digest))
        versions = s3.client.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
        return sorted(v["VersionId"] for v in versions)

    return Backend(store, overwrite, write_token)


@pytest.fixture(params=["local", "memory", "fsspec-memory", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield _local(tmp_path)
    elif request.param == "memory":
        yield _memory()
    elif request.param == "fsspec-memory":
        yield from _fsspec_memory()
    else:
        yield _s3(request.getfixturevalue("s3"))


@pytest.fixture
def store(backend: Backend) -> ArtifactStore:
    return backend.store


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty folder for get_file destinations, so leftovers can be seen."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def flipped(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


# ------------------------------------------------------------------ the suite


def test_implements_the_protocol(store: ArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)
    assert isinstance(store.uri, str)
    assert store.uri


@pytest.mark.parametrize("data", [b"", b"x", os.urandom(MIB + 3)], ids=["empty", "1B", "1MiB"])
def test_put_and_get_bytes(store: ArtifactStore, data: bytes) -> None:
    ref = store.put_bytes(data)
    assert ref.digest == digest_bytes(data)
    assert ref.size == len(data)
    assert store.exists(ref.digest)
    assert store.get_bytes(ref.digest) == data


def test_put_and_get_file(store: ArtifactStore, tmp_path: Path, out: Path) -> None:
    src = tmp_path / "model.skops"
    src.write_bytes(b"weights" * 1000)
    ref = store.put_file(src)
    assert (ref.digest, ref.size) == (digest_file(src), 7000)

    dest = out / "nested" / "folder" / "model.skops"
    assert store.get_file(ref.digest, dest) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["model.skops"]


def test_bytes_and_files_share_one_address_space(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n1,2\n")
    assert store.put_file(src) == store.put_bytes(b"a,b\n1,2\n")
    assert store.location(digest_bytes(b"a,b\n1,2\n")) != store.location(digest_bytes(b"other"))


def test_location_names_the_digest(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"located")
    assert ref.digest.removeprefix("blake3:")[2:] in store.location(ref.digest)


def test_second_put_of_the_same_bytes_does_not_rewrite(backend: Backend, tmp_path: Path) -> None:
    data = b"the same model, trained twice"
    ref = backend.store.put_bytes(data)
    before = backend.write_token(ref.digest)
    # An equal but distinct object, as a second training run would produce.
    assert backend.store.put_bytes(bytes(bytearray(data))) == ref
    src = tmp_path / "same.bin"
    src.write_bytes(data)
    assert backend.store.put_file(src) == ref
    assert backend.write_token(ref.digest) == before


def test_write_token_sees_a_rewrite(backend: Backend) -> None:
    # Guards the test above: the token must change when the object really is written again.
    ref = backend.store.put_bytes(b"rewritten")
    before = backend.write_token(ref.digest)
    backend.overwrite(ref.digest, bytes(bytearray(b"rewritten")))
    assert backend.write_token(ref.digest) != before


def test_exists(store: ArtifactStore) -> None:
    assert not store.exists(MISSING)
    ref = store.put_bytes(b"now it exists")
    assert store.exists(ref.digest)
    assert not store.exists(MISSING)


def test_get_file_replaces_an_existing_file_whole(store: ArtifactStore, out: Path) -> None:
    ref = store.put_bytes(b"new content")
    dest = out / "model.bin"
    dest.write_bytes(b"an older, longer file that was here before")
    store.get_file(ref.digest, dest)
    assert dest.read_bytes() == b"new content"
    assert [p.name for p in out.iterdir()] == ["model.bin"]


def test_missing_digest_is_not_found(store: ArtifactStore, out: Path) -> None:
    with pytest.raises(ArtifactNotFoundError) as info:
        store.get_bytes(MISSING)
    err = info.value
    assert isinstance(err, NotFoundError)
    assert (err.exit_code, err.http_status) == (ExitCode.USAGE, 404)
    assert MISSING in err.message
    assert store.uri in err.message

    with pytest.raises(ArtifactNotFoundError):
        store.get_file(MISSING, out / "model.bin")
    assert list(out.iterdir()) == []


def test_corrupt_object_is_never_returned(backend: Backend, out: Path) -> None:
    data = b"precious model weights" * 100
    ref = backend.store.put_bytes(data)
    backend.overwrite(ref.digest, flipped(data))

    with pytest.raises(CorruptArtifactError) as info:
        backend.store.get_bytes(ref.digest)
    err = info.value
    assert isinstance(err, IntegrityError)
    assert (err.exit_code, err.http_status) == (ExitCode.INFRASTRUCTURE, 503)
    assert err.details["digest"] == ref.digest
    assert err.details["actual"] == digest_bytes(flipped(data))
    assert ref.digest in err.message

    with pytest.raises(CorruptArtifactError):
        backend.store.get_file(ref.digest, out / "new.bin")
    assert list(out.iterdir()) == []

    existing = out / "existing.bin"
    existing.write_bytes(b"keep me")
    with pytest.raises(CorruptArtifactError):
        backend.store.get_file(ref.digest, existing)
    assert existing.read_bytes() == b"keep me"
    assert [p.name for p in out.iterdir()] == ["existing.bin"]


def test_truncated_object_is_corrupt(backend: Backend) -> None:
    data = b"0123456789" * 50
    ref = backend.store.put_bytes(data)
    backend.overwrite(ref.digest, data[:-1])
    with pytest.raises(CorruptArtifactError):
        backend.store.get_bytes(ref.digest)


@pytest.mark.parametrize(
    "bad",
    ["", "blake3:abc", "sha256:" + "a" * 64, "blake3:" + "A" * 64, "blake3:../../" + "a" * 58],
)
def test_malformed_digest_is_a_validation_error(store: ArtifactStore, bad: str, out: Path) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.exists(bad),
        lambda: store.get_bytes(bad),
        lambda: store.get_file(bad, out / "x"),
        lambda: store.location(bad),
    ]
    for call in calls:
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.http_status == 422
    assert list(out.iterdir()) == []


def test_put_file_of_20_mib(store: ArtifactStore, tmp_path: Path, out: Path) -> None:
    data = os.urandom(20 * MIB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)

    ref = store.put_file(src)

    assert (ref.digest, ref.size) == (digest_bytes(data), 20 * MIB)
    assert store.exists(ref.digest)
    dest = store.get_file(ref.digest, out / "big.bin")
    assert dest.stat().st_size == 20 * MIB
    assert digest_file(dest) == ref.digest
    assert store.get_bytes(ref.digest) == data


# ------------------------------------------------------------------ S3 only


def test_s3_store_from_a_url_and_aws_environment_variables(
    s3: S3, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # open_artifact_store (what `artifacts:` and CONVEYOR_ARTIFACTS use) takes no storage
    # options, so the endpoint and keys come from the standard AWS variables.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    store = open_artifact_store(url)
    # fsspec caches filesystems by their options (none here): keep this one, which read the
    # variables above, from being handed to a later test.
    s3fs = pytest.importorskip("s3fs")
    request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)
    ref = store.put_bytes(b"via the environment")
    assert store.uri == url
    assert store.location(ref.digest).startswith(f"{url}/blake3/")
    stored = s3.client.get_object(Bucket=BUCKET, Key=s3.key_of(store.location(ref.digest)))
    assert stored["Body"].read() == b"via the environment"


def test_unreachable_s3_endpoint_is_an_infrastructure_error() -> None:
    pytest.importorskip("s3fs")
    from conveyor.store.artifacts.remote import FsspecArtifactStore

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = FsspecArtifactStore(
        f"s3://{BUCKET}/unreachable",
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
        config_kwargs={"retries": {"max_attempts": 1}},
        skip_instance_cache=True,
    )
    # botocore raises EndpointConnectionError here, which is not an OSError.
    with pytest.raises(InfrastructureError) as info:
        store.put_bytes(b"x")
    assert info.value.exit_code == ExitCode.INFRASTRUCTURE
    assert info.value.message.startswith(f"cannot write to artifact store {store.uri}: ")
