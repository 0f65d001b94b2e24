"""Evaluating alert rules: the state machine, its rows, and what a firing rule does.

Each (rule, model) has one ``alert`` row whose state moves::

    inactive --condition--> pending --held for `for:`--> firing --past resolve bound--> resolved
       ^                       |                                                         |
       +----condition gone-----+                  resolved --condition again--> pending -+

A transient spike makes a rule pending and then inactive again, and nobody hears of it; only a
condition that holds for the rule's whole ``for:`` duration fires. A rule moves only on a window
it has not read before: the row remembers the end of the newest window it read, so a
monitor evaluating more often than windows are produced does not count one bad window again and
again toward ``for:``. A firing rule resolves only
once its value is past ``resolve_below``/``resolve_above`` (hysteresis), so a value wobbling
around the threshold does not page on every evaluation.

Time comes from the caller (``now``), never from the wall clock, so a simulation can run hours
of traffic in seconds. Every transition is audited in the transaction that writes it. Actions of
a firing rule (roll back, halt the rollout, open an incident) run after that transaction, each
in its own, because each is a service call with its own transaction and audit event; their
outcomes go into the incident's evidence and the notification.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import ConveyorError, NotFoundError
from conveyor.monitoring.notify import AlertEvent
from conveyor.monitoring.windows import read_windows
from conveyor.store.metadata.schema import alert, monitoring_window

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from conveyor.monitoring.notify import Notifier
    from conveyor.monitoring.rules import AlertRule
    from conveyor.monitoring.windows import Window
    from conveyor.store.metadata import MetadataStore

__all__ = ["AlertState", "Transition", "evaluate", "list_alerts"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertState:
    """One ``alert`` row."""

    rule: str
    model: str
    state: str
    since: dt.datetime
    value: float | None
    fired_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    incident_id: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "model": self.model,
            "state": self.state,
            "since": self.since.isoformat(),
            "value": self.value,
            "fired_at": self.fired_at.isoformat() if self.fired_at else None,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "incident_id": self.incident_id,
        }


@dataclass(frozen=True)
class Transition:
    """A state change of one alert at one evaluation."""

    rule: str
    model: str
    before: str
    after: str
    value: float
    at: dt.datetime
    incident_id: str | None = None
    actions: dict[str, Any] = field(default_factory=dict)


def list_alerts(conn: sa.Connection, *, model: str | None = None) -> list[AlertState]:
    """Every alert row (one per rule and model), by model and rule."""
    query = sa.select(alert).order_by(alert.c.model, alert.c.rule)
    if model is not None:
        query = query.where(alert.c.model == model)
    return [_state(r) for r in conn.execute(query)]


def _state(r: Any) -> AlertState:
    return AlertState(
        rule=r.rule,
        model=r.model,
        state=r.state,
        since=r.since,
        value=r.value,
        fired_at=r.fired_at,
        resolved_at=r.resolved_at,
        incident_id=r.incident_id,
        evidence=dict(r.evidence or {}),
    )


def _recent(conn: sa.Connection, model: str, rule: AlertRule, now: dt.datetime) -> list[Window]:
    """The windows a rule reads at ``now``: those ending within ``rule.window`` of the newest
    window that has ended, unless that one is stale (it ended more than its own length ago, so
    the next one is missing: the log has stopped, and old numbers must not keep deciding)."""
    newest = conn.execute(
        sa.select(monitoring_window.c.start, monitoring_window.c.end)
        .where(monitoring_window.c.model == model, monitoring_window.c.end <= now)
        .order_by(monitoring_window.c.end.desc())
        .limit(1)
    ).first()
    if newest is None or now - newest.end > newest.end - newest.start:
        return []
    return read_windows(conn, model, since=newest.end - rule.window, until=newest.end)


def _value(rule: AlertRule, windows: Sequence[Window]) -> tuple[float | None, list[Window]]:
    """The mean of the rule's metric over the windows that have it (None: no data)."""
    used = [w for w in windows if isinstance(w.metrics.get(rule.metric), int | float)]
    if not used:
        return None, []
    return sum(float(w.metrics[rule.metric]) for w in used) / len(used), used


def _next(rule: AlertRule, row: AlertState | None, value: float, now: dt.datetime) -> str:
    state = row.state if row else "inactive"
    if state in ("inactive", "resolved"):
        if not rule.holds(value):
            return state
        return "firing" if rule.for_ <= dt.timedelta(0) else "pending"
    if state == "pending":
        assert row is not None
        if not rule.holds(value):
            return "inactive"
        return "firing" if now - row.since >= rule.for_ else "pending"
    return "resolved" if rule.recovered(value) else "firing"


