"""Digests of input files and folders, and of source files, with a stat cache.

Hashing a 1 GiB data file takes ~0.4 s even with BLAKE3, on every run. Like git's index and
DVC's state database, we remember each file's digest with its stat (size, mtime, inode) and hash
it again only when the stat changes: in memory for the process, and in a small JSON file in the
project's state folder between processes (:class:`DigestCache`), so that a no-op ``conveyor
run`` over large data reads no data at all.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING

from conveyor.core.atomic import atomic_write_bytes
from conveyor.core.digest import digest_file, digest_json

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DigestCache", "Stat", "file_digest", "path_digest"]

logger = logging.getLogger(__name__)

Stat = tuple[int, int, int]  # mtime_ns, size, inode
# path -> (stat, digest): an unchanged file is hashed once per process.
_cache: dict[str, tuple[Stat, str]] = {}
_dirty = False
# A file changed within this window may change again without its mtime moving (timestamps are
# coarse), so its digest is not remembered: git's "racily clean" rule.
_RACY_NS = 2_000_000_000
_FORMAT = 1


def file_digest(path: Path, seen: dict[str, Stat] | None = None) -> str:
    """The content digest of a file, hashed again only when its stat changes.

    Args:
        path: The file.
        seen: If given, receives the file's stat as it was *before* it was read: a change
            after that shows as a different stat (the run lock relies on this).
    """
    global _dirty  # noqa: PLW0603 -- one cache per process, shared by every run in it
    st = os.stat(path)
    key = str(path)
    stat = (st.st_mtime_ns, st.st_size, st.st_ino)
    if seen is not None:
        seen[key] = stat
    known = _cache.get(key)
    if known is not None and known[0] == stat:
        return known[1]
    digest = digest_file(path)
    if time.time_ns() - st.st_mtime_ns > _RACY_NS:
        _cache[key] = (stat, digest)
        _dirty = True
    return digest


def path_digest(path: Path, seen: dict[str, Stat] | None = None) -> str:
    """The digest of a file's content, or of a folder's file names and contents.

    A folder's digest covers every file under it (sorted relative paths with their digests), so
    renaming, adding, removing or editing any file changes it.

    Args:
        path: The file or folder.
        seen: If given, receives the stat of every file read and of every folder listed, each
            taken before it was read (a folder's mtime moves when an entry is added or removed).
    """
    if not path.is_dir():
        return file_digest(path, seen)
    entries: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(path):
        if seen is not None:
            # Taken just after os.walk listed the folder: an entry added or removed since then
            # sets the folder's mtime to a time after the run started, which a reader of
            # ``seen`` must treat as a change (the run lock does: its "racily clean" rule).
            st = os.stat(folder)
            seen[folder] = (st.st_mtime_ns, st.st_size, st.st_ino)
        dirs.sort()
        base = os.path.relpath(folder, path)
        for name in sorted(files):
            rel = name if base == "." else f"{base}/{name}".replace(os.sep, "/")
            entries.append((rel, file_digest(path / rel, seen)))
    return digest_json({"folder": entries})


class DigestCache:
    """The stat cache kept between processes, in one JSON file; best effort both ways.

    A missing, unreadable or corrupt file is an empty cache, and a failed write is logged and
    ignored: the cost is hashing again, never a wrong digest (an entry is used only when the
    file's size, mtime and inode all match).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_bytes())
            if data.get("format") != _FORMAT:
                return
            for key, (mtime_ns, size, ino, digest) in data["files"].items():
                _cache.setdefault(key, ((mtime_ns, size, ino), digest))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            logger.debug("ignoring the file digest cache %s: %s", self.path, exc)

    def save(self) -> None:
        global _dirty  # noqa: PLW0603
        if not _dirty:
            return
        files = {key: [*stat, digest] for key, (stat, digest) in sorted(_cache.items())}
        data = json.dumps({"format": _FORMAT, "files": files}, separators=(",", ":"))
        try:
            atomic_write_bytes(self.path, data.encode())
        except OSError as exc:
            logger.debug("could not write the file digest cache %s: %s", self.path, exc)
        else:
            _dirty = False
