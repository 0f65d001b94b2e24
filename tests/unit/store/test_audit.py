"""The audit chain: verify_chain accepts an intact chain and names the first broken link."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from conveyor.store.metadata import AuditEvent, ChainReport, schema, verify_chain
from conveyor.store.metadata.audit import GENESIS, event_hash

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

audit = schema.audit_event


@pytest.fixture
def events(metadata_store: MetadataStore) -> list[AuditEvent]:
    """Five events: two transactions of two, then one."""
    written = []
    for batch in ([1, 2], [3, 4], [5]):
        with metadata_store.write(f"user{batch[0]}") as tx:
            written += [
                tx.audit("model.stage_changed", f"model:churn/{i}", {"i": i}) for i in batch
            ]
    return written


def verify(store: MetadataStore) -> ChainReport:
    with store.read() as conn:
        return verify_chain(conn)


def tamper(store: MetadataStore, statement: sa.Executable) -> None:
    """Change audit rows as an attacker with DDL rights would: drop the append-only triggers."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_no_delete")
        assert conn.execute(statement).rowcount == 1
        if conn.dialect.name == "postgresql":  # and covers their tracks (the schema is reused)
            conn.exec_driver_sql(
                "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event"
                " FOR EACH ROW EXECUTE FUNCTION conveyor_refuse_audit_change()"
            )


def test_empty_chain_is_intact(metadata_store: MetadataStore) -> None:
    assert verify(metadata_store) == ChainReport(ok=True, events=0, head=GENESIS)


def test_intact_chain(metadata_store: MetadataStore, events: list[AuditEvent]) -> None:
    report = verify(metadata_store)
    assert report.ok
    assert (report.events, report.head) == (5, events[-1].hash)
    assert report.broken_seq is None
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))


def rehash(e: AuditEvent) -> str:
    return event_hash(e.seq, e.at, e.actor, e.action, e.target, e.payload, e.prev_hash)


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 4},
        {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
        {"actor": "mallory"},
        {"action": "model.deleted"},
        {"target": "model:other/1"},
        {"payload": "{}"},
        {"prev_hash": GENESIS},
    ],
    ids=lambda change: next(iter(change)),
)
def test_the_hash_covers_every_field(change: dict[str, Any]) -> None:
    at = dt.datetime(2026, 11, 26, 17, 1, 8, 703907, tzinfo=dt.UTC)
    fields = (3, at, "alice", "model.stage_changed", "model:churn/3", '{"to":"production"}')
    e = AuditEvent(*fields, prev_hash="blake3:" + "1" * 64, hash="")
    e = dataclasses.replace(e, hash=rehash(e))
    assert rehash(dataclasses.replace(e, **change)) != e.hash


@pytest.mark.parametrize(
    "values",
    [{"payload": '{"i":99}'}, {"actor": "mallory"}, {"action": "model.deleted"}],
    ids=["payload", "actor", "action"],
)
def test_an_edited_field_breaks_its_own_event(
    metadata_store: MetadataStore, events: list[AuditEvent], values: dict[str, str]
) -> None:
    tamper(metadata_store, audit.update().where(audit.c.seq == 3).values(**values))
    report = verify(metadata_store)
    assert not report.ok
    assert report.broken_seq == 3
    assert report.reason == "its content was changed after it was written"
    assert report.head == events[1].hash  # the last event that still holds


def test_an_edited_payload_via_raw_sql(
    metadata_store: MetadataStore, events: list[AuditEvent]
) -> None:
    edit = sa.text("UPDATE audit_event SET payload = :payload WHERE seq = 2")
    tamper(metadata_store, edit.bindparams(payload='{"i":0}'))
    report = verify(metadata_store)
    assert (report.ok, report.broken_seq) == (False, 2)


def test_a_deleted_event_in_the_middle(
    metadata_store: MetadataStore, events: list[AuditEvent]
) -> None:
    tamper(metadata_store, audit.delete().where(audit.c.seq == 3))
    report = verify(metadata_store)
    assert not report.ok
    assert report.broken_seq == 3
    assert report.reason == "event 3 is missing"


def test_a_recomputed_hash_breaks_the_next_link(
    metadata_store: MetadataStore, events: list[AuditEvent]
) -> None:
    e = events[2]
    forged = event_hash(e.seq, e.at, e.actor, e.action, e.target, '{"i":99}', e.prev_hash)
    tamper(
        metadata_store,
        audit.update().where(audit.c.seq == 3).values(payload='{"i":99}', hash=forged),
    )
    report = verify(metadata_store)
    assert not report.ok
    assert report.broken_seq == 4
    assert report.reason == "its prev_hash does not match the event before it"


def test_an_edited_last_hash(metadata_store: MetadataStore, events: list[AuditEvent]) -> None:
    tamper(metadata_store, audit.update().where(audit.c.seq == 5).values(hash="blake3:" + "0" * 64))
    assert verify(metadata_store).broken_seq == 5


def test_events_appended_after_verification_extend_the_chain(
    metadata_store: MetadataStore, events: list[AuditEvent]
) -> None:
    with metadata_store.write("carol") as tx:
        sixth = tx.audit("model.rolled_back", "model:churn")
    assert (sixth.seq, sixth.prev_hash) == (6, events[-1].hash)
    assert verify(metadata_store).head == sixth.hash


def test_query_filters_by_literal_prefixes_exact_actor_and_pages(
    metadata_store: MetadataStore,
) -> None:
    from conveyor.store.metadata.audit import query_events

    with metadata_store.write("ana") as tx:
        tx.audit("model.promoted", "model:churn_v2/1", {})
        tx.audit("model.promoted", "model:churnXv2/1", {})  # `_` is no wildcard
        tx.audit("model%.odd", "model:churn_v2/2", {})
    with metadata_store.write("al") as tx:
        tx.audit("model.promoted", "model:churn_v2/3", {})
    with metadata_store.read() as conn:
        found = query_events(conn, target="model:churn_v2")
        assert [e.target for e in found] == [
            "model:churn_v2/3",
            "model:churn_v2/2",
            "model:churn_v2/1",
        ]
        assert [e.action for e in query_events(conn, action="model%")] == ["model%.odd"]
        assert [e.actor for e in query_events(conn, actor="al")] == ["al"]
        assert query_events(conn, actor="a") == []  # exact, not a prefix
        newest, *_ = found
        older = query_events(conn, target="model:churn_v2", before=newest.seq, limit=1)
        assert [e.target for e in older] == ["model:churn_v2/2"]
        since = query_events(conn, since=newest.at)
        assert newest.seq in {e.seq for e in since}
