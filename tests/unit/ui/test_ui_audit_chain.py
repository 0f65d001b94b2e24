"""The audit page's chain verdict: reused while the head is unchanged, redone when an event is
appended or the time to live has passed, so an edited event is always found."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from conveyor.access import add_user, bootstrap_admin
from conveyor.project import open_project
from conveyor.store.metadata.schema import audit_event
from conveyor.ui._pages import ChainVerdicts

if TYPE_CHECKING:
    from pathlib import Path


def test_chain_verdicts(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yaml").write_text("{}\n")
    with open_project(tmp_path) as project:
        store = project.metadata
        bootstrap_admin(store, "root", actor="root")
        add_user(store, "ann", "viewer", actor="root")
        cached = ChainVerdicts(ttl=dt.timedelta(hours=1))
        fresh = ChainVerdicts(ttl=dt.timedelta(0))
        first, at = cached.verdict(project)
        assert first.ok
        assert first.events == 2
        assert cached.verdict(project) == (first, at)  # same head: reused

        add_user(store, "bob", "viewer", actor="root")
        appended, _ = cached.verdict(project)
        assert appended.events == 3  # a new head: verified again

        # An edit that leaves the head alone, as an attacker with DDL rights would make it.
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_no_update")
            conn.execute(
                sa.update(audit_event).where(audit_event.c.seq == 1).values(actor="mallory")
            )
        assert cached.verdict(project)[0].ok  # within its time to live, the old verdict
        tampered, _ = fresh.verdict(project)
        assert not tampered.ok
        assert tampered.broken_seq == 1
