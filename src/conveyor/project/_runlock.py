"""The run lock: how ``conveyor run`` knows, in a few system calls, that nothing changed.

After a successful run, the lock (``.conveyor/run-lock.json``) records cheap fingerprints of
everything that decides the run's outcome: the bytes of ``conveyor.yaml``, the ``CONVEYOR_*``
variables and flags that choose the stores, the size/mtime/inode of every Python file of the
project and of every data file the steps read, the interpreter and its site-packages folders,
the identity of the SQLite database file, and the presence of every output artifact. The next
``conveyor run`` compares them before importing anything heavy; if all match, the run is a
no-op and is reported as such. Anything different, missing or unreadable falls through to the
full run, which decides step by step with real cache keys and writes a new lock.

This is DVC's lesson: a no-op must cost a stat per file, not the imports of a whole stack.
A no-op through the lock records no run rows: nothing changed, so there is no state change to
record. The lock covers only local stores (SQLite and a local artifact folder); with a
database server or a remote artifact store the full path runs every time.

Imports here are limited to the standard library and Conveyor's core on purpose.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core import env
from conveyor.core.atomic import atomic_write_bytes
from conveyor.core.project_dir import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["LockedRun", "check", "lock_path", "write"]

_FORMAT = 1
_LOCK_FILE = "run-lock.json"
_ENV_VARS = (
    env.CONVEYOR_STORE,
    env.CONVEYOR_ARTIFACTS,
    env.CONVEYOR_CONFIG,
    env.CONVEYOR_PROJECT_DIR,
)
# Folders that hold no project code: virtual environments, caches, Conveyor's own state.
_SKIP_DIRS = {"__pycache__", "node_modules", DEFAULT_STATE_DIR}


@dataclass(frozen=True)
class LockedRun:
    """What the last successful run did: its steps and the model version it registered."""

    pipeline: str
    steps: tuple[str, ...]
    model: str | None
    version: int | None


def lock_path(root: Path) -> Path:
    return root / DEFAULT_STATE_DIR / _LOCK_FILE


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _sources(root: Path) -> dict[str, list[int] | None]:
    found: dict[str, list[int] | None] = {}
    for folder, dirs, files in os.walk(root):
        # A virtual environment inside the project is library code, covered by the environment
        # fingerprint; dot-folders (.git, .venv, .conveyor) are not project code.
        dirs[:] = [
            d
            for d in dirs
            if d not in _SKIP_DIRS
            and not d.startswith(".")
            and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        ]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found[path] = _stat(path)
    return found


def _data_files(paths: list[str]) -> dict[str, list[int] | None]:
    found: dict[str, list[int] | None] = {}
    for path in paths:
        if os.path.isdir(path):
            for folder, _dirs, files in os.walk(path):
                # A folder's mtime changes when an entry is added to or removed from it.
                found[folder] = _stat(folder)
                for name in files:
                    file = os.path.join(folder, name)
                    found[file] = _stat(file)
        found[path] = _stat(path)
    return found


def _key(config: Path, flags: dict[str, Any]) -> dict[str, Any]:
    try:
        config_digest: str | None = hashlib.sha256(config.read_bytes()).hexdigest()
    except OSError:
        config_digest = None
    site = sorted(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return {
        "format": _FORMAT,
        "config": [str(config), config_digest],
        "env": {var: os.environ.get(var) for var in _ENV_VARS},
        "flags": {k: v for k, v in sorted(flags.items()) if v is not None},
        "python": [sys.version, sys.executable],
        # Installing or removing a package changes its site-packages folder's mtime.
        "site": {p: _stat(p) for p in site},
    }


def _store_identity(store_url: str) -> list[int] | None:
    if not store_url.startswith("sqlite:///"):
        return None
    try:
        st = os.stat(store_url.removeprefix("sqlite:///"))
    except OSError:
        return None
    # Not size or mtime: every write changes those. A replaced or deleted file changes these.
    return [st.st_dev, st.st_ino]


def write(
    root: Path,
    config: Path,
    flags: dict[str, Any],
    *,
    store_url: str,
    artifact_paths: list[str],
    data_files: list[str],
    run: LockedRun,
) -> None:
    """Record the fingerprints of a successful run (nothing for non-local stores)."""
    store = _store_identity(store_url)
    path = lock_path(root)
    if store is None:
        path.unlink(missing_ok=True)
        return
    body = {
        "key": _key(config, flags),
        "store": [store_url, store],
        "sources": _sources(root),
        "data": _data_files(data_files),
        "artifacts": sorted(set(artifact_paths)),
        "run": {
            "pipeline": run.pipeline,
            "steps": list(run.steps),
            "model": run.model,
            "version": run.version,
        },
    }
    atomic_write_bytes(path, json.dumps(body, sort_keys=True).encode())


def check(root: Path, config: Path, flags: dict[str, Any]) -> LockedRun | None:
    """The locked run if every fingerprint still matches, else None (run the full path)."""
    try:
        body = json.loads(lock_path(root).read_bytes())
        store_url, identity = body["store"]
        unchanged = (
            body["key"] == _key(config, flags)
            and identity is not None
            and _store_identity(store_url) == identity
            and body["sources"] == _sources(root)
            and all(_stat(p) == fp for p, fp in body["data"].items())
            and all(os.path.isfile(p) for p in body["artifacts"])
        )
        if not unchanged:
            return None
        run = body["run"]
        return LockedRun(run["pipeline"], tuple(run["steps"]), run["model"], run["version"])
    except (OSError, ValueError, KeyError, TypeError):
        # No lock, or one from another version of Conveyor: the full run decides.
        return None
