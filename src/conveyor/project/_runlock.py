"""The run lock: how ``conveyor run`` knows, in a few system calls, that nothing changed.

This is DVC's lesson: a no-op must cost a stat per file, not the imports of a whole stack.
After a successful run, ``.conveyor/run-lock.json`` records cheap fingerprints of everything
that decides the run's outcome:

- the project folder, the path and bytes of ``conveyor.yaml``, and the ``--store`` /
  ``--artifacts`` flags;
- the environment: every variable but a few a shell keeps for itself (``PWD``, ``SHLVL`` ...),
  as one digest. ``CONVEYOR_*`` variables choose the stores, and project code may read any
  other at import time into a constant that a cache key covers;
- the interpreter (version, prefixes, platform), ``sys.path``, and the stat of each folder on
  it: installing or removing a distribution adds or removes its ``.dist-info`` folder, which
  moves the folder's mtime (that listing is what the environment digest of a cache key reads);
- the stat (mtime_ns, size, inode) of every importable file under the project folder (the
  code digests follow project code there; new files count, as they can shadow an import),
  of the step functions' files outside it, of Conveyor's own source when it is not installed
  in site-packages (an editable install), and of every data file and folder the steps read
  (``files=``), as they were before the run read them;
- the SQLite file of the metadata store (device and inode), the step outputs and bundle files
  in the local artifact folder, and each step's cache key and output digest, and the model
  version registered.

:meth:`RunLock.unchanged` compares them before anything heavy is imported; if all match, it
checks in the metadata store (standard ``sqlite3``, read-only) that each step's cache key
still finds the same output and that the model version still holds the same bundle, and
reads the version's current stage (a promotion may have changed it). Anything different,
missing or unreadable means "run the full path", which decides step by step with real cache
keys and writes a new lock.

Fingerprints are taken before the run reads anything (:func:`run_lock` at the start of
``conveyor run``), so an edit during a long run shows as a change next time. A file whose mtime
is within the file system's timestamp granularity of that moment could change again unseen
("racily clean", as git calls it): then no lock is written, and the next run takes the full
path. The lock is removed when a full run starts, so a failed or interrupted run leaves none.

What the lock cannot see is what the cache keys cannot see either (code reached dynamically,
data read without ``files=``), plus values that project code computes at import time from
something other than files and the environment (the clock, randomness, the network): the
full path would put such a value into a cache key afresh; ``conveyor run --force`` re-runs.
With a database server or a remote artifact store there is no lock: the full path runs.
A no-op through the lock records no run rows and no audit events: nothing changed, so there is
no state change to record.

Imports here are the standard library and Conveyor's core only, on purpose.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core import env
from conveyor.core.digest import canonical_json, digest_bytes
from conveyor.core.project_dir import DEFAULT_STATE_DIR, config_path

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

__all__ = [
    "Fingerprint",
    "LockedModel",
    "LockedRun",
    "LockedStep",
    "RunLock",
    "fingerprint",
    "run_lock",
]

logger = logging.getLogger(__name__)

_FORMAT = 2
_LOCK_FILE = "run-lock.json"
# Kept by the shell for itself, different in every subshell or folder; no project reads them.
_ENV_IGNORED = frozenset({"_", "OLDPWD", "PWD", "SHLVL", env.CONVEYOR_USER, env.CONVEYOR_LOG_LEVEL})
_INSTALL_DIRS = frozenset({"site-packages", "dist-packages"})
# What an import can load: .py, .pyc and extension modules (.so, .cpython-311-...so, .pyd).
_IMPORTABLE = (".py", ".pyc", ".pyw", ".so", ".pyd")
# Timestamps are kept at the file system's granularity: ~1-10 ms (a kernel tick) on Linux
# file systems with nanosecond fields; a whole second on others (an mtime that is a whole
# number of seconds says so), two on FAT. A file changed within that window of the snapshot
# could change again without its mtime moving.
_RACY_NS = 20_000_000
_RACY_COARSE_NS = 2_000_000_000
_CONVEYOR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Fingerprint = list[int] | None  # [mtime_ns, size, inode], or None: the path does not exist


@dataclass(frozen=True)
class LockedStep:
    """A step of the locked run: its cache key and the digest of its output."""

    name: str
    cache_key: str
    output_digest: str


@dataclass(frozen=True)
class LockedModel:
    """The model version the locked run registered, with its stage as the store has it now."""

    name: str
    version: int
    artifact_digest: str
    stage: str = "experimental"


@dataclass(frozen=True)
class LockedRun:
    """What the last successful run did, vouched for by the run lock.

    ``pipeline_run_id`` is that run's id: an answer from the lock records no new run.
    """

    ref: str
    root: str
    pipeline: str
    pipeline_run_id: str
    steps: tuple[LockedStep, ...]
    model: LockedModel | None


def fingerprint(path: str) -> Fingerprint:
    """``[mtime_ns, size, inode]`` of ``path``, or None if it cannot be stat-ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _skip_dir(folder: str, name: str, on_path: set[str]) -> bool:
    path = os.path.join(folder, name)
    if name in ("__pycache__", DEFAULT_STATE_DIR):
        return True
    if name.startswith(".") and path not in on_path:
        return True  # .git, .venv, .mypy_cache: not importable as project packages
    # A virtual environment inside the project is installed code, covered by sys.path stats.
    return os.path.exists(os.path.join(path, "pyvenv.cfg"))


