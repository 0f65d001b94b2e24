"""The fsspec artifact store on a real S3 API, request by request.

The S3 API is moto's server, run as its own process on loopback with its request recorder on:
what the store sent is read back from moto's log, not from the client's side. Checked:

- a put is one PUT to the digest's key: no temporary key, no copy, no delete (and, in a
  versioned bucket, no other key ever existed under the store's prefix);
- a file larger than one part (8 MiB) goes up as one multipart upload to the digest's key;
- a corrupted object is refused on read, whole or streamed to a file;
- a file that changes between hashing and uploading is not stored, and its multipart upload is
  aborted rather than completed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conveyor.core.digest import digest_bytes, digest_file
from conveyor.core.errors import ConflictError, NotFoundError
from conveyor.store.artifacts import CorruptArtifactError
from conveyor.store.artifacts import remote as remote_module
from conveyor.store.artifacts.remote import FsspecArtifactStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MIB = 1024 * 1024
BUCKET = "conveyor-s3-requests"
START_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Request:
    method: str
    key: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Moto:
    endpoint: str
    client: Any  # boto3's S3 client

    def store(self) -> FsspecArtifactStore:
        return FsspecArtifactStore(
            f"s3://{BUCKET}/{uuid.uuid4().hex}",
            key="testing",
            secret="testing",
            client_kwargs={"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        )

    def key(self, store: FsspecArtifactStore, digest: str) -> str:
        return store.location(digest).removeprefix(f"s3://{BUCKET}/")

    def start_recording(self) -> None:
        httpx.post(f"{self.endpoint}/moto-api/recorder/reset-recording").raise_for_status()
        httpx.post(f"{self.endpoint}/moto-api/recorder/start-recording").raise_for_status()

    def recorded(self) -> list[Request]:
        """The requests to the bucket since :meth:`start_recording`, in order."""
        httpx.post(f"{self.endpoint}/moto-api/recorder/stop-recording").raise_for_status()
        text = httpx.get(f"{self.endpoint}/moto-api/recorder/download-recording").text
        requests = []
        for line in text.splitlines():
            entry = json.loads(line)
            url = urlsplit(entry["url"])
            bucket, _, key = url.path.lstrip("/").partition("/")
            if bucket != BUCKET:
                continue
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            requests.append(Request(entry["method"], key, parse_qs(url.query, True), headers))
        return requests

    def versions(self, prefix: str) -> tuple[list[str], list[str]]:
        """Every version of every key ever written under ``prefix``, and every delete marker."""
        listing = self.client.list_object_versions(Bucket=BUCKET, Prefix=prefix)
        return (
            sorted(v["Key"] for v in listing.get("Versions", [])),
            sorted(m["Key"] for m in listing.get("DeleteMarkers", [])),
        )

    def pending_uploads(self) -> list[str]:
        return [
            u["Key"] for u in self.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        ]


def _writes(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.method in ("PUT", "POST", "DELETE")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    boto3 = pytest.importorskip("boto3")
    folder = tmp_path_factory.mktemp("moto")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (folder / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        cwd=folder,
        env={**os.environ, "MOTO_RECORDER_FILEPATH": str(folder / "recording.jsonl")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(proc, endpoint, folder / "moto.log")
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        # Versioning keeps a trace of every key ever written, even one deleted again.
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield Moto(endpoint, client)
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _wait_ready(proc: subprocess.Popen[bytes], endpoint: str, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            httpx.get(f"{endpoint}/moto-api/data.json", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"moto server not ready within {START_DEADLINE_S} s:\n{log.read_text()}")


@pytest.fixture(autouse=True)
def _fresh_s3fs_instances() -> Iterator[None]:
    yield
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def _prefix(store: FsspecArtifactStore) -> str:
    return store.uri.removeprefix(f"s3://{BUCKET}/")


# ------------------------------------------------------------------ one PUT to the digest key


@pytest.mark.parametrize("how", ["bytes", "file"])
def test_a_put_is_a_single_put_to_the_digest_key(moto: Moto, tmp_path: Path, how: str) -> None:
    store = moto.store()
    data = os.urandom(MIB)
    src = tmp_path / "model.bin"
    src.write_bytes(data)

    moto.start_recording()
    ref = store.put_bytes(data) if how == "bytes" else store.put_file(src)
    requests = moto.recorded()

    key = moto.key(store, ref.digest)
    assert ref.digest == digest_bytes(data)
    writes = _writes(requests)
    assert [(r.method, r.key, r.query) for r in writes] == [("PUT", key, {})]
    assert "x-amz-copy-source" not in writes[0].headers  # a PUT of the bytes, not a copy
    assert int(writes[0].headers["content-length"]) == MIB
    assert {r.key for r in requests} <= {key, _prefix(store), ""}  # nothing else was touched
    # In the versioned bucket: one version of one key ever, no delete marker.
    assert moto.versions(_prefix(store)) == ([key], [])
    etag = moto.client.head_object(Bucket=BUCKET, Key=key)["ETag"]
    assert "-" not in etag  # a single-part object


def test_a_second_put_of_the_same_bytes_writes_nothing(moto: Moto, tmp_path: Path) -> None:
    store = moto.store()
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(MIB))
    store.put_file(src)

    moto.start_recording()
    store.put_file(src)
    store.put_bytes(src.read_bytes())
    requests = moto.recorded()

    assert _writes(requests) == []
    assert requests  # it did ask (HEAD): the recording is on


# ------------------------------------------------------------------ multipart


def test_a_20_mib_file_is_one_multipart_upload_to_the_digest_key(
    moto: Moto, tmp_path: Path
) -> None:
    store = moto.store()
    data = os.urandom(20 * MIB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)

    moto.start_recording()
    ref = store.put_file(src)
    requests = moto.recorded()

    key = moto.key(store, ref.digest)
    writes = _writes(requests)
    assert {r.key for r in writes} == {key}
    create, *parts, complete = writes
    assert (create.method, set(create.query)) == ("POST", {"uploads"})
    assert [(r.method, r.query["partNumber"]) for r in parts] == [
        ("PUT", ["1"]),
        ("PUT", ["2"]),
        ("PUT", ["3"]),
    ]
    assert [int(r.headers["content-length"]) for r in parts] == [8 * MIB, 8 * MIB, 4 * MIB]
    assert (complete.method, set(complete.query)) == ("POST", {"uploadId"})
    assert not any("x-amz-copy-source" in r.headers for r in writes)
    assert moto.client.head_object(Bucket=BUCKET, Key=key)["ETag"].endswith('-3"')
    assert moto.versions(_prefix(store)) == ([key], [])
    assert moto.pending_uploads() == []
    assert store.get_bytes(ref.digest) == data


# ------------------------------------------------------------------ verification on read


@pytest.mark.parametrize("size", [MIB, 20 * MIB])
def test_a_corrupted_object_is_refused_on_read(moto: Moto, tmp_path: Path, size: int) -> None:
    store = moto.store()
    data = os.urandom(size)
    ref = store.put_bytes(data)
    corrupted = bytearray(data)
    corrupted[size // 2] ^= 0x01  # one bit, in the middle, same length
    moto.client.put_object(Bucket=BUCKET, Key=moto.key(store, ref.digest), Body=bytes(corrupted))

    with pytest.raises(CorruptArtifactError) as info:
        store.get_bytes(ref.digest)
    assert info.value.details["actual"] == digest_bytes(bytes(corrupted))
    dest = tmp_path / "out" / "model.bin"
    dest.parent.mkdir()
    with pytest.raises(CorruptArtifactError):
        store.get_file(ref.digest, dest)
    assert list(dest.parent.iterdir()) == []  # no partial file left behind


# ------------------------------------------------------------------ a file that changes


@pytest.mark.parametrize("size", [MIB, 20 * MIB])
def test_a_file_changed_after_hashing_is_not_stored(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    store = moto.store()
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(size))
    hashed: list[str] = []

    def digest_then_change(path: Path) -> str:
        digest = digest_file(path)
        hashed.append(digest)
        with path.open("r+b") as fh:  # same size, one byte later in the file differs
            fh.seek(size - 10)
            byte = fh.read(1)
            fh.seek(size - 10)
            fh.write(bytes([byte[0] ^ 0xFF]))
        return digest

    monkeypatch.setattr(remote_module, "digest_file", digest_then_change)
    moto.start_recording()
    with pytest.raises(ConflictError, match="changed while it was being stored"):
        store.put_file(src)
    requests = moto.recorded()

    assert not store.exists(hashed[0])
    assert moto.versions(_prefix(store)) == ([], [])
    assert moto.pending_uploads() == []
    methods = [(r.method, set(r.query)) for r in _writes(requests)]
    if size > 8 * MIB:  # the multipart upload was started, then aborted, never completed
        assert methods[0] == ("POST", {"uploads"})
        assert methods[-1] == ("DELETE", {"uploadId"})
        assert ("POST", {"uploadId"}) not in methods
    else:  # the single PUT was never sent
        assert methods == []


def test_a_missing_file_is_not_found(moto: Moto, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        moto.store().put_file(tmp_path / "nope.bin")
