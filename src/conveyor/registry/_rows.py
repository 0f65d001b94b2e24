"""Statements and row conversions shared by the registry's queries and its writes.

Each function takes a Connection, so promotion and rollback can read inside their own write
transaction and see exactly the state they are about to change.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import NotFoundError
from conveyor.registry.records import ModelVersion, StageChange
from conveyor.store.metadata.schema import model as model_table
from conveyor.store.metadata.schema import model_version, stage_history

if TYPE_CHECKING:
    import datetime as dt

# Statements on the write paths are built once, with bound parameters: building and
# cache-keying a statement each call cost SQLAlchemy more than SQLite took to run it (~60 us
# against ~20 us for these small ones), and a registration runs several.
_INSERT_STAGE = sa.insert(stage_history)
_MODEL_EXISTS = sa.select(model_table.c.name).where(model_table.c.name == sa.bindparam("model"))
_LATEST_NUMBER = sa.select(sa.func.max(model_version.c.version)).where(
    model_version.c.model == sa.bindparam("model")
)

__all__ = [
    "add_stage",
    "current_stage",
    "fetch_history",
    "fetch_production",
    "fetch_version",
    "fetch_version_and_production",
    "no_model",
    "require_model",
    "to_version",
    "versions_query",
]


def current_stage() -> sa.ScalarSelect[str]:
    """The stage of the ``model_version`` row in the enclosing query: its newest history row.

    A correlated subquery, so each version costs one index seek on (model, version); it is
    ~70x faster on SQLite than joining a ``max(id) GROUP BY`` subquery (0.5 ms against 36 ms
    for 300 versions).
    """
    return (
        sa.select(stage_history.c.stage)
        .where(
            stage_history.c.model == model_version.c.model,
            stage_history.c.version == model_version.c.version,
        )
        .order_by(stage_history.c.id.desc())
        .limit(1)
        .correlate(model_version)
        .scalar_subquery()
    )


def versions_query(model_name: str | None = None, *, stage: str | None = None) -> sa.Select[Any]:
    """Versions with their current stage; only those in ``stage`` when it is given."""
    current = current_stage()
    query = sa.select(model_version, current.label("stage"))
    if model_name is not None:
        query = query.where(model_version.c.model == model_name)
    if stage is not None:
        query = query.where(current == stage)
    return query


_VERSION = versions_query().where(
    model_version.c.model == sa.bindparam("model"),
    model_version.c.version == sa.bindparam("version"),
)
# Promotion keeps at most one version in production; the order only makes that explicit.
_PRODUCTION = (
    versions_query(stage="production")
    .where(model_version.c.model == sa.bindparam("model"))
    .order_by(model_version.c.version.desc())
    .limit(1)
)
# What a promotion reads first, in one round trip: the version, and the one in production.
_VERSION_AND_PRODUCTION = sa.union_all(
    versions_query().where(
        model_version.c.model == sa.bindparam("model"),
        model_version.c.version == sa.bindparam("version"),
    ),
    versions_query(stage="production").where(model_version.c.model == sa.bindparam("model")),
)


def to_version(row: sa.RowMapping) -> ModelVersion:
    return ModelVersion(
        model=row["model"],
        version=row["version"],
        artifact_digest=row["artifact_digest"],
        run_id=row["run_id"],
        metrics={str(k): float(v) for k, v in (row["metrics"] or {}).items()},
        created_by=row["created_by"],
        created_at=row["created_at"],
        # Every version gets a stage row when it is registered; the fallback is defensive only.
        stage=row["stage"] or "experimental",
    )


def _model_exists(conn: sa.Connection, name: str) -> bool:
    return conn.execute(_MODEL_EXISTS, {"model": name}).first() is not None


def require_model(conn: sa.Connection, name: str) -> None:
    if not _model_exists(conn, name):
        raise no_model(conn, name)


def no_model(conn: sa.Connection, name: str) -> NotFoundError:
    names = list(conn.execute(sa.select(model_table.c.name)).scalars())
    close = difflib.get_close_matches(name, names, n=1)
    hint = "see `conveyor model list` for the registered models"
    if close:
        hint = f"did you mean '{close[0]}'? {hint}"
    elif not names:
        hint = "no model is registered yet; `conveyor run` registers one"
    return NotFoundError(f"no model named '{name}'", hint=hint)


def fetch_version(conn: sa.Connection, model_name: str, version: int) -> ModelVersion:
    row = conn.execute(_VERSION, {"model": model_name, "version": version}).mappings().first()
    if row is not None:
        return to_version(row)
    require_model(conn, model_name)
    latest = _latest_number(conn, model_name)
    have = f"latest is {latest}" if latest is not None else "it has no versions yet"
    raise NotFoundError(
        f"model '{model_name}' has no version {version} ({have})",
        hint=f"see `conveyor model list {model_name}`",
    )


def _latest_number(conn: sa.Connection, model_name: str) -> int | None:
    """The highest version number of a model, or None when it has no versions."""
    latest: int | None = conn.execute(_LATEST_NUMBER, {"model": model_name}).scalar_one_or_none()
    return latest


def fetch_version_and_production(
    conn: sa.Connection, model_name: str, version: int
) -> tuple[ModelVersion, ModelVersion | None]:
    """:func:`fetch_version` and :func:`fetch_production` in one query (see promotion)."""
    rows = conn.execute(
        _VERSION_AND_PRODUCTION, {"model": model_name, "version": version}
    ).mappings()
    found = [to_version(row) for row in rows]
    current = next((v for v in found if v.version == version), None)
    if current is None:
        return fetch_version(conn, model_name, version), None  # raises NotFoundError
    production = [v for v in found if v.stage == "production"]
    return current, max(production, key=lambda v: v.version) if production else None


def fetch_production(conn: sa.Connection, model_name: str) -> ModelVersion | None:
    row = conn.execute(_PRODUCTION, {"model": model_name}).mappings().first()
    return to_version(row) if row is not None else None


def fetch_history(
    conn: sa.Connection, model_name: str, *, stages: tuple[str, ...] | None = None
) -> list[StageChange]:
    """The stage changes of a model, oldest first; only those to ``stages`` when given."""
    query = sa.select(stage_history).where(stage_history.c.model == model_name)
    if stages is not None:
        query = query.where(stage_history.c.stage.in_(stages))
    rows = conn.execute(query.order_by(stage_history.c.id)).mappings()
    return [
        StageChange(
            id=r["id"],
            model=r["model"],
            version=r["version"],
            stage=r["stage"],
            actor=r["actor"],
            reason=r["reason"],
            at=r["at"],
        )
        for r in rows
    ]


def add_stage(
    conn: sa.Connection,
    *,
    model: str,
    version: int,
    stage: str,
    actor: str,
    reason: str,
    at: dt.datetime,
) -> None:
    """Append one stage_history row; the version's stage is now ``stage``."""
    conn.execute(
        _INSERT_STAGE,
        {
            "model": model,
            "version": version,
            "stage": stage,
            "actor": actor,
            "reason": reason,
            "at": at,
        },
    )