def _importable_files(top: str, on_path: set[str]) -> dict[str, Fingerprint]:
    found: dict[str, Fingerprint] = {}
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not _skip_dir(folder, d, on_path)]
        for name in files:
            if name.endswith(_IMPORTABLE):
                path = os.path.join(folder, name)
                found[path] = fingerprint(path)
    return found


def _search_path() -> list[str]:
    cwd = os.getcwd()
    # The working directory is on sys.path under `python -m`, as in the environment digest of
    # a cache key: it is not an install location (the project root is walked on its own).
    return [p for p in sys.path if p and os.path.abspath(p) != cwd]


def _environment() -> str:
    kept = sorted((k, v) for k, v in os.environ.items() if k not in _ENV_IGNORED)
    # One digest, never the values: the environment holds secrets.
    return digest_bytes(canonical_json(kept).encode("utf-8", "surrogateescape"))


def _racy(fp: Fingerprint, taken_ns: int) -> bool:
    if fp is None:
        return False
    mtime = fp[0]
    window = _RACY_COARSE_NS if mtime % 1_000_000_000 == 0 else _RACY_NS
    return mtime >= taken_ns - window


@dataclass(frozen=True)
class _Snapshot:
    taken_ns: int
    root: str
    key: dict[str, Any]
    sources: dict[str, Fingerprint]


