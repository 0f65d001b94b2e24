"""A project's audit trail: its checkpoint key, its checkpoints outside the database, verifying.

The store signs and checks checkpoints (:mod:`conveyor.store.metadata.audit`) but has no
project, so the key comes from here: ``CONVEYOR_AUDIT_KEY`` when set (a team sharing one
PostgreSQL store sets the same value everywhere, e.g. from its CI secrets), else
``.conveyor/audit.key``, 32 random bytes created with mode 0600 on first use. Neither is in the
metadata database, which is the point: whoever can rewrite audit rows there cannot sign.

Every checkpoint is also appended to ``.conveyor/audit-checkpoints.jsonl`` (one JSON object a
line, with the store's URL, password hidden, so that a project pointed at another store does not
check that store against this one's checkpoints): deleting rows from ``audit_checkpoint`` then
does not hide a truncated chain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
from typing import TYPE_CHECKING

from conveyor.core.errors import ConfigError, InfrastructureError
from conveyor.store.metadata.audit import (
    ChainReport,
    Checkpoint,
    append_checkpoint,
    chain_head,
    verify_trail,
)
from conveyor.store.metadata.schema import audit_checkpoint

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.project._context import Project

__all__ = [
    "AUDIT_KEY_ENV",
    "CHECKPOINT_FILE",
    "KEY_FILE",
    "audit_key",
    "checkpoint",
    "checkpoint_if_behind",
    "read_checkpoint_file",
    "verify",
]

logger = logging.getLogger(__name__)

#: The checkpoint signing key, as text (at least 32 characters); overrides the key file.
AUDIT_KEY_ENV = "CONVEYOR_AUDIT_KEY"
KEY_FILE = "audit.key"
CHECKPOINT_FILE = "audit-checkpoints.jsonl"
_MIN_ENV_KEY_CHARS = 32
_CHECKPOINT_ACTOR = "conveyor"


def audit_key(state_dir: Path, *, create: bool) -> bytes | None:
    """The key checkpoints are signed with; None if there is none and ``create`` is false.

    Raises:
        ConfigError: ``CONVEYOR_AUDIT_KEY`` is too short, or the key file is not a key.
        InfrastructureError: the key file cannot be read or created.
    """
    value = os.environ.get(AUDIT_KEY_ENV)
    if value:
        if len(value) < _MIN_ENV_KEY_CHARS:
            raise ConfigError(
                f"{AUDIT_KEY_ENV} is too short to sign audit checkpoints ({len(value)} characters)",
                hint=f"use at least {_MIN_ENV_KEY_CHARS} random characters,"
                " e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`",
            )
        return value.encode()
    path = state_dir / KEY_FILE
    if create:
        _create_key(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InfrastructureError(
            f"cannot read the audit key {path}: {getattr(exc, 'strerror', None) or exc}",
            hint=f"check its permissions, or set {AUDIT_KEY_ENV}",
        ) from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < _MIN_ENV_KEY_CHARS // 2:
        raise ConfigError(
            f"{path} is not an audit key (expected 64 hexadecimal digits)",
            hint="restore it from a backup; a new key cannot verify the old checkpoints",
        )
    return key


def _create_key(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: of two processes creating it at once, one writes it and the other reads it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise InfrastructureError(
            f"cannot create the audit key {path}: {exc.strerror}",
            hint=f"check that the folder is writable, or set {AUDIT_KEY_ENV}",
        ) from exc
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    logger.info("created the audit checkpoint key %s", path)


def _store_name(project: Project) -> str:
    return project.metadata.url


def _append_line(path: Path, cp: Checkpoint, store: str) -> None:
    line = json.dumps(
        {
            "store": store,
            "seq": cp.seq,
            "head": cp.head,
            "at": cp.at.isoformat(timespec="microseconds"),
            "key_id": cp.key_id,
            "signature": cp.signature,
        },
        sort_keys=True,
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line in append mode: concurrent appenders do not interleave.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InfrastructureError(
            f"cannot append the audit checkpoint to {path}: {exc.strerror}",
            hint="the checkpoint is in the database; check that the folder is writable",
        ) from exc


def read_checkpoint_file(path: Path, store: str) -> tuple[list[Checkpoint], int]:
    """The checkpoints of ``store`` in the file at ``path``, and how many lines were unreadable.

    A torn last line (a crash mid-append) or an edited one is counted, not fatal: it can only
    hide a checkpoint, which deleting the line would do as well.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise InfrastructureError(
            f"cannot read the audit checkpoints {path}: {exc.strerror}",
            hint="check its permissions",
        ) from exc
    found: list[Checkpoint] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if data["store"] != store:
                continue
            at = dt.datetime.fromisoformat(data["at"])
            if at.tzinfo is None:
                raise ValueError("naive time")
            found.append(
                Checkpoint(
                    int(data["seq"]),
                    str(data["head"]),
                    at,
                    str(data["key_id"]),
                    str(data["signature"]),
                    source=str(path),
                )
            )
        except (ValueError, KeyError, TypeError):
            bad += 1
    return found, bad


def checkpoint(project: Project) -> Checkpoint:
    """Sign the chain's current head, store the checkpoint and append it to the file.

    Raises:
        ConfigError: the key is not usable (see :func:`audit_key`).
        InfrastructureError: the store or the checkpoint file cannot be written.
    """
    state_dir = project.config.state_dir
    key = audit_key(state_dir, create=True)
    assert key is not None
    with project.metadata.write(_CHECKPOINT_ACTOR) as tx:
        cp = append_checkpoint(tx.conn, key, tx.at)
    _append_line(state_dir / CHECKPOINT_FILE, cp, _store_name(project))
    return cp


def checkpoint_if_behind(project: Project) -> Checkpoint | None:
    """Write a checkpoint if events were appended since the newest one; cheap when none were.

    Meant for the end of a command: one read transaction with two indexed look-ups when nothing
    was written, a checkpoint (one small write and one appended line) when something was.
    """
    import sqlalchemy as sa

    with project.metadata.read() as conn:
        seq, _ = chain_head(conn)
        last = conn.execute(
            sa.select(audit_checkpoint.c.seq).order_by(audit_checkpoint.c.id.desc()).limit(1)
        ).scalar()
    if seq == 0 or (last is not None and int(last) == seq):
        return None
    return checkpoint(project)


def verify(project: Project) -> ChainReport:
    """Verify the chain against the checkpoints in the database and in the file.

    Raises:
        ConfigError: the key is not usable (see :func:`audit_key`).
        InfrastructureError: the store or the checkpoint file cannot be read.
    """
    state_dir = project.config.state_dir
    key = audit_key(state_dir, create=False)
    extra, unreadable = read_checkpoint_file(state_dir / CHECKPOINT_FILE, _store_name(project))
    with project.metadata.read() as conn:
        report = verify_trail(conn, key, extra)
    if unreadable:
        report = dataclasses.replace(report, unverified=report.unverified + unreadable)
    return report
