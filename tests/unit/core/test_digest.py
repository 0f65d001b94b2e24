"""Digests are BLAKE3, prefixed, identical for bytes, streams and files, and strictly parsed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import blake3
import pytest

from conveyor.core import digest as digest_mod
from conveyor.core.digest import (
    Hasher,
    canonical_json,
    digest_bytes,
    digest_file,
    digest_json,
    parse_digest,
)
from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    from pathlib import Path

# From the BLAKE3 team's test_vectors/test_vectors.json (the first 32 bytes of "hash"); the input
# of length n is the repeating sequence 0, 1, ..., 250, 0, 1, ...
OFFICIAL_VECTORS = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
    2049: "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030",
    8193: "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b",
    31744: "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47",
    102400: "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085",
}
MIB = 1024 * 1024


def vector_input(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


@pytest.mark.parametrize(("length", "expected"), OFFICIAL_VECTORS.items())
def test_official_blake3_vectors(length: int, expected: str, tmp_path: Path) -> None:
    data = vector_input(length)
    hasher = Hasher()
    for start in range(0, length, 1000):  # uneven pieces, across chunk boundaries
        hasher.update(data[start : start + 1000])
    path = tmp_path / "input"
    path.write_bytes(data)

    assert digest_bytes(data) == f"blake3:{expected}"
    assert hasher.hexdigest() == f"blake3:{expected}"
    assert digest_file(path) == f"blake3:{expected}"


def test_memory_mapped_path_matches_an_official_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lowering the threshold sends a known vector through update_mmap instead of read_bytes.
    monkeypatch.setattr(digest_mod, "_MMAP_THRESHOLD", 1024)
    path = tmp_path / "input"
    path.write_bytes(vector_input(102400))
    assert digest_file(path) == f"blake3:{OFFICIAL_VECTORS[102400]}"


@pytest.mark.parametrize("data", [b"", b"abc", bytearray(b"abc"), memoryview(b"\x00\xff" * 999)])
def test_digest_bytes_is_prefixed_blake3(data: bytes | bytearray | memoryview) -> None:
    assert digest_bytes(data) == "blake3:" + blake3.blake3(bytes(data)).hexdigest()


@pytest.mark.parametrize(
    "size", [0, 1, 8 * MIB - 1, 8 * MIB, 8 * MIB + 4097], ids=lambda s: f"{s}B"
)
def test_digest_file_equals_digest_bytes_on_both_sides_of_the_mmap_threshold(
    size: int, tmp_path: Path
) -> None:
    assert digest_mod._MMAP_THRESHOLD == 8 * MIB  # the sizes above straddle it
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert digest_file(path) == digest_bytes(data)


def test_different_content_gives_a_different_digest() -> None:
    assert digest_bytes(b"model-1") != digest_bytes(b"model-2")


def test_canonical_json_ignores_key_order_at_every_depth() -> None:
    a = {"b": 1, "a": {"y": [1, {"q": 2, "p": 1}], "x": "é"}}
    b = {"a": {"x": "é", "y": [1, {"p": 1, "q": 2}]}, "b": 1}
    assert canonical_json(a) == '{"a":{"x":"é","y":[1,{"p":1,"q":2}]},"b":1}'
    assert canonical_json(b) == canonical_json(a)
    assert digest_json(a) == digest_json(b) == digest_bytes(canonical_json(a).encode())


def test_canonical_json_keeps_list_order_and_value_types() -> None:
    assert digest_json([1, 2]) != digest_json([2, 1])
    assert digest_json({"a": 1}) != digest_json({"a": "1"})
    assert digest_json({"a": 1}) != digest_json({"a": 1.5})


def test_parse_digest_returns_a_valid_digest() -> None:
    text = digest_bytes(b"x")
    assert parse_digest(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "blake3:",
        "blake3:" + "a" * 63,
        "blake3:" + "a" * 65,
        "blake3:" + "A" * 64,  # digests are lowercase, so equal content has one spelling
        "blake3:" + "g" * 64,
        "sha256:" + "a" * 64,
        "BLAKE3:" + "a" * 64,
        "a" * 64,
        " blake3:" + "a" * 64,
        "blake3:" + "a" * 64 + " ",
        "blake3:" + "a" * 64 + "\n",
        "blake3:../../" + "a" * 58,
    ],
)
def test_parse_digest_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValidationError, match="is not a digest") as info:
        parse_digest(text)
    assert info.value.hint is not None
    assert "64 hex digits" in info.value.hint
