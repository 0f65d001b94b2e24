"""Incidents after the alert: open one with the evidence, acknowledge it, resolve it, and see the
timeline of what happened to the model around it.

An incident is opened by a firing rule with the ``open_incident`` action (here) or by an aborted
rollout (:mod:`conveyor.deploy.controller`); both are rows of ``incident``. The state moves
``open -> acknowledged -> resolved`` (acknowledging is optional), each change audited.

The timeline merges, oldest first, everything that changes what a model serves or why:
stage changes (promotions, archivings, rollbacks), rollouts (started, ended), approvals and
rejections, alert transitions (from the audit trail, which keeps every one, where the ``alert``
row keeps only the latest) and incidents.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import ConflictError, NotFoundError
from conveyor.store.metadata.schema import (
    approval,
    audit_event,
    deployment,
    incident,
    stage_history,
)

if TYPE_CHECKING:
    from conveyor.monitoring.rules import AlertRule
    from conveyor.store.metadata import MetadataStore

__all__ = [
    "IncidentView",
    "TimelineEvent",
    "acknowledge",
    "get_incident",
    "list_incidents",
    "open_alert_incident",
    "resolve",
    "timeline",
]


@dataclass(frozen=True)
class IncidentView:
    """One incident with who handled it."""

    id: str
    title: str
    state: str
    model: str | None
    opened_at: dt.datetime
    evidence: dict[str, Any] = field(default_factory=dict)
    rule: str | None = None
    runbook: str | None = None
    acked_at: dt.datetime | None = None
    acked_by: str | None = None
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "title": self.title,
            "state": self.state,
            "model": self.model,
            "rule": self.rule,
            "runbook": self.runbook,
            "opened_at": iso(self.opened_at),
            "acked_at": iso(self.acked_at),
            "acked_by": self.acked_by,
            "resolved_at": iso(self.resolved_at),
            "resolved_by": self.resolved_by,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class TimelineEvent:
    """One line of a model's timeline."""

    at: dt.datetime
    kind: str  # stage | rollout | approval | alert | incident
    summary: str
    ref: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "summary": self.summary,
            "ref": self.ref,
        }


def _view(r: Any) -> IncidentView:
    return IncidentView(
        id=r.id,
        title=r.title,
        state=r.state,
        model=r.model,
        opened_at=r.opened_at,
        evidence=dict(r.evidence or {}),
        rule=r.rule,
        runbook=r.runbook,
        acked_at=r.acked_at,
        acked_by=r.acked_by,
        resolved_at=r.resolved_at,
        resolved_by=r.resolved_by,
    )


def open_alert_incident(
    store: MetadataStore,
    *,
    rule: AlertRule,
    model: str,
    evidence: dict[str, Any],
    at: dt.datetime,
    actor: str,
) -> str:
    """Open an incident for a firing rule; returns its id."""
    from conveyor.deploy.state import open_incident

    title = f"{rule.name}: {rule.metric} {rule.op} {rule.threshold:g} on '{model}'"
    with store.write(actor) as tx:
        found = open_incident(tx.conn, title=title, model=model, evidence=evidence, at=at)
        tx.conn.execute(
            sa.update(incident)
            .where(incident.c.id == found.id)
            .values(rule=rule.name, runbook=rule.runbook)
        )
        tx.audit(
            "incident.opened",
            f"incident:{found.id}",
            {"model": model, "rule": rule.name, "title": title, "at": at.isoformat()},
        )
    return found.id


def list_incidents(
    store: MetadataStore, *, model: str | None = None, state: str | None = None
) -> list[IncidentView]:
    """Incidents, newest first."""
    query = sa.select(incident).order_by(incident.c.opened_at.desc(), incident.c.id.desc())
    if model is not None:
        query = query.where(incident.c.model == model)
    if state is not None:
        query = query.where(incident.c.state == state)
    with store.read() as conn:
        return [_view(r) for r in conn.execute(query)]


def get_incident(store: MetadataStore, incident_id: str) -> IncidentView:
    """One incident.

    Raises:
        NotFoundError: no incident with that id.
    """
    with store.read() as conn:
        row = conn.execute(sa.select(incident).where(incident.c.id == incident_id)).first()
    if row is None:
        raise NotFoundError(f"no incident {incident_id!r}", hint="see `conveyor incident list`")
    return _view(row)


def acknowledge(
    store: MetadataStore, incident_id: str, *, actor: str, at: dt.datetime | None = None
) -> IncidentView:
    """Mark an open incident as being handled by ``actor``.

    Raises:
        NotFoundError: no such incident.
        ConflictError: it is acknowledged or resolved already.
    """
    return _change(store, incident_id, "acknowledged", actor, at, ("open",))


