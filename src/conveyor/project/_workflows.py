"""The workflows behind the CLI and the HTTP API: each one call, the same for both faces."""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConfigError
from conveyor.core.project_dir import config_path
from conveyor.project import _runlock
from conveyor.store.metadata import AuditEvent, ChainReport, insert_ignore
from conveyor.store.metadata.lineage import add_edges, model_node, node
from conveyor.store.metadata.schema import artifact as artifact_table

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from conveyor.pipeline import Pipeline, PipelineResult, StepEvent
    from conveyor.project._context import Project
    from conveyor.project._runlock import RunLock
    from conveyor.registry import (
        ModelVersion,
        PromotionResult,
        Review,
        RollbackResult,
        StoredEvaluation,
    )

__all__ = [
    "RunReport",
    "audit_log",
    "evaluate",
    "promote",
    "review",
    "rollback",
    "run",
    "verify_audit",
]

logger = logging.getLogger(__name__)

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
    lock: RunLock | None = None,
    openlineage: Mapping[str, Any] | None = None,
) -> RunReport:
    """Run the project's pipeline; if ``model:`` is configured, package and register its model.

    Registering is idempotent: an unchanged model (same bundle digest) is the same version.
    On success the run lock is written, so that the next ``conveyor run`` of an unchanged
    project can answer from it (see :mod:`conveyor.project._runlock`).

    Args:
        project: The open project.
        actor: Who runs it, for the audit trail.
        force: Run every step, even those with a stored output for their cache key.
        on_event: Called with each step's :class:`~conveyor.pipeline.StepEvent`.
        lock: The project's fingerprints, taken before its configuration was loaded
            (:func:`~conveyor.project.run_lock`); taken now if not given.
        openlineage: OpenLineage settings (see :mod:`conveyor.lineage.openlineage`);
            ``lineage.openlineage`` of conveyor.yaml if not given. The pipeline run's events
            are sent whatever happens to it.
    """
    from conveyor.core.ids import new_id
    from conveyor.lineage.openlineage import open_lineage
    from conveyor.pipeline import load_pipeline, run_pipeline

    config = project.config
    if lock is None:
        root, config_file = config_path(config.root)
        lock = _runlock.RunLock(root, config_file, project.overrides)
    # Only a run that succeeds leaves a lock behind: a failed or interrupted one leaves none.
    lock.discard()
    if not config.pipeline:
        raise ConfigError(
            f"{config.root / 'conveyor.yaml'} names no pipeline",
            hint="add `pipeline: <module>:<attribute>`, e.g. `training.pipeline:pipeline`",
        )
    pipeline = load_pipeline(config.pipeline, config.root)
    pipeline_run_id = new_id()
    lineage = open_lineage(
        # Only what conveyor.yaml sets: with nothing set and no openlineage-python, silence.
        openlineage
        if openlineage is not None
        else config.lineage.openlineage.model_dump(exclude_defaults=True),
        project=config.project,
        pipeline=pipeline.name,
        root=config.root,
        artifacts=project.artifacts,
    )
    if lineage is not None:
        lineage.start(pipeline_run_id)
        on_event = lineage.wrap(on_event)
    try:
        result = run_pipeline(
            pipeline,
            params=config.params,
            metadata=project.metadata,
            artifacts=project.artifacts,
            actor=actor,
            root=config.root,
            force=force,
            on_event=on_event,
            pipeline_run_id=pipeline_run_id,
        )
    except BaseException as exc:
        if lineage is not None:
            lineage.fail(exc)
        raise
    if lineage is not None:
        lineage.complete(result)
    if config.model is None:
        report = RunReport(result, None, False)
    else:
        version, created, bundle_files = _register(project, result, actor=actor)
        report = RunReport(result, version, created, bundle_files)
    why_not = _write_lock(project, lock, pipeline, report)
    if why_not is not None:
        logger.debug("run lock not written: %s", why_not, extra={"run_lock": "not written"})
    return report


