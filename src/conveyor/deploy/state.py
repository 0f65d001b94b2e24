"""Rows of the deploy layer: routing, rollouts (``deployment``), serving windows, incidents.

Every state change (routing, a rollout's phase or step, an incident) is written in one write
transaction together with its audit event, by the functions of :mod:`conveyor.deploy.controller`
that call these helpers with the transaction's connection. Serving windows are telemetry, not
state: they are appended without an audit event and pruned after :data:`WINDOW_RETENTION`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.ids import new_id
from conveyor.deploy.records import ACTIVE_PHASES, Incident, Rollout, Routing
from conveyor.store.metadata.schema import deployment, incident, routing, serving_window

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from conveyor.store.metadata import MetadataStore

__all__ = [
    "WINDOW_RETENTION",
    "ServedWindow",
    "active_rollout",
    "get_rollout",
    "insert_rollout",
    "list_incidents",
    "list_rollouts",
    "open_incident",
    "read_routing",
    "read_windows",
    "record_windows",
    "routing_generation",
    "serving_windows",
    "update_rollout",
    "write_routing",
]

#: Serving windows older than this are deleted when new ones are written.
WINDOW_RETENTION = dt.timedelta(days=2)
#: At most this many analyses of one step are kept on the rollout row (the newest).
MAX_ANALYSES = 50


# -- routing -------------------------------------------------------------------------------------


def read_routing(store: MetadataStore) -> dict[str, Routing]:
    """Every model's stored routing (models without a row serve their production version)."""
    with store.read() as conn:
        return {r.model: r for r in (_routing(row) for row in conn.execute(sa.select(routing)))}


def routing_generation(conn: sa.Connection) -> int:
    """The sum of every routing row's generation: changes whenever any routing changes."""
    return int(
        conn.execute(sa.select(sa.func.coalesce(sa.func.sum(routing.c.generation), 0))).scalar_one()
    )


def write_routing(
    conn: sa.Connection,
    *,
    model: str,
    at: dt.datetime,
    canary_version: int | None = None,
    canary_weight: float = 0.0,
    shadow_version: int | None = None,
    shadow_sample: float = 0.0,
    deployment_id: int | None = None,
) -> Routing:
    """Set ``model``'s routing (in the caller's write transaction); its generation grows by one."""
    current = conn.execute(
        sa.select(routing.c.generation).where(routing.c.model == model)
    ).scalar_one_or_none()
    values: dict[str, Any] = {
        "canary_version": canary_version,
        "canary_weight": float(canary_weight),
        "shadow_version": shadow_version,
        "shadow_sample": float(shadow_sample),
        "deployment_id": deployment_id,
        "updated_at": at,
    }
    if current is None:
        generation = 1
        conn.execute(sa.insert(routing).values(model=model, generation=generation, **values))
    else:
        generation = int(current) + 1
        conn.execute(
            sa.update(routing)
            .where(routing.c.model == model)
            .values(generation=generation, **values)
        )
    return Routing(
        model=model,
        canary_version=canary_version,
        canary_weight=float(canary_weight),
        shadow_version=shadow_version,
        shadow_sample=float(shadow_sample),
        deployment_id=deployment_id,
        generation=generation,
    )


def _routing(row: Any) -> Routing:
    return Routing(
        model=row.model,
        canary_version=row.canary_version,
        canary_weight=float(row.canary_weight),
        shadow_version=row.shadow_version,
        shadow_sample=float(row.shadow_sample),
        deployment_id=row.deployment_id,
        generation=int(row.generation),
    )


# -- rollouts ------------------------------------------------------------------------------------


def insert_rollout(conn: sa.Connection, values: Mapping[str, Any]) -> int:
    """Insert a ``deployment`` row; its id."""
    result = conn.execute(sa.insert(deployment).values(**values))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def update_rollout(conn: sa.Connection, rollout: Rollout, **values: Any) -> bool:
    """Change a rollout if nobody else changed it since ``rollout`` was read (compare-and-set).

    Returns:
        False when its revision moved on (another controller acted first); nothing changed.
    """
    if "analyses" in values:
        values["analysis"] = list(values.pop("analyses"))[-MAX_ANALYSES:]
    result = conn.execute(
        sa.update(deployment)
        .where(deployment.c.id == rollout.id, deployment.c.revision == rollout.revision)
        .values(revision=rollout.revision + 1, **values)
    )
    return bool(result.rowcount == 1)


def get_rollout(conn: sa.Connection, rollout_id: int) -> Rollout | None:
    row = conn.execute(sa.select(deployment).where(deployment.c.id == rollout_id)).first()
    return _rollout(row) if row is not None else None


def active_rollout(conn: sa.Connection, model: str) -> Rollout | None:
    """The progressing or paused rollout of ``model``, if any (there is at most one)."""
    row = conn.execute(
        sa.select(deployment)
        .where(deployment.c.model == model, deployment.c.phase.in_(ACTIVE_PHASES))
        .order_by(deployment.c.id.desc())
        .limit(1)
    ).first()
    return _rollout(row) if row is not None else None


