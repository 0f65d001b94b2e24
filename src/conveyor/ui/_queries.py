"""Read-only queries the dashboard needs and no service offers yet, each one statement.

They read the tables of their services (the registry's gate results and stage history, the
deploy service's serving windows, the data gate's ``dataset_check`` rows, the audit trail) and
return plain values; nothing here writes. A page of 1,000 versions must not run 1,000 queries:
each function answers for a whole page at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.store.metadata.audit import AuditEvent
from conveyor.store.metadata.schema import (
    audit_event,
    dataset_check,
    dataset_version,
    gate_result,
    serving_window,
    stage_history,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable

__all__ = [
    "AttemptSummary",
    "AuditFilter",
    "audit_page",
    "dataset_checks",
    "last_attempts",
    "production_since",
    "serving_windows",
]


@dataclass(frozen=True)
class AttemptSummary:
    """The newest promotion attempt of a version, at a glance."""

    version: int
    stage: str
    at: dt.datetime
    passed: int
    failed: int
    failing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.failed == 0


def last_attempts(
    conn: sa.Connection, model: str, versions: Iterable[int] | None = None
) -> dict[int, AttemptSummary]:
    """The newest gate attempt of each of ``versions`` of ``model`` (every version: None).

    An attempt is the rows one promotion wrote in one transaction: same version, stage, time.
    """
    g = gate_result
    newest = sa.select(g.c.version, sa.func.max(g.c.created_at).label("at")).where(
        g.c.model == model
    )
    if versions is not None:
        newest = newest.where(g.c.version.in_(list(versions)))
    sub = newest.group_by(g.c.version).subquery()
    rows = conn.execute(
        sa.select(g.c.version, g.c.stage, g.c.check, g.c.passed, g.c.created_at)
        .join(sub, sa.and_(g.c.version == sub.c.version, g.c.created_at == sub.c.at))
        .where(g.c.model == model)
        .order_by(g.c.version, g.c.id)
    ).all()
    found: dict[int, dict[str, Any]] = {}
    for version, stage, check, passed, at in rows:
        entry = found.setdefault(version, {"stage": stage, "at": at, "ok": 0, "failing": []})
        if passed:
            entry["ok"] += 1
        else:
            entry["failing"].append(check)
    return {
        v: AttemptSummary(v, e["stage"], e["at"], e["ok"], len(e["failing"]), tuple(e["failing"]))
        for v, e in found.items()
    }


def production_since(conn: sa.Connection, model: str, version: int) -> dt.datetime | None:
    """When ``version`` of ``model`` last entered production."""
    at: dt.datetime | None = conn.execute(
        sa.select(sa.func.max(stage_history.c.at)).where(
            stage_history.c.model == model,
            stage_history.c.version == version,
            stage_history.c.stage == "production",
        )
    ).scalar_one_or_none()
    return at


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


@dataclass(frozen=True)
class DatasetCheck:
    """A validation of a dataset version: its verdict, its findings, and the reference and
    current distribution per column it recorded (``conveyor.data.gate.stored_charts``; empty
    for checks recorded without them)."""

    dataset_version: str
    reference_version: str | None
    passed: bool
    at: dt.datetime
    summary: dict[str, Any]
    findings: tuple[dict[str, Any], ...]
    dataset_name: str | None = None
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)
    charts_omitted: int = 0

    @property
    def dataset(self) -> str:
        """The dataset's registered name, else its version id (not every check registers it)."""
        return self.dataset_name or self.dataset_version


def dataset_checks(conn: sa.Connection, *, limit: int = 20) -> list[DatasetCheck]:
    """The newest ``limit`` validations (``conveyor data check`` and the data gate), newest
    first, each with the findings written in its transaction."""
    d = dataset_check
    summaries = conn.execute(
        sa.select(d, dataset_version.c.name.label("dataset_name"))
        .outerjoin(dataset_version, dataset_version.c.id == d.c.dataset_version)
        .where(d.c.check == "data_checks", d.c.column.is_(None))
        .order_by(d.c.id.desc())
        .limit(limit)
    ).all()
    if not summaries:
        return []
    findings = conn.execute(
        sa.select(d)
        .where(
            d.c.dataset_version.in_({s.dataset_version for s in summaries}),
            d.c.created_at.in_({s.created_at for s in summaries}),
            d.c.check != "data_checks",
        )
        .order_by(d.c.id)
    ).all()
    by_run: dict[tuple[str, dt.datetime], list[dict[str, Any]]] = {}
    for f in findings:
        by_run.setdefault((f.dataset_version, f.created_at), []).append(
            {
                "check": f.check,
                "column": f.column,
                "blocking": f.blocking,
                "observed": f.observed,
                "threshold": f.threshold,
                "message": (f.details or {}).get("message", ""),
            }
        )
    out = []
    for s in summaries:
        details = dict(s.details or {})
        charts = details.pop("charts", None)
        omitted = details.pop("charts_omitted", 0)
        out.append(
            DatasetCheck(
                dataset_version=s.dataset_version,
                reference_version=s.reference_version,
                passed=s.passed,
                at=s.created_at,
                summary=details,
                findings=tuple(by_run.get((s.dataset_version, s.created_at), [])),
                dataset_name=s.dataset_name,
                charts=charts if isinstance(charts, dict) else {},
                charts_omitted=omitted if isinstance(omitted, int) else 0,
            )
        )
    return out


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page shows: prefixes of action and target, an exact actor, and events
    before ``before`` (a ``seq``: the page after the one ending there)."""

    action: str = ""
    target: str = ""
    actor: str = ""
    before: int | None = None


def audit_page(conn: sa.Connection, where: AuditFilter, *, limit: int = 50) -> list[AuditEvent]:
    """The newest ``limit`` events matching ``where``, newest first."""
    a = audit_event
    query = sa.select(a).order_by(a.c.seq.desc()).limit(limit)
    if where.action:
        query = query.where(a.c.action.startswith(where.action, autoescape=True))
    if where.target:
        query = query.where(a.c.target.startswith(where.target, autoescape=True))
    if where.actor:
        query = query.where(a.c.actor == where.actor)
    if where.before is not None:
        query = query.where(a.c.seq < where.before)
    return [AuditEvent(**dict(r)) for r in conn.execute(query).mappings()]
