"""Registering model versions: numbered 1, 2, 3 ... per model, idempotent on the bundle digest."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import sqlalchemy as sa

from conveyor.core.digest import parse_digest
from conveyor.core.errors import ConflictError, NotFoundError, ValidationError
from conveyor.core.names import validate_name
from conveyor.registry._rows import add_stage, fetch_version
from conveyor.registry.records import ModelVersion
from conveyor.store.metadata.lineage import add_edges, model_node, node
from conveyor.store.metadata.schema import model as model_table
from conveyor.store.metadata.schema import model_version, run

if TYPE_CHECKING:
    from collections.abc import Mapping

    from conveyor.store.metadata import MetadataStore, Tx

__all__ = ["register_version"]

logger = logging.getLogger(__name__)

_MAX_METRIC_NAME = 128
# Everything a registration must know before it writes, in one round trip (built once, like
# the statements in ``_rows``; see there why).
_LOOKUP = sa.select(
    sa.select(model_version.c.version)
    .where(
        model_version.c.model == sa.bindparam("model"),
        model_version.c.artifact_digest == sa.bindparam("digest"),
    )
    .scalar_subquery()
    .label("same_bundle"),
    sa.exists().where(model_table.c.name == sa.bindparam("model")).label("model_exists"),
    sa.select(sa.func.max(model_version.c.version))
    .where(model_version.c.model == sa.bindparam("model"))
    .scalar_subquery()
    .label("latest"),
    sa.exists().where(run.c.id == sa.bindparam("run_id")).label("run_exists"),
)
_INSERT_MODEL = sa.insert(model_table)
_INSERT_VERSION = sa.insert(model_version)


def register_version(
    store: MetadataStore,
    *,
    model: str,
    artifact_digest: str,
    metrics: Mapping[str, float],
    run_id: str | None,
    actor: str,
    description: str = "",
) -> tuple[ModelVersion, bool]:
    """Register a bundle as the next version of ``model``, creating the model if it is new.

    The same bundle (same ``artifact_digest``) registered again is the same version: the call
    returns ``(existing, False)`` and writes nothing. A new version gets the next number inside
    the serialised write transaction, so concurrent registrations never share a number, and
    starts in stage ``experimental``.

    Args:
        store: The metadata store.
        model: The model name (see ``conveyor.core.names``).
        artifact_digest: The bundle digest (``blake3:...``), the identity of the version.
        metrics: Metric name to finite number; promotion checks read them.
        run_id: The pipeline run that produced the bundle, if any; it must exist.
        actor: Who registers, for the stage history and the audit trail.
        description: Stored with the model when this call creates it; ignored otherwise.

    Returns:
        The version and whether this call created it.

    Raises:
        ValidationError: a bad model name, digest or metric.
        NotFoundError: ``run_id`` names no recorded run.
    """
    validate_name("model", model)
    parse_digest(artifact_digest)
    clean = _clean_metrics(metrics)
    try:
        with store.write(actor) as tx:
            found = tx.conn.execute(
                _LOOKUP, {"model": model, "digest": artifact_digest, "run_id": run_id}
            ).one()
            if found.same_bundle is not None:
                return fetch_version(tx.conn, model, found.same_bundle), False
            if run_id is not None and not found.run_exists:
                raise NotFoundError(
                    f"run '{run_id}' does not exist, so model '{model}' cannot name it",
                    hint="pass the run id of a recorded pipeline step, or no run id",
                )
            if not found.model_exists:
                _create_model(tx, model, description)
            version = (found.latest or 0) + 1
            registered = _insert_version(tx, model, version, artifact_digest, clean, run_id)
    except sa.exc.IntegrityError as exc:
        # Writes are serialised, so only a writer that bypasses Conveyor can get here.
        raise ConflictError(
            f"could not register a version of model '{model}': {str(exc.orig).splitlines()[0]}",
            hint="another program changed the registry tables; try again",
        ) from exc
    logger.info("registered model version", extra={"model": model, "version": registered.version})
    return registered, True


def _create_model(tx: Tx, model: str, description: str) -> None:
    tx.conn.execute(
        _INSERT_MODEL,
        {"name": model, "description": description, "created_by": tx.actor, "created_at": tx.at},
    )
    tx.audit("model.created", f"model:{model}", {"description": description})


def _insert_version(
    tx: Tx,
    model: str,
    version: int,
    artifact_digest: str,
    metrics: dict[str, float],
    run_id: str | None,
) -> ModelVersion:
    tx.conn.execute(
        _INSERT_VERSION,
        {
            "model": model,
            "version": version,
            "artifact_digest": artifact_digest,
            "run_id": run_id,
            "metrics": metrics,
            "created_by": tx.actor,
            "created_at": tx.at,
        },
    )
    add_stage(
        tx.conn,
        model=model,
        version=version,
        stage="experimental",
        actor=tx.actor,
        reason="registered",
        at=tx.at,
    )
    target = model_node(model, version)
    edges = [(node("artifact", artifact_digest), target, "bundle")]
    if run_id is not None:
        edges.append((node("run", run_id), target, "trained"))
    add_edges(tx.conn, edges, tx.at)
    tx.audit(
        "model.version_registered",
        f"model:{model}/{version}",
        {
            "artifact_digest": artifact_digest,
            "run_id": run_id,
            "metrics": metrics,
            "stage": "experimental",
        },
    )
    return ModelVersion(
        model=model,
        version=version,
        artifact_digest=artifact_digest,
        run_id=run_id,
        metrics=metrics,
        created_by=tx.actor,
        created_at=tx.at,
        stage="experimental",
    )


def _clean_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_METRIC_NAME:
            raise ValidationError(
                f"metric name {name!r} is not valid",
                hint=f"use a non-empty name of at most {_MAX_METRIC_NAME} characters",
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(
                f"metric '{name}' is {type(value).__name__}, not a number",
                hint="metrics are numbers, e.g. {'roc_auc': 0.87}",
            )
        if not math.isfinite(value):
            raise ValidationError(
                f"metric '{name}' is {value}, not a finite number",
                hint="check the evaluation step; a gate cannot compare NaN or infinity",
            )
        clean[name] = float(value)
    return clean
