"""What the metadata store says of a locked run, read with the standard library's ``sqlite3``.

The full path asks the store two things of an unchanged project: each step's cache key finds
its output (the newest successful execution of that key), and the model's bundle digest is a
registered version. This asks the same, in one read-only transaction, so that an answer from
the run lock is the answer the full path would give even if the database was restored from a
copy in place or another process ran the same steps since. It also reads the version's current
stage, which a promotion may have changed since the lock was written.

SQLAlchemy and the migrations cost ~200 ms to import; ``sqlite3`` ~9 ms. The queries mirror
``conveyor.pipeline._record`` (the cache look-up) and ``conveyor.registry`` (idempotent
registration, the current stage) over the tables of ``conveyor.store.metadata.schema``; a
schema they no longer fit fails here, and a failure only means "take the full path".
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.project._runlock import LockedRun

__all__ = ["verify"]

# Like the cache look-up: executions only (not cache hits), newest first; its first output of
# kind "artifact" is what a run would use (the look-up also checks the file exists: the lock
# has checked that of the locked output already).
_NEWEST_OUTPUT = """
    SELECT run_output.kind, run_output.ref
    FROM run
    JOIN run_output ON run_output.run_id = run.id
    JOIN artifact ON artifact.digest = run_output.ref
    WHERE run.cache_key = ? AND run.status = 'succeeded' AND run.cache_hit = 0
    ORDER BY run.started_at DESC
    LIMIT 3
"""
_VERSION_OF_BUNDLE = "SELECT version FROM model_version WHERE model = ? AND artifact_digest = ?"
_CURRENT_STAGE = """
    SELECT stage FROM stage_history WHERE model = ? AND version = ? ORDER BY id DESC LIMIT 1
"""
_TIMEOUT_S = 2.0


def verify(db_path: str, run: LockedRun) -> tuple[LockedRun | None, str]:
    """``run`` with its model's current stage if the store still agrees with it, else why not."""
    # A URI, for read-only mode: the path's %, ? and # must be escaped there.
    quoted = db_path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    try:
        conn = sqlite3.connect(
            f"file:{quoted}?mode=ro", uri=True, timeout=_TIMEOUT_S, isolation_level=None
        )
    except sqlite3.Error as exc:
        return None, f"cannot open the metadata store {db_path}: {exc}"
    try:
        conn.execute("BEGIN")
        for step in run.steps:
            rows = conn.execute(_NEWEST_OUTPUT, (step.cache_key,)).fetchall()
            found = next((ref for kind, ref in rows if kind == "artifact"), None)
            if found != step.output_digest:
                return None, f"the metadata store has another output for step '{step.name}'"
        model = run.model
        if model is None:
            return run, "nothing changed"
        versions = conn.execute(_VERSION_OF_BUNDLE, (model.name, model.artifact_digest)).fetchall()
        if versions != [(model.version,)]:
            return None, f"model '{model.name}' version {model.version} is not that bundle now"
        stage = conn.execute(_CURRENT_STAGE, (model.name, model.version)).fetchone()
    except sqlite3.Error as exc:
        return None, f"cannot read the metadata store {db_path}: {exc}"
    finally:
        conn.close()
    # Every version gets a stage row when it is registered; the default mirrors the registry's.
    current = stage[0] if stage is not None and stage[0] else "experimental"
    return _with_stage(run, current), "nothing changed"


def _with_stage(run: LockedRun, stage: str) -> LockedRun:
    assert run.model is not None
    return dataclasses.replace(run, model=dataclasses.replace(run.model, stage=stage))
