"""Reading the registry: versions, models, stage history, gate results, the routing token.

The current stage of a version is the stage of its newest ``stage_history`` row (the highest
id: writes are serialised, so ids follow commit order). Nothing is ever updated in place, so
every past state stays readable.

The statements themselves live in ``_rows``, shared with the writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.registry._rows import (
    current_stage,
    fetch_history,
    fetch_production,
    fetch_version,
    require_model,
    to_version,
    versions_query,
)
from conveyor.registry.records import GateResult, ModelSummary
from conveyor.store.metadata.schema import gate_result, model_version
from conveyor.store.metadata.schema import model as model_table
from conveyor.store.metadata.schema import stage_history as stage_history_table

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable

    from conveyor.registry.records import ModelVersion, StageChange
    from conveyor.store.metadata import MetadataStore

__all__ = [
    "AttemptSummary",
    "gate_results",
    "get_version",
    "last_attempts",
    "list_models",
    "list_versions",
    "production_since",
    "production_version",
    "routing_token",
    "stage_history",
]


def get_version(store: MetadataStore, model: str, version: int) -> ModelVersion:
    """One version of a model, with its current stage.

    Raises:
        NotFoundError: no such model, or no such version of it.
    """
    with store.read() as conn:
        return fetch_version(conn, model, version)


def list_models(store: MetadataStore) -> list[ModelSummary]:
    """Every registered model, by name, with version counts and the version in production."""
    current = sa.select(
        model_version.c.model, model_version.c.version, current_stage().label("stage")
    ).subquery("current")
    with store.read() as conn:
        models = conn.execute(sa.select(model_table).order_by(model_table.c.name)).mappings().all()
        counts = conn.execute(
            sa.select(
                current.c.model, current.c.stage, sa.func.count(), sa.func.max(current.c.version)
            ).group_by(current.c.model, current.c.stage)
        ).all()
    latest: dict[str, int] = {}
    stages: dict[str, dict[str, int]] = {}
    production: dict[str, int] = {}
    for name, stage, count, top in counts:
        stages.setdefault(name, {})[stage] = count
        latest[name] = max(latest.get(name, 0), top)
        if stage == "production":
            production[name] = top
    return [
        ModelSummary(
            name=m["name"],
            description=m["description"],
            created_by=m["created_by"],
            created_at=m["created_at"],
            versions=sum(stages.get(m["name"], {}).values()),
            latest_version=latest.get(m["name"]),
            production_version=production.get(m["name"]),
            stages=stages.get(m["name"], {}),
        )
        for m in models
    ]


def list_versions(store: MetadataStore, model: str) -> list[ModelVersion]:
    """Every version of ``model``, oldest first.

    Raises:
        NotFoundError: no model of that name.
    """
    with store.read() as conn:
        require_model(conn, model)
        rows = conn.execute(versions_query(model).order_by(model_version.c.version)).mappings()
        return [to_version(r) for r in rows]


def production_version(store: MetadataStore, model: str) -> ModelVersion | None:
    """The version of ``model`` in production, or ``None`` when none is.

    Raises:
        NotFoundError: no model of that name.
    """
    with store.read() as conn:
        require_model(conn, model)
        return fetch_production(conn, model)


def stage_history(store: MetadataStore, model: str) -> list[StageChange]:
    """Every stage change of every version of ``model``, oldest first.

    Raises:
        NotFoundError: no model of that name.
    """
    with store.read() as conn:
        require_model(conn, model)
        return fetch_history(conn, model)


def gate_results(store: MetadataStore, model: str, version: int | None = None) -> list[GateResult]:
    """Every recorded check of ``model`` (or of one version), oldest first, passed or not.

    Raises:
        NotFoundError: no such model or version.
    """
    query = sa.select(gate_result).where(gate_result.c.model == model).order_by(gate_result.c.id)
    with store.read() as conn:
        if version is None:
            require_model(conn, model)
        else:
            fetch_version(conn, model, version)
            query = query.where(gate_result.c.version == version)
        rows = conn.execute(query).mappings().all()
    return [
        GateResult(
            model=r["model"],
            version=r["version"],
            stage=r["stage"],
            check=r["check"],
            passed=r["passed"],
            observed=r["observed"],
            threshold=r["threshold"],
            detail=(r["details"] or {}).get("detail", ""),
            at=r["created_at"],
            evidence=(r["details"] or {}).get("evidence"),
            policy_digest=r["policy_digest"],
            dataset_version=r["dataset_version"],
        )
        for r in rows
    ]


def routing_token(store: MetadataStore) -> int:
    """A number that grows whenever any stage changes; servers poll it to know when to reload.

    One index lookup (``max`` of the primary key), so polling it every second is cheap.
    """
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(stage_history_table.c.id), 0))
            ).scalar_one()
        )


# -- for pages of many versions: one statement each, in the caller's read transaction --------


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
        sa.select(sa.func.max(stage_history_table.c.at)).where(
            stage_history_table.c.model == model,
            stage_history_table.c.version == version,
            stage_history_table.c.stage == "production",
        )
    ).scalar_one_or_none()
    return at
