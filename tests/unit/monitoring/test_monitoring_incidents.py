"""Incidents: acknowledge and resolve, their rules; the timeline; the CLI face."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from conveyor.core.digest import digest_bytes
from conveyor.core.errors import ConflictError, NotFoundError
from conveyor.monitoring import (
    acknowledge,
    evaluate,
    get_incident,
    list_incidents,
    parse_rules,
    record_window,
    resolve,
    timeline,
)
from conveyor.registry import parse_policy, promote, register_version, review

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.store.metadata import MetadataStore

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
RULES = parse_rules(
    "alerts:\n  - {name: nulls, metric: quality.null_share, op: '>', threshold: 0.1,"
    " actions: [open_incident, rollback], runbook: runbooks/error-spike.md}\n"
)


def _fire(store: MetadataStore) -> str:
    record_window(
        store,
        model="churn",
        version=2,
        start=T0,
        end=T0 + dt.timedelta(minutes=5),
        metrics={"quality.null_share": 0.4},
    )
    (fired,) = evaluate(store, RULES, model="churn", now=T0 + dt.timedelta(minutes=5))
    assert fired.incident_id is not None
    return fired.incident_id


@pytest.fixture
def two_in_production(metadata_store: MetadataStore) -> MetadataStore:
    policy = parse_policy("stages:\n  production:\n    approvals: {count: 1}\n")
    for tag in ("v1", "v2"):
        version, _ = register_version(
            metadata_store,
            model="churn",
            artifact_digest=digest_bytes(tag.encode()),
            metrics={"accuracy": 0.9},
            run_id=None,
            actor="scientist",
        )
        promote(
            metadata_store,
            model="churn",
            version=version.version,
            to="candidate",
            policy=policy,
            actor="lead",
        )
        review(
            metadata_store,
            model="churn",
            version=version.version,
            stage="production",
            actor="reviewer",
            decision="approve",
            comment="ok",
        )
        promote(
            metadata_store,
            model="churn",
            version=version.version,
            to="production",
            policy=policy,
            actor="lead",
        )
    return metadata_store


def test_acknowledge_then_resolve(metadata_store: MetadataStore) -> None:
    incident_id = _fire(metadata_store)
    acked = acknowledge(metadata_store, incident_id, actor="oncall", at=T0 + dt.timedelta(hours=1))
    assert (acked.state, acked.acked_by) == ("acknowledged", "oncall")
    with pytest.raises(ConflictError, match="acknowledged already"):
        acknowledge(metadata_store, incident_id, actor="other")
    done = resolve(metadata_store, incident_id, actor="oncall", note="upstream fixed")
    assert (done.state, done.resolved_by) == ("resolved", "oncall")
    assert get_incident(metadata_store, incident_id).resolved_at is not None
    with pytest.raises(ConflictError, match="resolved already"):
        resolve(metadata_store, incident_id, actor="oncall")
    with pytest.raises(NotFoundError, match="no incident 'nope'"):
        get_incident(metadata_store, "nope")
    assert list_incidents(metadata_store, state="open") == []


def test_timeline_joins_stages_approvals_alerts_rollbacks_and_incidents(
    two_in_production: MetadataStore,
) -> None:
    incident_id = _fire(two_in_production)
    resolve(two_in_production, incident_id, actor="oncall")
    events = timeline(two_in_production, "churn")
    kinds = [e.kind for e in events]
    assert {"stage", "approval", "alert", "rollback", "incident"} <= set(kinds)
    assert [e.at for e in events] == sorted(e.at for e in events)
    rollbacks = [e.summary for e in events if e.kind == "rollback"]
    assert rollbacks[0].startswith("v1 -> production by monitor: restored by rollback from v2")
    assert any(e.summary.startswith("nulls firing (quality.null_share = 0.4)") for e in events)
    assert any(e.summary == "incident resolved by oncall" for e in events)
    assert any(e.summary == "v2 approve for production by reviewer: ok" for e in events)


def test_cli_incident_list_show_ack_resolve_timeline(tmp_path: Path) -> None:
    from conveyor.project import open_project

    (tmp_path / "conveyor.yaml").write_text("project: demo\n")
    with open_project(tmp_path) as project:
        incident_id = _fire(project.metadata)
    runner = CliRunner()
    from conveyor.cli._main import cli as root

    def run(*args: str) -> str:
        result = runner.invoke(root, ["-C", str(tmp_path), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert incident_id in run("incident", "list")
    shown = json.loads(run("incident", "show", incident_id, "--json"))
    assert shown["rule"] == "nulls"
    assert shown["evidence"]["value"] == 0.4
    assert "acknowledged by" in run("incident", "ack", incident_id)
    assert "resolved by" in run("incident", "resolve", incident_id, "--note", "fixed")
    assert "incident resolved by" in run("incident", "timeline", "churn")
    listed = json.loads(run("alerts", "list", "--json"))
    assert [(a["rule"], a["state"]) for a in listed] == [("nulls", "firing")]
    assert "nulls: firing" in run("monitor", "status")
