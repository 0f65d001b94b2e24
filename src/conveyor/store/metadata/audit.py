"""The append-only, hash-chained audit log and its signed checkpoints.

Each event's hash covers its own fields and the previous event's hash, so editing, inserting or
deleting a row in the middle breaks a link; :func:`verify_trail` names every broken one.

A chain alone cannot show that its *end* was cut off: drop the last 16 rows and what is left is
a perfectly valid, shorter chain. A **checkpoint** closes that gap: it records the chain's length
(the last ``seq``) and head hash at a moment, signed, and verification fails if the chain no
longer reaches that length or no longer has that head at that ``seq``.

The signature is HMAC-SHA256 (stdlib :mod:`hmac`, compared in constant time) under a key that
is *not* in the metadata database: whoever can edit audit rows can also write checkpoint rows,
and a plain hash of (length, head) they could simply recompute. An HMAC needs nothing but a
secret key, which Conveyor already has a place for (the project's ``.conveyor/`` folder or an
environment variable, see :mod:`conveyor.project._audit`); public-key signatures would only pay
off if verifiers were not also signers, and here the same project does both. Each checkpoint
names its key by an id derived from the key (an HMAC of a fixed string, so it reveals nothing):
checkpoints signed with another key (another clone sharing the store) are counted as
unverifiable rather than forged, and a wrong signature under *our* key id is reported as forged.

Checkpoints are stored in ``audit_checkpoint`` *and* mirrored outside the database (the project
layer appends them to a file), because deleting audit rows and deleting checkpoint rows need the
same access. Verification checks the chain against every checkpoint it can verify, from either
place, not only the newest: a chain cut at 41 and grown again past 57 still differs from the
head signed at 57.

Appending is refused by the database itself: migration 0007 adds triggers that reject UPDATE
and DELETE on ``audit_event`` and ``audit_checkpoint`` (on PostgreSQL the application's role
owns its tables, so a REVOKE would not bind it). Someone with DDL rights can drop the triggers;
what they then change is still detected here.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.digest import canonical_json, digest_json
from conveyor.core.redact import redact
from conveyor.store.metadata.schema import audit_checkpoint, audit_event

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable

__all__ = [
    "GENESIS",
    "AuditEvent",
    "ChainReport",
    "Checkpoint",
    "Finding",
    "append_checkpoint",
    "append_event",
    "chain_head",
    "event_hash",
    "key_id",
    "load_checkpoints",
    "query_events",
    "sign_checkpoint",
    "signature_valid",
    "verify_chain",
    "verify_trail",
]

GENESIS = "genesis"
# Every write transaction appends an event, so this is the hottest path of the store. The head
# is read straight from the driver: the text is the same on SQLite and PostgreSQL, the values
# need no conversion, and SQLAlchemy's statement machinery took ~40 us to the driver's ~3 us.
_HEAD = "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1"
# Built once: rebuilding the statement each time cost more than running it.
_INSERT = sa.insert(audit_event)
_SIGNATURE_SCHEME = "hmac-sha256"


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
class Checkpoint:
    """A signed statement: at ``at`` the chain had ``seq`` events and its last hash was ``head``.

    ``source`` says where it was read from (``"database"`` or a file path); it is not signed.
    """

    seq: int
    head: str
    at: dt.datetime
    key_id: str
    signature: str
    source: str = "database"

    def describe(self) -> str:
        return f"checkpoint of {self.at.isoformat(timespec='seconds')}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with the trail.

    ``kind`` is one of ``edited`` (an event's content no longer matches its hash), ``missing``
    (a gap in ``seq``), ``relinked`` (an event's ``prev_hash`` is not its predecessor's hash),
    ``truncated`` (the chain is shorter than a checkpoint says), ``diverged`` (the event at a
    checkpoint's ``seq`` is not the one it signed) and ``forged`` (a checkpoint signed under our
    key id whose signature does not hold).
    """

    kind: str
    seq: int | None
    message: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of a verification: ``ok``, how many events, and the first broken link.

    :func:`verify_trail` also fills ``findings`` (every problem, in chain order, then the
    checkpoints'), ``checkpoint`` (the newest checkpoint that verified) and ``unverified`` (how
    many checkpoints were signed with another key or could not be read).
    """

    ok: bool
    events: int
    head: str
    broken_seq: int | None = None
    reason: str | None = None
    findings: tuple[Finding, ...] = ()
    checkpoint: Checkpoint | None = None
    unverified: int = 0


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
    it is still the head of the chain, and reading the head again can be skipped. Secrets in
    ``payload`` (URL passwords, ``token``-like keys) are masked first, see
    :func:`conveyor.core.redact.redact`: the audit trail is append-only, so a credential written
    into it could never be removed.
    """
    if after is not None:
        seq, prev = after.seq + 1, after.hash
    else:
        driver = conn.connection.driver_connection
        assert driver is not None
        head = driver.execute(_HEAD).fetchone()
        seq, prev = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS)
    text = canonical_json(redact(payload))
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


