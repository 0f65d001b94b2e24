"""The alert state machine on a simulated clock, its rows and audit events, notifications."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING

import httpx
import sqlalchemy as sa

from conveyor.monitoring import (
    AlertEvent,
    WebhookNotifier,
    evaluate,
    list_alerts,
    list_incidents,
    parse_rules,
    record_window,
)
from conveyor.monitoring.notify import slack_payload
from conveyor.store.metadata.schema import alert, audit_event

if TYPE_CHECKING:
    import pytest

    from conveyor.monitoring import Transition
    from conveyor.store.metadata import MetadataStore

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=5)

RULES = parse_rules(
    """\
alerts:
  - name: latency
    metric: latency.p99
    op: ">"
    threshold: 0.5
    resolve_below: 0.3
    window: 5m
    for: 10m
    actions: [open_incident, halt_rollout, rollback]
    runbook: runbooks/latency.md
"""
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def notify(self, event: AlertEvent) -> None:
        self.events.append(event)


def _replay(store: MetadataStore, values: list[float | None]) -> list[list[Transition]]:
    """One 5-minute window per value (None: no window), evaluated at each window's end."""
    out = []
    recorder = Recorder()
    for i, value in enumerate(values):
        end = T0 + STEP * (i + 1)
        if value is not None:
            record_window(
                store,
                model="churn",
                version=2,
                start=end - STEP,
                end=end,
                metrics={"rows": 100, "latency.p99": value},
            )
        out.append(evaluate(store, RULES, model="churn", now=end, notifiers={"log": recorder}))
    return out


def _states(rounds: list[list[Transition]]) -> list[str]:
    return [t.after for r in rounds for t in r]


def test_a_transient_spike_goes_pending_and_back_without_firing(
    metadata_store: MetadataStore,
) -> None:
    rounds = _replay(metadata_store, [0.1, 0.9, 0.9, 0.1, 0.1])
    assert _states(rounds) == ["pending", "inactive"]
    assert list_incidents(metadata_store) == []


def test_persistent_degradation_fires_after_for_and_resolves_with_hysteresis(
    metadata_store: MetadataStore,
) -> None:
    # pending at 0.9 (t1); still held 10 min later (t3): firing; 0.4 is below the threshold
    # but above resolve_below, so it stays firing; 0.2 resolves; 0.9 again: pending.
    rounds = _replay(metadata_store, [0.1, 0.9, 0.8, 0.9, 0.4, None, 0.2, 0.9])
    assert [(i, t.before, t.after) for i, r in enumerate(rounds) for t in r] == [
        (1, "inactive", "pending"),
        (3, "pending", "firing"),
        (6, "firing", "resolved"),
        (7, "resolved", "pending"),
    ]
    fired = rounds[3][0]
    assert fired.at == T0 + STEP * 4
    assert fired.value == 0.9
    # No rollout and nothing to roll back to: the actions say so, the incident opens anyway.
    assert fired.actions["halt_rollout"] == {"skipped": "no rollout in progress"}
    assert fired.actions["rollback"] == {"error": "no model named 'churn'"}
    (incident,) = list_incidents(metadata_store)
    assert incident.id == fired.incident_id
    assert incident.rule == "latency"
    assert incident.runbook == "runbooks/latency.md"
    assert incident.evidence["value"] == 0.9
    assert incident.evidence["versions"] == [2]
    assert [w["value"] for w in incident.evidence["windows"]] == [0.9]
    with metadata_store.read() as conn:
        (state,) = list_alerts(conn)
        actions = [
            (r.action, r.target)
            for r in conn.execute(sa.select(audit_event).order_by(audit_event.c.seq))
        ]
    assert state.state == "pending"
    assert state.fired_at == T0 + STEP * 4
    assert state.resolved_at == T0 + STEP * 7
    assert actions.count(("alert.firing", "alert:churn/latency")) == 1
    assert ("incident.opened", f"incident:{incident.id}") in actions


def test_no_data_keeps_the_state(metadata_store: MetadataStore) -> None:
    rounds = _replay(metadata_store, [0.9, None, None, None])
    assert _states(rounds) == ["pending"]


def test_webhook_posts_slack_json_and_never_logs_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(500 if len(seen) > 1 else 200)

    url = "https://hooks.example.com/services/T000/B000/s3cr3tPart"
    client = httpx.Client(transport=httpx.MockTransport(handler))
    notifier = WebhookNotifier(url, client=client)
    event = AlertEvent(
        rule="latency",
        model="churn",
        state="firing",
        value=0.9,
        threshold=0.5,
        metric="latency.p99",
        op=">",
        severity="page",
        runbook="runbooks/latency.md",
        incident_id="abc",
    )
    notifier.notify(event)
    assert seen == [slack_payload(event)]
    assert seen[0]["text"] == (
        "[FIRING] latency on model 'churn': latency.p99 = 0.9 (> 0.5), severity page; incident abc"
    )
    with caplog.at_level(logging.DEBUG):
        notifier.notify(event)  # the receiver fails: logged, counted, not raised
    assert notifier.failures == 1
    assert "hooks.example.com" in caplog.text
    assert "s3cr3tPart" not in caplog.text
    assert "s3cr3tPart" not in repr(notifier)


def test_for_advances_only_on_windows_not_seen_before(metadata_store: MetadataStore) -> None:
    # A monitor evaluating every minute over 5-minute windows: one bad window must not be
    # counted five times toward a 3-minute `for:`; the second bad window fires the rule.
    rules = parse_rules(
        "alerts:\n  - {name: lat, metric: latency.p99, op: '>', threshold: 0.5, for: 3m}\n"
    )
    minute = dt.timedelta(minutes=1)
    seen: list[tuple[int, str]] = []
    for tick in range(11):
        now = T0 + minute * tick
        if tick in (0, 5, 10):
            record_window(
                metadata_store,
                model="churn",
                version=2,
                start=now - STEP,
                end=now,
                metrics={"rows": 100, "latency.p99": 0.9 if tick < 10 else 0.1},
            )
        seen += [(tick, t.after) for t in evaluate(metadata_store, rules, model="churn", now=now)]
    assert seen == [(0, "pending"), (5, "firing"), (10, "resolved")]
    with metadata_store.read() as conn:
        (state,) = list_alerts(conn)
        row = conn.execute(sa.select(alert.c.window_end, alert.c.labels)).one()
    assert state.fired_at == T0 + minute * 5
    assert (row.window_end, row.labels) == (T0 + minute * 10, None)


def test_a_pending_rule_without_a_new_window_does_not_fall_back(
    metadata_store: MetadataStore,
) -> None:
    # The newest window is bad; a second evaluation of the same window changes nothing, and a
    # healthy new window ends the pending state.
    rules = parse_rules(
        "alerts:\n  - {name: lat, metric: latency.p99, op: '>', threshold: 0.5, for: 10m}\n"
    )
    record_window(
        metadata_store,
        model="churn",
        version=2,
        start=T0,
        end=T0 + STEP,
        metrics={"latency.p99": 0.9},
    )
    first = evaluate(metadata_store, rules, model="churn", now=T0 + STEP)
    again = evaluate(metadata_store, rules, model="churn", now=T0 + STEP + dt.timedelta(minutes=2))
    record_window(
        metadata_store,
        model="churn",
        version=2,
        start=T0 + STEP,
        end=T0 + 2 * STEP,
        metrics={"latency.p99": 0.1},
    )
    healthy = evaluate(metadata_store, rules, model="churn", now=T0 + 2 * STEP)
    assert [t.after for t in first] == ["pending"]
    assert again == []
    assert [(t.before, t.after) for t in healthy] == [("pending", "inactive")]
