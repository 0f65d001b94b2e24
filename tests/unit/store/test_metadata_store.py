"""Write transactions commit a change and its audit event together, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from conveyor.core.errors import ConflictError
from conveyor.store.metadata import insert_ignore, schema

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore, Tx

UTC = dt.UTC


def add_model(tx: Tx, name: str) -> None:
    tx.conn.execute(schema.model.insert().values(name=name, created_by=tx.actor, created_at=tx.at))
    tx.audit("model.created", f"model:{name}", {"name": name})


def model_names(store: MetadataStore) -> list[str]:
    with store.read() as conn:
        return list(conn.execute(sa.select(schema.model.c.name).order_by("name")).scalars())


def audit_rows(store: MetadataStore) -> list[sa.RowMapping]:
    with store.read() as conn:
        query = sa.select(schema.audit_event).order_by(schema.audit_event.c.seq)
        return list(conn.execute(query).mappings())


# ------------------------------------------------------------------ transactions


def test_write_commits_the_row_and_its_audit_event(metadata_store: MetadataStore) -> None:
    with metadata_store.write("alice") as tx:
        add_model(tx, "churn")
        at = tx.at

    assert model_names(metadata_store) == ["churn"]
    [event] = audit_rows(metadata_store)
    assert (event["seq"], event["actor"], event["action"], event["target"]) == (
        1,
        "alice",
        "model.created",
        "model:churn",
    )
    assert event["payload"] == '{"name":"churn"}'
    assert event["prev_hash"] == "genesis"
    assert event["at"] == at


def test_an_exception_inside_write_rolls_back_the_row_and_the_event(
    metadata_store: MetadataStore,
) -> None:
    with metadata_store.write("alice") as tx:
        add_model(tx, "first")

    with pytest.raises(RuntimeError, match="crash after the audit"):  # noqa: PT012
        with metadata_store.write("alice") as tx:
            add_model(tx, "second")
            raise RuntimeError("crash after the audit")

    assert model_names(metadata_store) == ["first"]
    assert [e["target"] for e in audit_rows(metadata_store)] == ["model:first"]
    # The chain carries on from the last committed event, with no gap.
    with metadata_store.write("bob") as tx:
        assert tx.audit("model.created", "model:third").seq == 2


def test_conveyor_errors_raised_inside_write_pass_through_unchanged(
    metadata_store: MetadataStore,
) -> None:
    conflict = ConflictError("version 3 is archived")
    with pytest.raises(ConflictError) as info:  # noqa: PT012
        with metadata_store.write("alice") as tx:
            add_model(tx, "churn")
            raise conflict
    assert info.value is conflict
    assert model_names(metadata_store) == []


def test_a_failed_statement_rolls_back_the_whole_transaction(
    metadata_store: MetadataStore,
) -> None:
    with metadata_store.write("alice") as tx:
        add_model(tx, "churn")
    with pytest.raises(sa.exc.IntegrityError):  # noqa: PT012
        with metadata_store.write("alice") as tx:
            add_model(tx, "other")
            add_model(tx, "churn")  # duplicate primary key
    assert model_names(metadata_store) == ["churn"]
    assert len(audit_rows(metadata_store)) == 1


def test_tx_time_is_aware_utc_and_shared_by_the_events_of_one_transaction(
    metadata_store: MetadataStore,
) -> None:
    with metadata_store.write("alice") as tx:
        first = tx.audit("a.b", "t:1")
        second = tx.audit("a.b", "t:2")
    assert tx.at.utcoffset() == dt.timedelta(0)
    assert first.at == second.at == tx.at
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash


def test_read_sees_one_snapshot(metadata_store: MetadataStore) -> None:
    count = sa.select(sa.func.count()).select_from(schema.model)
    with metadata_store.read() as conn:
        before = conn.execute(count).scalar_one()
        with metadata_store.write("alice") as tx:
            add_model(tx, "churn")
        assert conn.execute(count).scalar_one() == before == 0
    assert model_names(metadata_store) == ["churn"]


# ------------------------------------------------------------------ UTCDateTime


def test_utc_datetime_round_trips_aware_utc_with_microseconds(
    metadata_store: MetadataStore,
) -> None:
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    values = {
        "utc": dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC),
        "ist": dt.datetime(2026, 3, 4, 10, 36, 7, 654321, tzinfo=ist),
        "whole": dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
    }
    with metadata_store.write("alice") as tx:
        for rule, since in values.items():
            tx.conn.execute(schema.alert.insert().values(rule=rule, state="firing", since=since))

    with metadata_store.read() as conn:
        rows = dict(conn.execute(sa.select(schema.alert.c.rule, schema.alert.c.since)).all())
    for rule, since in values.items():
        assert rows[rule] == since
        assert rows[rule].tzinfo is not None
        assert rows[rule].utcoffset() == dt.timedelta(0)
        assert rows[rule].microsecond == since.microsecond
    assert rows["ist"] == dt.datetime(2026, 3, 4, 5, 6, 7, 654321, tzinfo=UTC)


def test_utc_datetime_orders_by_instant_not_by_local_clock(
    metadata_store: MetadataStore,
) -> None:
    # 09:00+05:30 is 03:30 UTC: earlier than 04:00 UTC although its wall clock reads later.
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    with metadata_store.write("alice") as tx:
        tx.conn.execute(
            schema.alert.insert(),
            [
                {"rule": "later", "state": "s", "since": dt.datetime(2026, 1, 1, 4, tzinfo=UTC)},
                {"rule": "earlier", "state": "s", "since": dt.datetime(2026, 1, 1, 9, tzinfo=ist)},
            ],
        )
    with metadata_store.read() as conn:
        query = sa.select(schema.alert.c.rule).order_by(schema.alert.c.since)
        assert list(conn.execute(query).scalars()) == ["earlier", "later"]
        since = dt.datetime(2026, 1, 1, 3, 45, tzinfo=UTC)
        query = sa.select(schema.alert.c.rule).where(schema.alert.c.since > since)
        assert list(conn.execute(query).scalars()) == ["later"]


def test_utc_datetime_rejects_naive_datetimes(metadata_store: MetadataStore) -> None:
    naive = dt.datetime(2026, 3, 4, 5, 6, 7)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        with metadata_store.write("alice") as tx:
            tx.conn.execute(schema.alert.insert().values(rule="r", state="s", since=naive))
    with metadata_store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.alert)).scalar() == 0


def test_sqlite_timestamps_written_by_other_programs_are_read_as_utc(
    sqlite_store: MetadataStore,
) -> None:
    # Conveyor writes naive UTC text; text with an offset, or without microseconds, is honoured.
    with sqlite_store.write("alice") as tx:
        for rule, text in [
            ("plain", "2026-03-04 05:06:07"),
            ("offset", "2026-03-04T10:36:07.5+05:30"),
            ("zulu", "2026-03-04T05:06:07Z"),
        ]:
            tx.conn.execute(
                sa.text("INSERT INTO alert (rule, state, since) VALUES (:r, 's', :t)"),
                {"r": rule, "t": text},
            )
    with sqlite_store.read() as conn:
        rows = dict(conn.execute(sa.select(schema.alert.c.rule, schema.alert.c.since)).all())
    assert rows == {
        "plain": dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        "offset": dt.datetime(2026, 3, 4, 5, 6, 7, 500000, tzinfo=UTC),
        "zulu": dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    }


# ------------------------------------------------------------------ JSON columns


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"b": [1, 2.5, null], "a": "x"}', {"b": [1, 2.5, None], "a": "x"}),
        (' {"a": 1}\n', {"a": 1}),  # whitespace around the document, as other programs write
        ("[]", []),
        ('"text"', "text"),
    ],
)
def test_json_columns_read_back_what_was_stored(
    metadata_store: MetadataStore, text: str, value: object
) -> None:
    with metadata_store.write("alice") as tx:
        tx.conn.execute(schema.alert.insert().values(rule="r", state="s", since=tx.at, labels=None))
        tx.conn.execute(
            sa.text("UPDATE alert SET labels = CAST(:t AS " + _json_type(metadata_store) + ")"),
            {"t": text},
        )
    with metadata_store.read() as conn:
        assert conn.execute(sa.select(schema.alert.c.labels)).scalar_one() == value


def _json_type(store: MetadataStore) -> str:
    return "JSONB" if store.dialect == "postgresql" else "TEXT"


def test_json_text_that_is_not_json_is_an_error(sqlite_store: MetadataStore) -> None:
    with sqlite_store.write("alice") as tx:
        tx.conn.execute(
            sa.text("INSERT INTO alert (rule, state, since, labels) VALUES ('r', 's', :t, :l)"),
            {"t": "2026-01-01 00:00:00", "l": '{"a": 1} trailing'},
        )
    with sqlite_store.read() as conn, pytest.raises(ValueError, match="Extra data"):
        conn.execute(sa.select(schema.alert.c.labels)).scalar_one()


# ------------------------------------------------------------------ insert_ignore


def artifact_row(digest: str, uri: str) -> dict[str, object]:
    at = dt.datetime(2026, 1, 1, tzinfo=UTC)
    return {"digest": digest, "size": 1, "media_type": "x", "uri": uri, "created_at": at}


def test_insert_ignore_keeps_the_first_row(metadata_store: MetadataStore) -> None:
    with metadata_store.write("alice") as tx:
        insert_ignore(tx.conn, schema.artifact, [artifact_row("blake3:a", "first")])
    with metadata_store.write("alice") as tx:
        insert_ignore(
            tx.conn,
            schema.artifact,
            [artifact_row("blake3:a", "second"), artifact_row("blake3:b", "new")],
        )
        insert_ignore(tx.conn, schema.artifact, [])
    with metadata_store.read() as conn:
        rows = conn.execute(
            sa.select(schema.artifact.c.digest, schema.artifact.c.uri).order_by("digest")
        ).all()
    assert [tuple(r) for r in rows] == [("blake3:a", "first"), ("blake3:b", "new")]


def test_insert_ignore_keeps_the_first_of_duplicates_in_one_batch(
    metadata_store: MetadataStore,
) -> None:
    # One pipeline run can output the same bytes twice; both land in one flush.
    with metadata_store.write("alice") as tx:
        insert_ignore(
            tx.conn,
            schema.artifact,
            [artifact_row("blake3:c", "one"), artifact_row("blake3:c", "two")],
        )
    with metadata_store.read() as conn:
        uris = conn.execute(sa.select(schema.artifact.c.uri)).scalars().all()
    assert uris == ["one"]
