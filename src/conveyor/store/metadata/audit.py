"""The append-only, hash-chained audit log.

Each event's hash covers its own fields and the previous event's hash, so editing, inserting or
deleting a row in the middle breaks every later link; :func:`verify_chain` finds the first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.digest import canonical_json, digest_json
from conveyor.store.metadata.schema import audit_event

if TYPE_CHECKING:
    import datetime as dt

__all__ = ["GENESIS", "AuditEvent", "ChainReport", "append_event", "event_hash", "verify_chain"]

GENESIS = "genesis"
# Every write transaction appends an event, so this is the hottest path of the store. The head
# is read straight from the driver: the text is the same on SQLite and PostgreSQL, the values
# need no conversion, and SQLAlchemy's statement machinery took ~40 us to the driver's ~3 us.
_HEAD = "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1"
# Built once: rebuilding the statement each time cost more than running it.
_INSERT = sa.insert(audit_event)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    payload: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of a verification: ``ok``, how many events, and the first broken link."""

    ok: bool
    events: int
    head: str
    broken_seq: int | None = None
    reason: str | None = None


def event_hash(
    seq: int, at: dt.datetime, actor: str, action: str, target: str, payload: str, prev_hash: str
) -> str:
    """The hash of one event: a digest of its fields and its predecessor's hash."""
    return digest_json(
        {
            "seq": seq,
            "at": at.isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "target": target,
            "payload": payload,
            "prev_hash": prev_hash,
        }
    )


def append_event(
    conn: sa.Connection,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    target: str,
    payload: dict[str, Any],
    after: AuditEvent | None = None,
) -> AuditEvent:
    """Append one event inside the caller's (already serialised) write transaction.

    ``after`` is the event this transaction appended last, if any: writes are serialised, so
    it is still the head of the chain, and reading the head again can be skipped.
    """
    if after is not None:
        seq, prev = after.seq + 1, after.hash
    else:
        driver = conn.connection.driver_connection
        assert driver is not None
        head = driver.execute(_HEAD).fetchone()
        seq, prev = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS)
    text = canonical_json(payload)
    h = event_hash(seq, at, actor, action, target, text, prev)
    conn.execute(
        _INSERT,
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "target": target,
            "payload": text,
            "prev_hash": prev,
            "hash": h,
        },
    )
    return AuditEvent(seq, at, actor, action, target, text, prev, h)


def verify_chain(conn: sa.Connection) -> ChainReport:
    """Walk the whole chain in order and report the first event whose link does not hold."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    rows = conn.execute(sa.select(audit_event).order_by(audit_event.c.seq)).mappings()
    for row in rows:
        count += 1
        seq = row["seq"]
        if seq != expected_seq:
            return ChainReport(False, count, prev, expected_seq, f"event {expected_seq} is missing")
        if row["prev_hash"] != prev:
            return ChainReport(
                False, count, prev, seq, "its prev_hash does not match the event before it"
            )
        actual = event_hash(
            seq,
            row["at"],
            row["actor"],
            row["action"],
            row["target"],
            row["payload"],
            row["prev_hash"],
        )
        if actual != row["hash"]:
            return ChainReport(
                False, count, prev, seq, "its content was changed after it was written"
            )
        prev = row["hash"]
        expected_seq += 1
    return ChainReport(True, count, prev)