def _write_lock(
    project: Project, lock: RunLock, pipeline: Pipeline, report: RunReport
) -> str | None:
    from conveyor.store.artifacts import LocalArtifactStore

    uncached = [s.name for s in pipeline.steps if not s.cache]
    if uncached:
        return f"step '{uncached[0]}' has cache=False: it runs every time"
    if not isinstance(project.artifacts, LocalArtifactStore):
        return "the artifact store is not a local folder"
    steps = report.pipeline.steps
    locked_steps = []
    for s in steps:
        if s.output_digest is None:
            return f"step '{s.name}' has no output digest"
        locked_steps.append(_runlock.LockedStep(s.name, s.cache_key, s.output_digest))
    digests = [s.output_digest for s in locked_steps] + list(report.bundle_files)
    files: dict[str, _runlock.Fingerprint] = {
        path: [mtime_ns, size, inode]
        for path, (mtime_ns, size, inode) in report.pipeline.input_stats.items()
    }
    root = str(lock.root)
    for step in pipeline.steps:
        # The code digest covers a step's own function even outside the project folder, whose
        # importable files the lock has fingerprinted already.
        source = getattr(getattr(step.fn, "__code__", None), "co_filename", None)
        if isinstance(source, str) and os.path.isabs(source) and not _inside(source, root):
            files[source] = _runlock.fingerprint(source)
    version = report.version
    return lock.write(
        _runlock.LockedRun(
            ref=project.config.pipeline or "",
            root=str(project.config.root),
            pipeline=report.pipeline.pipeline,
            pipeline_run_id=report.pipeline.pipeline_run_id,
            steps=tuple(locked_steps),
            model=None
            if version is None
            else _runlock.LockedModel(
                version.model, version.version, version.artifact_digest, version.stage
            ),
        ),
        store_url=project.config.store,
        artifact_paths=[project.artifacts.location(d) for d in digests],
        files=files,
    )


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


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
    features = bundle.manifest.features
    if created and features is not None:
        # The exact feature versions the bundle serves with are the model's inputs.
        with project.metadata.write(actor) as tx:
            add_edges(
                tx.conn,
                [
                    (node("feature", ref), model_node(section.name, version.version), "input")
                    for ref in features["features"]
                ],
                tx.at,
            )
    if created and section.metrics is not None:
        # The run that measured the version's metrics, beside the one that trained it.
        measured = next(s for s in result.steps if s.name == section.metrics)
        with project.metadata.write(actor) as tx:
            add_edges(
                tx.conn,
                [
                    (
                        node("run", measured.run_id),
                        model_node(section.name, version.version),
                        "metrics",
                    )
                ],
                tx.at,
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
    """Promote a version through the gates of ``policies.yaml``; nothing moves if one fails.

    See :mod:`conveyor.project._gates` for the three phases (preflight, evidence, decision).
    """
    from conveyor.project._gates import promote as gated_promote

    return gated_promote(project, model=model, version=version, to=to, actor=actor, reason=reason)


def review(
    project: Project,
    *,
    model: str,
    version: int,
    stage: str,
    decision: str,
    actor: str,
    comment: str = "",
) -> Review:
    """Record ``actor``'s approval or rejection of a version for ``stage`` (never the author's;
    with a role the stage's ``approvals.roles`` names, when it names any)."""
    from conveyor.registry import load_policy
    from conveyor.registry import review as registry_review

    policy = load_policy(project.config.policies)
    return registry_review(
        project.metadata,
        model=model,
        version=version,
        stage=stage,
        decision=decision,
        actor=actor,
        comment=comment,
        stage_policy=policy.stage(stage),
    )


def evaluate(project: Project, *, model: str, version: int, actor: str) -> StoredEvaluation:
    """Evaluate a version on the policy's evaluation dataset (or reuse the stored evaluation).

    Raises:
        ConfigError: the policy declares no ``evaluation:`` section.
    """
    from conveyor.project._gates import evaluate_version
    from conveyor.registry import get_version, load_policy

    policy = load_policy(project.config.policies)
    if policy.evaluation is None:
        where = project.config.policies or "conveyor.yaml (no `policies:` file)"
        raise ConfigError(
            f"{where} declares no `evaluation:` section, so there is nothing to evaluate on",
            hint="add `evaluation: {data: <labelled file>, target: <label column>}` to the policy",
        )
    current = get_version(project.metadata, model, version)
    return evaluate_version(project, current, policy.evaluation, actor=actor).stored


def rollback(project: Project, *, model: str, actor: str, reason: str = "") -> RollbackResult:
    """Put the previous production version of ``model`` back into production at once."""
    from conveyor.registry import rollback as registry_rollback

    return registry_rollback(project.metadata, model=model, actor=actor, reason=reason)


def verify_audit(project: Project) -> ChainReport:
    """Check every link of the audit chain and the chain against its signed checkpoints.

    The report's ``findings`` name every edited, missing or re-linked event, a chain cut short
    of a checkpoint, and any forged checkpoint; ``broken_seq``/``reason`` are the first of them.
    See :func:`conveyor.project._audit.verify`.
    """
    from conveyor.project._audit import verify

    return verify(project)


def audit_log(
    project: Project,
    *,
    since: dt.datetime | None = None,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """The newest audit events, oldest first, filtered by time, action and target prefix, actor.

    ``actor`` matches exactly: user names are not hierarchical, and a prefix would let ``al``
    show alice's and alan's events together.
    """
    from conveyor.store.metadata.audit import query_events

    with project.metadata.read() as conn:
        events = query_events(
            conn,
            since=since,
            action=action or "",
            target=target or "",
            actor=actor or "",
            limit=limit,
        )
    return events[::-1]