def list_rollouts(
    conn: sa.Connection, *, model: str | None = None, active_only: bool = False, limit: int = 20
) -> list[Rollout]:
    """Rollouts, newest first."""
    query = sa.select(deployment).order_by(deployment.c.id.desc()).limit(limit)
    if model is not None:
        query = query.where(deployment.c.model == model)
    if active_only:
        query = query.where(deployment.c.phase.in_(ACTIVE_PHASES))
    return [_rollout(row) for row in conn.execute(query)]


def _rollout(row: Any) -> Rollout:
    plan = row.weights or {}
    return Rollout(
        id=int(row.id),
        model=row.model,
        stable_version=row.stable_version,
        candidate_version=int(row.candidate_version),
        strategy=row.mode,
        steps=tuple(plan.get("steps", ())),
        shadow_sample=float(plan.get("shadow_sample", 0.0)),
        phase=row.phase,
        step=int(row.step),
        step_started_at=row.step_started_at,
        failures=int(row.failures),
        revision=int(row.revision),
        settings=dict(row.settings or {}),
        analyses=tuple(row.analysis or ()),
        actor=row.actor or "",
        reason=row.reason or "",
        created_at=row.created_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
    )


# -- serving windows -----------------------------------------------------------------------------


def record_windows(
    store: MetadataStore, replica: str, windows: Iterable[Mapping[str, Any]], *, prune: bool
) -> None:
    """Append serving windows (``model``, ``version``, ``role``, ``started_at``, ``ended_at``,
    ``summary``) for ``replica``; with ``prune``, delete windows past the retention too.

    Raises:
        InfrastructureError: the store is unreachable (the caller keeps the windows to retry).
    """
    rows = [{**w, "replica": replica} for w in windows]
    if not rows and not prune:
        return
    with store.write(f"server:{replica}") as tx:
        if rows:
            tx.conn.execute(sa.insert(serving_window), rows)
        if prune:
            tx.conn.execute(
                sa.delete(serving_window).where(
                    serving_window.c.ended_at < tx.at - WINDOW_RETENTION
                )
            )


def read_windows(
    conn: sa.Connection, model: str, *, since: dt.datetime
) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """The summaries of ``model``'s windows that ended after ``since``, by (version, role)."""
    rows = conn.execute(
        sa.select(serving_window.c.version, serving_window.c.role, serving_window.c.summary).where(
            serving_window.c.model == model, serving_window.c.ended_at > since
        )
    )
    found: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for version, role, summary in rows:
        found.setdefault((int(version), role), []).append(summary)
    return found


@dataclass(frozen=True)
class ServedWindow:
    """One serving window of one version in one role (``live``, ``canary``, ``shadow``...)."""

    version: int
    role: str
    started_at: dt.datetime
    ended_at: dt.datetime
    summary: dict[str, Any]


def serving_windows(
    conn: sa.Connection, model: str, *, since: dt.datetime, limit: int = 2000
) -> list[ServedWindow]:
    """``model``'s serving windows that ended after ``since``, oldest first (the newest
    ``limit``)."""
    w = serving_window
    rows = conn.execute(
        sa.select(w.c.version, w.c.role, w.c.started_at, w.c.ended_at, w.c.summary)
        .where(w.c.model == model, w.c.ended_at > since)
        .order_by(w.c.ended_at.desc(), w.c.id.desc())
        .limit(limit)
    ).all()
    return [ServedWindow(int(r[0]), r[1], r[2], r[3], dict(r[4] or {})) for r in reversed(rows)]


# -- incidents -----------------------------------------------------------------------------------


def open_incident(
    conn: sa.Connection, *, title: str, model: str, evidence: dict[str, Any], at: dt.datetime
) -> Incident:
    """Insert an open incident (in the caller's write transaction)."""
    found = Incident(
        id=new_id(), title=title, state="open", model=model, opened_at=at, evidence=evidence
    )
    conn.execute(
        sa.insert(incident).values(
            id=found.id,
            title=title,
            state=found.state,
            model=model,
            evidence=evidence,
            opened_at=at,
        )
    )
    return found


def list_incidents(conn: sa.Connection, *, model: str | None = None) -> list[Incident]:
    """Incidents, newest first."""
    query = sa.select(incident).order_by(incident.c.opened_at.desc(), incident.c.id.desc())
    if model is not None:
        query = query.where(incident.c.model == model)
    return [
        Incident(
            id=row.id,
            title=row.title,
            state=row.state,
            model=row.model,
            opened_at=row.opened_at,
            evidence=dict(row.evidence or {}),
            resolved_at=row.resolved_at,
        )
        for row in conn.execute(query)
    ]