def evaluate(
    store: MetadataStore,
    rules: Sequence[AlertRule],
    *,
    model: str,
    now: dt.datetime,
    notifiers: Mapping[str, Notifier] | None = None,
    actor: str = "monitor",
) -> list[Transition]:
    """Evaluate every rule for ``model`` at ``now``; persist, notify and act on transitions.

    The rule's value is the mean of its metric over the windows that ended within its
    ``window`` of the newest ended window. A rule without such data keeps its state: no data
    is not good news, and the server being idle must not resolve an incident.
    """
    notifiers = notifiers or {}
    transitions: list[Transition] = []
    for rule in rules:
        with store.read() as conn:
            windows = _recent(conn, model, rule, now)
        value, used = _value(rule, windows)
        if value is None:
            continue
        newest = used[-1].end
        with store.write(actor) as tx:
            found = tx.conn.execute(
                sa.select(alert).where(alert.c.model == model, alert.c.rule == rule.name)
            ).first()
            if found is not None and found.window_end is not None and newest <= found.window_end:
                continue  # nothing new since the last evaluation: the state stays as it is
            row = _state(found) if found is not None else None
            after = _next(rule, row, value, now)
            before = row.state if row else "inactive"
            evidence = _evidence(rule, value, used) if after == "firing" else None
            _write(tx.conn, rule, model, row, after, value, now, evidence, newest)
            if after != before:
                tx.audit(
                    f"alert.{after}",
                    f"alert:{model}/{rule.name}",
                    {
                        "value": value,
                        "metric": rule.metric,
                        "threshold": rule.threshold,
                        "from": before,
                        "at": now.isoformat(),
                    },
                )
        if after == before:
            continue
        transition = Transition(rule.name, model, before, after, value, now)
        if after == "firing":
            assert evidence is not None
            transition = _act(store, rule, model, before, value, now, evidence, actor)
        if after in ("firing", "resolved"):
            _notify(rule, model, transition, notifiers)
        transitions.append(transition)
    return transitions


def _write(
    conn: sa.Connection,
    rule: AlertRule,
    model: str,
    row: AlertState | None,
    after: str,
    value: float,
    now: dt.datetime,
    evidence: dict[str, Any] | None,
    window_end: dt.datetime,
) -> None:
    values: dict[str, Any] = {
        "state": after,
        "value": value,
        "updated_at": now,
        "window_end": window_end,
    }
    if row is None or row.state != after:
        values["since"] = now
    if after == "firing" and (row is None or row.state != "firing"):
        values.update(fired_at=now, resolved_at=None, incident_id=None, evidence=evidence)
    if after == "resolved" and row is not None and row.state == "firing":
        values["resolved_at"] = now
    if row is None:
        conn.execute(sa.insert(alert).values(rule=rule.name, model=model, **values))
    else:
        conn.execute(
            sa.update(alert)
            .where(alert.c.model == model, alert.c.rule == rule.name)
            .values(**values)
        )


def _evidence(rule: AlertRule, value: float, used: Sequence[Window]) -> dict[str, Any]:
    """What the incident and the notification show: the rule, the numbers, the versions."""
    prefix = rule.metric.split(".", 1)[0] + "."
    last = used[-1].metrics
    return {
        "rule": rule.to_dict(),
        "metric": rule.metric,
        "value": value,
        "threshold": rule.threshold,
        "op": rule.op,
        "versions": sorted({w.version for w in used if w.version is not None}),
        "windows": [
            {
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "version": w.version,
                "value": w.metrics[rule.metric],
                "rows": w.metrics.get("rows"),
            }
            for w in used
        ],
        "last_window": {k: v for k, v in last.items() if k.startswith(prefix) or k == "rows"},
        "runbook": rule.runbook,
    }


def _act(
    store: MetadataStore,
    rule: AlertRule,
    model: str,
    before: str,
    value: float,
    now: dt.datetime,
    evidence: dict[str, Any],
    actor: str,
) -> Transition:
    """Run a firing rule's actions; the incident (if asked) is opened last, with their outcomes."""
    reason = f"alert {rule.name}: {rule.metric}={value:.4g} {rule.op} {rule.threshold:g}"
    outcomes: dict[str, Any] = {}
    if "halt_rollout" in rule.actions:
        from conveyor.deploy.controller import abort

        try:
            rollout, aborted = abort(store, model, actor=actor, reason=reason)
            outcomes["halt_rollout"] = {"rollout": rollout.id, "incident": aborted.id}
        except NotFoundError:
            outcomes["halt_rollout"] = {"skipped": "no rollout in progress"}
        except ConveyorError as exc:
            outcomes["halt_rollout"] = {"error": exc.message}
    if "rollback" in rule.actions:
        from conveyor.registry import rollback

        try:
            outcomes["rollback"] = rollback(
                store, model=model, actor=actor, reason=reason
            ).to_dict()
        except ConveyorError as exc:
            outcomes["rollback"] = {"error": exc.message}
    incident_id = None
    if "open_incident" in rule.actions:
        from conveyor.monitoring.incidents import open_alert_incident

        incident_id = open_alert_incident(
            store,
            rule=rule,
            model=model,
            evidence={**evidence, "actions": outcomes},
            at=now,
            actor=actor,
        )
    if outcomes or incident_id:
        with store.write(actor) as tx:
            tx.conn.execute(
                sa.update(alert)
                .where(alert.c.model == model, alert.c.rule == rule.name)
                .values(incident_id=incident_id, evidence={**evidence, "actions": outcomes})
            )
    logger.warning("alert firing", extra={"rule": rule.name, "model": model, "value": value})
    return Transition(rule.name, model, before, "firing", value, now, incident_id, outcomes)


def _notify(
    rule: AlertRule, model: str, transition: Transition, notifiers: Mapping[str, Notifier]
) -> None:
    event = AlertEvent(
        rule=rule.name,
        model=model,
        state=transition.after,
        value=transition.value,
        threshold=rule.threshold,
        metric=rule.metric,
        op=rule.op,
        severity=rule.severity,
        runbook=rule.runbook,
        incident_id=transition.incident_id,
        actions=transition.actions,
    )
    for name in rule.notify:
        notifier = notifiers.get(name)
        if notifier is None:
            continue
        try:
            notifier.notify(event)
        except Exception:  # a notifier must never stop the evaluation of the other rules
            logger.exception("notifier %r failed for alert %s", name, rule.name)
