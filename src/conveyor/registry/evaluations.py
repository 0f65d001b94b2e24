"""Stored evaluations: a version's numbers on one dataset version, under one set of settings.

An evaluation row ties a model version to the exact dataset version (content digest) it was
measured on and to the digest of the evaluation settings (slices, sensitive attributes,
threshold, bins). The per-row predictions are kept as an artifact, so comparing two versions on
the same dataset version pairs their predictions row by row without predicting again; two
versions are only ever compared through evaluations on the same dataset version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.registry._rows import fetch_version
from conveyor.store.metadata.lineage import add_edges, model_node, node
from conveyor.store.metadata.schema import evaluation

if TYPE_CHECKING:
    import datetime as dt

    from conveyor.store.metadata import MetadataStore

__all__ = ["StoredEvaluation", "find_evaluation", "list_evaluations", "record_evaluation"]


@dataclass(frozen=True)
class StoredEvaluation:
    """One row of ``evaluation``."""

    id: int
    model: str
    version: int
    dataset_version: str
    config_digest: str | None
    metrics: dict[str, float | None]
    report: dict[str, Any]
    predictions_digest: str | None
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "dataset_version": self.dataset_version,
            "config_digest": self.config_digest,
            "metrics": dict(self.metrics),
            "report": self.report,
            "predictions_digest": self.predictions_digest,
            "created_at": self.created_at.isoformat(),
        }


def _to_stored(r: sa.RowMapping) -> StoredEvaluation:
    return StoredEvaluation(
        id=r["id"],
        model=r["model"],
        version=r["version"],
        dataset_version=r["dataset_version"],
        config_digest=r["config_digest"],
        metrics=dict(r["metrics"] or {}),
        report=dict(r["report"] or {}),
        predictions_digest=r["predictions_digest"],
        created_at=r["created_at"],
    )


def find_evaluation(
    conn: sa.Connection, *, model: str, version: int, dataset_version: str, config_digest: str
) -> StoredEvaluation | None:
    """The newest evaluation of a version on ``dataset_version`` under ``config_digest``."""
    row = (
        conn.execute(
            sa.select(evaluation)
            .where(
                evaluation.c.model == model,
                evaluation.c.version == version,
                evaluation.c.dataset_version == dataset_version,
                evaluation.c.config_digest == config_digest,
            )
            .order_by(evaluation.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return _to_stored(row) if row is not None else None


def list_evaluations(store: MetadataStore, model: str, version: int) -> list[StoredEvaluation]:
    """Every evaluation of a version, oldest first.

    Raises:
        NotFoundError: no such model or version.
    """
    with store.read() as conn:
        fetch_version(conn, model, version)
        rows = conn.execute(
            sa.select(evaluation)
            .where(evaluation.c.model == model, evaluation.c.version == version)
            .order_by(evaluation.c.id)
        ).mappings()
        return [_to_stored(r) for r in rows]


def record_evaluation(
    store: MetadataStore,
    *,
    model: str,
    version: int,
    dataset_version: str,
    config_digest: str,
    metrics: dict[str, float | None],
    report: dict[str, Any],
    predictions_digest: str | None,
    actor: str,
) -> StoredEvaluation:
    """Store an evaluation with its ``model.evaluated`` audit event; returns the stored row.

    Raises:
        NotFoundError: no such model or version.
    """
    with store.write(actor) as tx:
        fetch_version(tx.conn, model, version)
        new_id = tx.conn.execute(
            sa.insert(evaluation)
            .values(
                model=model,
                version=version,
                dataset_version=dataset_version,
                config_digest=config_digest,
                metrics=metrics,
                slices=report.get("slices"),
                report=report,
                predictions_digest=predictions_digest,
                created_at=tx.at,
            )
            .returning(evaluation.c.id)
        ).scalar_one()
        evaluated = node("evaluation", int(new_id))
        add_edges(
            tx.conn,
            [
                (model_node(model, version), evaluated, "evaluated"),
                (node("dataset", dataset_version), evaluated, "evaluated_on"),
            ],
            tx.at,
        )
        tx.audit(
            "model.evaluated",
            f"model:{model}/{version}",
            {
                "dataset_version": dataset_version,
                "config_digest": config_digest,
                "metrics": metrics,
                "predictions_digest": predictions_digest,
            },
        )
        at = tx.at
    return StoredEvaluation(
        id=int(new_id),
        model=model,
        version=version,
        dataset_version=dataset_version,
        config_digest=config_digest,
        metrics=dict(metrics),
        report=report,
        predictions_digest=predictions_digest,
        created_at=at,
    )