class RunLock:
    """The fingerprints of a project taken now, and the lock file they are compared with.

    Take one with :func:`run_lock` before the configuration is loaded: ask
    :meth:`unchanged` whether the last run still stands; otherwise pass it to the full run,
    which writes it (with what the run learnt) when it succeeds.
    """

    def __init__(self, root: Path, config: Path, flags: Mapping[str, Any]) -> None:
        self.root = root
        self.path = root / DEFAULT_STATE_DIR / _LOCK_FILE
        #: Why the last :meth:`unchanged` found the lock did not stand ("" if it did).
        self.reason = ""
        taken_ns = time.time_ns()
        try:
            config_digest: str | None = digest_bytes(config.read_bytes())
        except OSError:
            config_digest = None
        search_path = _search_path()
        on_path = {os.path.abspath(p) for p in search_path}
        sources = _importable_files(str(root), on_path)
        if _INSTALL_DIRS.isdisjoint(_CONVEYOR_DIR.split(os.sep)):
            sources.update(_importable_files(_CONVEYOR_DIR, on_path))
        key = {
            "root": str(root),
            "config": [str(config), config_digest],
            "flags": {k: v for k, v in sorted(flags.items()) if v is not None},
            "environment": _environment(),
            "python": [
                sys.version,
                sys.prefix,
                sys.base_prefix,
                sys.implementation.cache_tag,
                sys.platform,
                os.uname().machine if hasattr(os, "uname") else "",
            ],
            "sys.path": [[p, fingerprint(p)] for p in search_path],
        }
        self._snapshot = _Snapshot(taken_ns, str(root), key, sources)

    # -- reading ------------------------------------------------------------------------------

    def unchanged(self) -> LockedRun | None:
        """The locked run if nothing that decides a run's outcome changed since; else None.

        :attr:`reason` then says what changed (also logged at DEBUG).
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = None
        try:
            if data is None:
                run, reason = None, "no run lock yet"
            else:
                run, reason = self._compare(json.loads(data))
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            # Unreadable, or written by another version of Conveyor: the full run decides.
            run, reason = None, f"unreadable run lock ({type(exc).__name__}: {exc})"
        self.reason = reason
        if run is None:
            logger.debug("run lock: full run: %s", reason, extra={"run_lock": "miss"})
        else:
            logger.debug(
                "run lock: nothing changed since pipeline run %s",
                run.pipeline_run_id,
                extra={"run_lock": "hit", "pipeline_run_id": run.pipeline_run_id},
            )
        return run

    def _compare(self, body: dict[str, Any]) -> tuple[LockedRun | None, str]:
        if body.get("format") != _FORMAT:
            return None, f"run lock of format {body.get('format')!r}, not {_FORMAT}"
        changed = self._changed_file(body)
        if changed is not None:
            return None, changed
        store = body["store"]
        try:
            st = os.stat(store["path"])
        except FileNotFoundError:
            return None, f"the metadata store {store['path']} is gone"
        if [st.st_dev, st.st_ino] != store["identity"]:
            return None, f"the metadata store {store['path']} is another file now"
        # Only now: sqlite3 costs ~9 ms to import, and a changed file needs none of it.
        from conveyor.project import _runlock_store

        return _runlock_store.verify(store["path"], _locked_run(body["run"]))

    def _changed_file(self, body: dict[str, Any]) -> str | None:
        """What differs between the lock and the files now, if anything."""
        snap = self._snapshot
        for field, value in snap.key.items():
            if body["key"].get(field) != value:
                return _KEY_CHANGES.get(field, field)
        changed = _first_change(body["sources"], snap.sources)
        if changed is not None:
            return f"source file {changed}"
        changed = _first_change(body["files"], {p: fingerprint(p) for p in body["files"]})
        if changed is not None:
            return changed
        missing = next((p for p in body["artifacts"] if not os.path.isfile(p)), None)
        if missing is not None:
            return f"stored output {missing} is missing"
        return None

    # -- writing ------------------------------------------------------------------------------

    def discard(self) -> None:
        """Remove the lock: a full run is starting, and only its success writes a new one."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            logger.debug("could not remove the run lock %s: %s", self.path, exc)

    def write(
        self,
        run: LockedRun,
        *,
        store_url: str,
        artifact_paths: Iterable[str],
        files: Mapping[str, Fingerprint],
    ) -> str | None:
        """Record the fingerprints of a successful run, as taken when the lock was made.

        Args:
            run: What the run did.
            store_url: The metadata store's URL; only a SQLite file can be vouched for.
            artifact_paths: The local files of the steps' outputs and the model bundle.
            files: Fingerprints of the data files the steps read, taken before they were read,
                and of source files outside the project folder.

        Returns:
            None if the lock was written, else why not.
        """
        from conveyor.core.atomic import atomic_write_bytes

        snap = self._snapshot
        if not store_url.startswith("sqlite:///") or "?" in store_url:
            return "the metadata store is not a SQLite file"
        store_path = store_url.removeprefix("sqlite:///")
        try:
            st = os.stat(store_path)
        except OSError as exc:
            return f"cannot stat the metadata store {store_path}: {exc.strerror}"
        fingerprints = [
            *snap.sources.items(),
            *files.items(),
            *((p, fp) for p, fp in snap.key["sys.path"]),
        ]
        racy = next((p for p, fp in fingerprints if _racy(fp, snap.taken_ns)), None)
        if racy is not None:
            return f"{racy} changed as the run started (it could change again unseen)"
        body = {
            "format": _FORMAT,
            "key": snap.key,
            "sources": snap.sources,
            "files": dict(files),
            "artifacts": sorted(set(artifact_paths)),
            "store": {"path": store_path, "identity": [st.st_dev, st.st_ino]},
            "run": {
                "ref": run.ref,
                "root": run.root,
                "pipeline": run.pipeline,
                "pipeline_run_id": run.pipeline_run_id,
                "steps": [[s.name, s.cache_key, s.output_digest] for s in run.steps],
                "model": None
                if run.model is None
                else [run.model.name, run.model.version, run.model.artifact_digest],
            },
        }
        try:
            atomic_write_bytes(self.path, json.dumps(body, sort_keys=True).encode())
        except OSError as exc:
            return f"cannot write {self.path}: {exc.strerror}"
        return None


_KEY_CHANGES = {
    "root": "the project folder changed",
    "config": "conveyor.yaml changed",
    "flags": "--store or --artifacts changed",
    "environment": "environment variables changed",
    "python": "another Python interpreter",
    "sys.path": "sys.path, or a distribution installed or removed there",
}


def _first_change(locked: Mapping[str, Fingerprint], now: Mapping[str, Fingerprint]) -> str | None:
    """The first path whose fingerprint differs, and how; None if none does."""
    if locked == now:
        return None
    for path in sorted(set(locked) | set(now)):
        before, after = locked.get(path), now.get(path)
        if before == after:
            continue
        if path not in now or after is None:
            return f"{path} disappeared"
        if path not in locked or before is None:
            return f"{path} appeared"
        return f"{path} changed"
    return None


def _locked_run(run: dict[str, Any]) -> LockedRun:
    model = run["model"]
    return LockedRun(
        ref=run["ref"],
        root=run["root"],
        pipeline=run["pipeline"],
        pipeline_run_id=run["pipeline_run_id"],
        steps=tuple(LockedStep(name, key, digest) for name, key, digest in run["steps"]),
        model=None if model is None else LockedModel(model[0], int(model[1]), model[2]),
    )


def run_lock(project_dir: Path | None, flags: Mapping[str, Any]) -> RunLock:
    """Fingerprint the project now, without importing anything heavy.

    Args:
        project_dir: The ``-C`` folder, or None to find the project from the current folder.
        flags: The store flags given on the command line (they choose the stores).

    Raises:
        ConfigError: ``CONVEYOR_CONFIG`` names a file that does not exist.
    """
    root, config = config_path(project_dir)
    return RunLock(root, config, flags)
