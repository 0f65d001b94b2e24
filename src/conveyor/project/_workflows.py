"""The workflows behind the CLI and the HTTP API: each one call, the same for both faces."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import ConfigError
from conveyor.core.project_dir import config_path
from conveyor.project import _runlock
from conveyor.store.metadata import AuditEvent, ChainReport, insert_ignore, verify_chain
from conveyor.store.metadata.schema import artifact as artifact_table
from conveyor.store.metadata.schema import audit_event

if TYPE_CHECKING:
    from collections.abc import Callable

    from conveyor.pipeline import PipelineResult, StepEvent
    from conveyor.project._context import Project
    from conveyor.registry import ModelVersion, PromotionResult, RollbackResult

__all__ = ["RunReport", "audit_log", "promote", "rollback", "run", "verify_audit"]

_BUNDLE_MEDIA_TYPE = "application/vnd.conveyor.bundle-file"


@dataclass(frozen=True)
class RunReport:
    """What ``conveyor run`` did: the pipeline's steps and the model version it registered."""

    pipeline: PipelineResult
    version: ModelVersion | None
    created: bool
    #: Digests of the registered bundle's files (manifest included).
    bundle_files: tuple[str, ...] = ()


def run(
    project: Project,
    *,
    actor: str,
    force: bool = False,
    on_event: Callable[[StepEvent], None] | None = None,
) -> RunReport:
    """Run the project's pipeline; if ``model:`` is configured, package and register its model.

    Registering is idempotent: an unchanged model (same bundle digest) is the same version.
    """
    from conveyor.pipeline import load_pipeline, run_pipeline

    config = project.config
    if not config.pipeline:
        raise ConfigError(
            f"{config.root / 'conveyor.yaml'} names no pipeline",
            hint="add `pipeline: <module>:<attribute>`, e.g. `training.pipeline:pipeline`",
        )
    pipeline = load_pipeline(config.pipeline, config.root)
    result = run_pipeline(
        pipeline,
        params=config.params,
        metadata=project.metadata,
        artifacts=project.artifacts,
        actor=actor,
        root=config.root,
        force=force,
        on_event=on_event,
    )
    if config.model is None:
        report = RunReport(result, None, False)
    else:
        version, created, bundle_files = _register(project, result, actor=actor)
        report = RunReport(result, version, created, bundle_files)
    _write_lock(project, report)
    return report


def _write_lock(project: Project, report: RunReport) -> None:
    from conveyor.store.artifacts import LocalArtifactStore

    config = project.config
    root, config_file = config_path(config.root)
    if not isinstance(project.artifacts, LocalArtifactStore):
        _runlock.lock_path(root).unlink(missing_ok=True)
        return
    digests = [s.output_digest for s in report.pipeline.steps if s.output_digest]
    digests += report.bundle_files
    version = report.version
    _runlock.write(
        root,
        config_file,
        project.overrides,
        store_url=config.store,
        artifact_paths=[project.artifacts.location(d) for d in digests],
        data_files=list(report.pipeline.input_files),
        run=_runlock.LockedRun(
            pipeline=report.pipeline.pipeline,
            steps=tuple(s.name for s in report.pipeline.steps),
            model=version.model if version else None,
            version=version.version if version else None,
        ),
    )


def _register(
    project: Project, result: PipelineResult, *, actor: str
) -> tuple[ModelVersion, bool, tuple[str, ...]]:
    from conveyor.packaging import Model, build_bundle
    from conveyor.registry import register_version

    section = project.config.model
    assert section is not None
    names = {s.name for s in result.steps}
    for key, step_name in (("model.step", section.step), ("model.metrics", section.metrics)):
        if step_name is not None and step_name not in names:
            raise ConfigError(
                f"conveyor.yaml: {key} names step '{step_name}', which the pipeline does not have",
                hint=f"use one of: {', '.join(sorted(names))}",
            )
    model = result.load(section.step)
    if not isinstance(model, Model):
        raise ConfigError(
            f"step '{section.step}' returned {type(model).__name__}, not a conveyor.Model",
            hint="return conveyor.Model(estimator=..., input_example=...) from the model step",
        )
    metrics = _metrics(result.load(section.metrics), section.metrics) if section.metrics else {}
    step_result = next(s for s in result.steps if s.name == section.step)
    # The bundle holds content only: a cached re-run makes a new run row, and the same model
    # must keep the same digest (and so stay the same version). The registry row links the run.
    bundle = build_bundle(
        project.artifacts, model, name=section.name, metrics=metrics, params=project.config.params
    )
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "digest": ref.digest,
            "size": ref.size,
            "media_type": _BUNDLE_MEDIA_TYPE,
            "uri": project.artifacts.location(ref.digest),
            "created_at": now,
        }
        for ref in bundle.files.values()
    ]
    with project.metadata.write(actor) as tx:
        insert_ignore(tx.conn, artifact_table, rows)
    version, created = register_version(
        project.metadata,
        model=section.name,
        artifact_digest=bundle.digest,
        metrics=metrics,
        run_id=step_result.run_id,
        actor=actor,
        description=section.description,
    )
    return version, created, tuple(ref.digest for ref in bundle.files.values())


def _metrics(value: Any, step: str) -> dict[str, float]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) for k, v in value.items()
    ):
        raise ConfigError(
            f"step '{step}' (model.metrics) must return a dict of metric name to number",
            hint="return e.g. {'roc_auc': 0.87, 'accuracy': 0.81}",
        )
    return {k: float(v) for k, v in value.items()}


def promote(
    project: Project, *, model: str, version: int, to: str, actor: str, reason: str = ""
) -> PromotionResult:
    """Promote a version through the gates of ``policies.yaml``; nothing moves if one fails."""
    from conveyor.registry import load_policy
    from conveyor.registry import promote as registry_promote

    policy = load_policy(project.config.policies)
    return registry_promote(
        project.metadata,
        model=model,
        version=version,
        to=to,
        policy=policy,
        actor=actor,
        reason=reason,
    )


def rollback(project: Project, *, model: str, actor: str, reason: str = "") -> RollbackResult:
    """Put the previous production version of ``model`` back into production at once."""
    from conveyor.registry import rollback as registry_rollback

    return registry_rollback(project.metadata, model=model, actor=actor, reason=reason)


def verify_audit(project: Project) -> ChainReport:
    """Check every link of the audit chain; the report names the first broken one."""
    with project.metadata.read() as conn:
        return verify_chain(conn)


def audit_log(
    project: Project,
    *,
    since: dt.datetime | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """The newest audit events, oldest first, filtered by time, action prefix and target."""
    query = sa.select(audit_event).order_by(audit_event.c.seq.desc()).limit(limit)
    if since is not None:
        query = query.where(audit_event.c.at >= since)
    if action:
        query = query.where(audit_event.c.action.startswith(action))
    if target:
        query = query.where(audit_event.c.target.startswith(target))
    with project.metadata.read() as conn:
        rows = conn.execute(query).mappings().all()
    return [AuditEvent(**dict(r)) for r in reversed(rows)]
