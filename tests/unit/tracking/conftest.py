"""Helpers for the tracking tests: counting rows and reading the audit log of a store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from conveyor.store.metadata import schema, verify_chain

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore


class Rows:
    """What one store holds, as the tests read it."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def metrics(self, run_id: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(schema.metric)
        if run_id is not None:
            query = query.where(schema.metric.c.run_id == run_id)
        with self.store.read() as conn:
            return int(conn.execute(query).scalar_one())

    def run(self, run_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = conn.execute(sa.select(schema.run).where(schema.run.c.id == run_id)).mappings()
            return dict(row.one())

    def events(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(action, target, payload) of every audit event, oldest first; the chain must hold."""
        return [(a, t, p) for a, t, p, _at in self.timed_events()]

    def timed_events(self) -> list[tuple[str, str, dict[str, Any], Any]]:
        """As :meth:`events`, with each event's time (that of its transaction)."""
        event = schema.audit_event.c
        query = sa.select(event.action, event.target, event.payload, event.at).order_by(event.seq)
        with self.store.read() as conn:
            assert verify_chain(conn).ok
            return [(a, t, json.loads(p), at) for a, t, p, at in conn.execute(query)]


@pytest.fixture
def rows(metadata_store: MetadataStore) -> Rows:
    return Rows(metadata_store)