# ------------------------------------------------------------------ checkpoints


def query_events(
    conn: sa.Connection,
    *,
    since: dt.datetime | None = None,
    action: str = "",
    target: str = "",
    actor: str = "",
    before: int | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """The newest ``limit`` events, newest first: at or after ``since``, whose action and target
    start with ``action`` and ``target`` (literally: ``_`` and ``%`` are not wildcards), by
    ``actor`` exactly (user names are not hierarchical: ``al`` must not show alice's and alan's
    events together), with a ``seq`` below ``before`` (the page after one ending there)."""
    a = audit_event
    query = sa.select(a).order_by(a.c.seq.desc()).limit(limit)
    if since is not None:
        query = query.where(a.c.at >= since)
    if action:
        query = query.where(a.c.action.startswith(action, autoescape=True))
    if target:
        query = query.where(a.c.target.startswith(target, autoescape=True))
    if actor:
        query = query.where(a.c.actor == actor)
    if before is not None:
        query = query.where(a.c.seq < before)
    return [AuditEvent(**dict(r)) for r in conn.execute(query).mappings()]


def key_id(key: bytes) -> str:
    """A short, public name for ``key``: an HMAC of a fixed text, so it reveals nothing of it."""
    return hmac.new(key, b"conveyor audit key id", hashlib.sha256).hexdigest()[:16]


def _message(seq: int, head: str, at: dt.datetime, kid: str) -> bytes:
    text = canonical_json(
        {"v": 1, "seq": seq, "head": head, "at": at.isoformat(timespec="microseconds"), "key": kid}
    )
    return text.encode()


def sign_checkpoint(key: bytes, seq: int, head: str, at: dt.datetime) -> Checkpoint:
    """A checkpoint of a chain of ``seq`` events ending in ``head``, signed with ``key``."""
    kid = key_id(key)
    mac = hmac.new(key, _message(seq, head, at, kid), hashlib.sha256).hexdigest()
    return Checkpoint(seq, head, at, kid, f"{_SIGNATURE_SCHEME}:{mac}")


def signature_valid(key: bytes, cp: Checkpoint) -> bool:
    """Whether ``cp`` was signed with ``key`` (compared in constant time)."""
    mac = hmac.new(key, _message(cp.seq, cp.head, cp.at, cp.key_id), hashlib.sha256).hexdigest()
    expected = f"{_SIGNATURE_SCHEME}:{mac}"
    return hmac.compare_digest(expected.encode(), cp.signature.encode())


def chain_head(conn: sa.Connection) -> tuple[int, str]:
    """The last ``seq`` and hash of the chain (``(0, GENESIS)`` when it is empty)."""
    row = conn.execute(
        sa.select(audit_event.c.seq, audit_event.c.hash).order_by(audit_event.c.seq.desc()).limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def append_checkpoint(conn: sa.Connection, key: bytes, at: dt.datetime) -> Checkpoint:
    """Sign the chain's current head and store the checkpoint, in the caller's write transaction.

    The caller's transaction must be a serialised write (``MetadataStore.write``), so that no
    event is appended between reading the head and signing it.
    """
    seq, head = chain_head(conn)
    cp = sign_checkpoint(key, seq, head, at)
    conn.execute(
        sa.insert(audit_checkpoint).values(
            seq=cp.seq, head=cp.head, at=cp.at, key_id=cp.key_id, signature=cp.signature
        )
    )
    return cp


def load_checkpoints(conn: sa.Connection) -> list[Checkpoint]:
    """Every checkpoint stored in the database, oldest first."""
    t = audit_checkpoint
    rows = conn.execute(
        sa.select(t.c.seq, t.c.head, t.c.at, t.c.key_id, t.c.signature).order_by(t.c.id)
    )
    return [Checkpoint(int(r.seq), r.head, r.at, r.key_id, r.signature) for r in rows]


# ------------------------------------------------------------------ verification


@dataclass
class _Walk:
    events: int = 0
    last_seq: int = 0
    head: str = GENESIS
    # The first break, as verify_chain has always reported it.
    first_count: int = 0
    first_head: str = GENESIS


def _walk(
    conn: sa.Connection, wanted: set[int], findings: list[Finding], hashes: dict[int, str]
) -> _Walk:
    """Walk the chain in ``seq`` order and record every broken link.

    The walk does not stop at a break: each link is checked against the *stored* hash of the
    row before it, so an edit, a deletion and a re-linked row are each named where they are.
    """
    w = _Walk()
    prev = GENESIS
    expected_seq = 1
    rows = conn.execute(sa.select(audit_event).order_by(audit_event.c.seq)).mappings()
    for row in rows:
        w.events += 1
        seq = int(row["seq"])
        before = len(findings)
        if seq != expected_seq:
            gap = (
                f"event {expected_seq} is missing"
                if seq == expected_seq + 1
                else f"events {expected_seq} to {seq - 1} are missing"
            )
            findings.append(Finding("missing", expected_seq, gap))
        elif row["prev_hash"] != prev:
            findings.append(
                Finding("relinked", seq, "its prev_hash does not match the event before it")
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
            findings.append(Finding("edited", seq, "its content was changed after it was written"))
        if before == 0 and findings:
            w.first_count, w.first_head = w.events, prev
        if seq in wanted:
            hashes[seq] = row["hash"]
        prev = row["hash"]
        expected_seq = seq + 1
        w.last_seq = seq
    w.head = prev
    return w


def verify_chain(conn: sa.Connection) -> ChainReport:
    """Walk the whole chain in order and report the first event whose link does not hold.

    ``events`` and ``head`` are then those of the chain up to the break: how many events were
    read and the hash of the last one that still holds.
    """
    findings: list[Finding] = []
    w = _walk(conn, set(), findings, {})
    if not findings:
        return ChainReport(True, w.events, w.head)
    first = findings[0]
    return ChainReport(False, w.first_count, w.first_head, first.seq, first.message)


def verify_trail(
    conn: sa.Connection, key: bytes | None, extra: Iterable[Checkpoint] = ()
) -> ChainReport:
    """Verify the chain and check it against every checkpoint, stored or given in ``extra``.

    A checkpoint signed under another key id (or when ``key`` is None) cannot be checked and
    is only counted in ``unverified``; one under our key id with a wrong signature is a
    ``forged`` finding. Every valid checkpoint must still be matched by the chain: an event
    at its ``seq`` whose hash is its ``head``.
    """
    seen: set[tuple[int, str, dt.datetime, str, str]] = set()
    valid: list[Checkpoint] = []
    findings: list[Finding] = []
    forged: list[Finding] = []
    unverified = 0
    kid = key_id(key) if key is not None else None
    for cp in [*load_checkpoints(conn), *extra]:
        ident = (cp.seq, cp.head, cp.at, cp.key_id, cp.signature)
        if ident in seen:
            continue
        seen.add(ident)
        if key is None or cp.key_id != kid:
            unverified += 1
        elif signature_valid(key, cp):
            valid.append(cp)
        else:
            forged.append(
                Finding(
                    "forged",
                    cp.seq,
                    f"the {cp.describe()} ({cp.source}, {cp.seq} events) has a bad signature:"
                    " it was forged or altered",
                )
            )
    hashes: dict[int, str] = {}
    w = _walk(conn, {cp.seq for cp in valid}, findings, hashes)
    valid.sort(key=lambda cp: (cp.seq, cp.at))
    for cp in valid:
        if cp.seq > w.last_seq:
            message = (
                f"the chain ends at seq {w.last_seq} but the {cp.describe()} says {cp.seq}"
                f" events, head {cp.head}: events were cut off its end"
            )
            findings.append(Finding("truncated", w.last_seq + 1, message))
            break  # later checkpoints say the same, only louder
        if cp.seq > 0 and hashes.get(cp.seq) != cp.head:
            message = (
                f"event {cp.seq} is not the one the {cp.describe()} signed (head {cp.head}):"
                " the chain was rewritten at or before it"
            )
            findings.append(Finding("diverged", cp.seq, message))
    findings += forged
    newest = max(valid, key=lambda cp: cp.at, default=None)
    if not findings:
        return ChainReport(True, w.events, w.head, checkpoint=newest, unverified=unverified)
    first = findings[0]
    return ChainReport(
        False,
        w.events,
        w.head,
        first.seq,
        first.message,
        findings=tuple(findings),
        checkpoint=newest,
        unverified=unverified,
    )
