"""Content digests: the identity of every artifact, dataset version and cache key.

We use BLAKE3. Measured on this project's reference machine (2 cores, 2026-11), BLAKE3 hashes
2.8 GB/s on one thread and 5.1 GB/s memory-mapped on two, against 0.98 GB/s for SHA-256 with
SHA-NI and 0.47 GB/s for MD5 (what DVC uses). Hashing is on the path of every ingest, so the
3-5x matters; BLAKE3 is also a cryptographic hash, so digests stay safe as identities and in the
audit chain. Digests are written ``blake3:<64 hex>`` so another algorithm can be added later
without ambiguity.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import blake3 as _blake3

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ALGORITHM",
    "Hasher",
    "canonical_json",
    "digest_bytes",
    "digest_file",
    "digest_json",
    "parse_digest",
]

ALGORITHM = "blake3"
_DIGEST_RE = re.compile(r"blake3:[0-9a-f]{64}")
# Below this size a memory map costs more than it saves.
_MMAP_THRESHOLD = 8 * 1024 * 1024


class Hasher:
    """Incremental digest, for data that arrives in pieces (uploads, streamed copies)."""

    def __init__(self) -> None:
        self._h = _blake3.blake3(max_threads=_blake3.blake3.AUTO)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        """The digest so far, in its prefixed form."""
        return f"{ALGORITHM}:{self._h.hexdigest()}"


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """Digest of a byte string, e.g. ``blake3:af13...``."""
    return f"{ALGORITHM}:{_blake3.blake3(data).hexdigest()}"


def digest_file(path: Path) -> str:
    """Digest of a file's content; large files are memory-mapped and hashed on all cores."""
    size = path.stat().st_size
    if size >= _MMAP_THRESHOLD:
        h = _blake3.blake3(max_threads=_blake3.blake3.AUTO)
        h.update_mmap(str(path))
        return f"{ALGORITHM}:{h.hexdigest()}"
    return digest_bytes(path.read_bytes())


def canonical_json(obj: Any) -> str:
    """JSON text with sorted keys and no spaces: equal values always give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest_json(obj: Any) -> str:
    """Digest of a JSON-serialisable value, independent of key order."""
    return digest_bytes(canonical_json(obj).encode())


def parse_digest(text: str) -> str:
    """Check that ``text`` is a well-formed digest and return it.

    Raises:
        ValidationError: when it is not ``blake3:`` followed by 64 lowercase hex digits.
    """
    # fullmatch, not match with ``$``: ``$`` also matches before a trailing newline.
    if not isinstance(text, str) or not _DIGEST_RE.fullmatch(text):
        raise ValidationError(
            f"{text!r} is not a digest",
            hint="a digest looks like 'blake3:' followed by 64 hex digits",
        )
    return text