def resolve(
    store: MetadataStore,
    incident_id: str,
    *,
    actor: str,
    note: str = "",
    at: dt.datetime | None = None,
) -> IncidentView:
    """Close an incident.

    Raises:
        NotFoundError: no such incident.
        ConflictError: it is resolved already.
    """
    return _change(store, incident_id, "resolved", actor, at, ("open", "acknowledged"), note)


def _change(
    store: MetadataStore,
    incident_id: str,
    state: str,
    actor: str,
    at: dt.datetime | None,
    allowed: tuple[str, ...],
    note: str = "",
) -> IncidentView:
    with store.write(actor) as tx:
        when = at or tx.at
        row = tx.conn.execute(sa.select(incident).where(incident.c.id == incident_id)).first()
        if row is None:
            raise NotFoundError(f"no incident {incident_id!r}", hint="see `conveyor incident list`")
        if row.state not in allowed:
            raise ConflictError(
                f"incident {incident_id} is {row.state} already",
                hint=f"see `conveyor incident show {incident_id}`",
            )
        values: dict[str, Any] = {"state": state}
        if state == "acknowledged":
            values.update(acked_at=when, acked_by=actor)
        else:
            values.update(resolved_at=when, resolved_by=actor)
        tx.conn.execute(sa.update(incident).where(incident.c.id == incident_id).values(**values))
        tx.audit(
            f"incident.{state}",
            f"incident:{incident_id}",
            {"model": row.model, "note": note, "at": when.isoformat()},
        )
        updated = tx.conn.execute(sa.select(incident).where(incident.c.id == incident_id)).one()
    return _view(updated)


def timeline(
    store: MetadataStore, model: str, *, since: dt.datetime | None = None
) -> list[TimelineEvent]:
    """Everything that happened to ``model`` (see the module docstring), oldest first."""
    events: list[TimelineEvent] = []
    with store.read() as conn:
        for r in conn.execute(sa.select(stage_history).where(stage_history.c.model == model)):
            what = f"v{r.version} -> {r.stage} by {r.actor}" + (f": {r.reason}" if r.reason else "")
            kind = "rollback" if "rollback" in (r.reason or "") else "stage"
            events.append(TimelineEvent(r.at, kind, what, f"model:{model}/{r.version}"))
        for r in conn.execute(sa.select(deployment).where(deployment.c.model == model)):
            ref = f"rollout:{r.id}"
            events.append(
                TimelineEvent(
                    r.created_at,
                    "rollout",
                    f"rollout of v{r.candidate_version} over v{r.stable_version} started "
                    f"({r.mode})",
                    ref,
                )
            )
            if r.ended_at is not None:
                events.append(
                    TimelineEvent(
                        r.ended_at,
                        "rollout",
                        f"rollout of v{r.candidate_version} ended: {r.phase}"
                        + (f" ({r.reason})" if r.reason else ""),
                        ref,
                    )
                )
        for r in conn.execute(sa.select(approval).where(approval.c.model == model)):
            events.append(
                TimelineEvent(
                    r.created_at,
                    "approval",
                    f"v{r.version} {r.decision} for {r.stage} by {r.user}"
                    + (f": {r.comment}" if r.comment else ""),
                    f"model:{model}/{r.version}",
                )
            )
        alerts = sa.select(audit_event).where(audit_event.c.target.like(f"alert:{model}/%"))
        for r in conn.execute(alerts):
            payload = json.loads(r.payload)
            rule = r.target.split("/", 1)[1]
            events.append(
                TimelineEvent(
                    _at(payload, r.at),
                    "alert",
                    f"{rule} {r.action.removeprefix('alert.')} "
                    f"({payload.get('metric')} = {payload.get('value'):.4g})",
                    r.target,
                )
            )
        for r in conn.execute(sa.select(incident).where(incident.c.model == model)):
            events.append(
                TimelineEvent(
                    r.opened_at, "incident", f"incident opened: {r.title}", f"incident:{r.id}"
                )
            )
            if r.acked_at is not None:
                events.append(
                    TimelineEvent(
                        r.acked_at,
                        "incident",
                        f"incident acknowledged by {r.acked_by}",
                        f"incident:{r.id}",
                    )
                )
            if r.resolved_at is not None:
                events.append(
                    TimelineEvent(
                        r.resolved_at,
                        "incident",
                        f"incident resolved by {r.resolved_by}",
                        f"incident:{r.id}",
                    )
                )
    if since is not None:
        events = [e for e in events if e.at >= since]
    order = {"stage": 0, "rollback": 0, "rollout": 1, "approval": 2, "alert": 3, "incident": 4}
    return sorted(events, key=lambda e: (e.at, order.get(e.kind, 9)))


def _at(payload: dict[str, Any], default: dt.datetime) -> dt.datetime:
    """The time an event happened: the payload's (simulated or evaluation) time, if it has one."""
    text = payload.get("at")
    return dt.datetime.fromisoformat(text) if isinstance(text, str) else default
