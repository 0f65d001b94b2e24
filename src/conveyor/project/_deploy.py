"""Deploy workflows: start a rollout with the project's policy, drive it, control it by hand.

The controller (:mod:`conveyor.deploy.controller`) is stateless and knows nothing of projects;
here it gets the project's ``rollout:`` analysis settings and, for the final step, the project's
gated promotion to production (the same gates as ``conveyor promote``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from conveyor.deploy import AnalysisSettings, Incident, Rollout, TickOutcome
    from conveyor.project._context import Project

__all__ = [
    "abort_rollout",
    "analysis_settings",
    "drive",
    "pause_rollout",
    "resume_rollout",
    "rollout_status",
    "start_deploy",
    "tick_rollout",
    "watch",
]

#: Outcomes after which a rollout is over.
FINAL = ("succeeded", "failed", "idle")

logger = logging.getLogger(__name__)


def analysis_settings(project: Project) -> AnalysisSettings:
    """The ``rollout:`` block of the project's policy, checked (defaults when there is none).

    Raises:
        ConfigError: a bad key or value, named with its file and line.
    """
    from conveyor.deploy import AnalysisSettings
    from conveyor.registry import load_policy

    policy = load_policy(project.config.policies)
    where = policy.rollout_source or str(project.config.policies or "policies.yaml")
    return AnalysisSettings.from_mapping(policy.rollout or {}, f"{where} (rollout)")


def start_deploy(
    project: Project,
    *,
    model: str,
    version: int,
    strategy: str,
    canary: str | None,
    shadow_sample: float,
    actor: str,
    reason: str = "",
) -> tuple[Rollout, Rollout | None, bool]:
    """Start a rollout of ``version``; (it, the rollout it superseded if any, whether it was
    already in progress: deploying the version of the active rollout again attaches to it,
    e.g. after Ctrl-C stopped the command that drove it).

    Raises:
        UsageError: a bad plan. ConfigError: a bad ``rollout:`` block.
        NotFoundError / ConflictError: as :func:`conveyor.deploy.start_rollout`.
    """
    from conveyor.deploy import active_rollout, parse_steps, start_rollout

    steps = parse_steps(strategy, canary)
    settings = analysis_settings(project)
    check_features(project, model=model, version=version)
    with project.metadata.read() as conn:
        active = active_rollout(conn, model)
    if active is not None and active.candidate_version == version:
        return active, None, True
    started, superseded = start_rollout(
        project.metadata,
        model=model,
        version=version,
        strategy=strategy,
        steps=steps,
        settings=settings,
        actor=actor,
        shadow_sample=shadow_sample,
        reason=reason,
    )
    return started, superseded, False


def check_features(project: Project, *, model: str, version: int) -> None:
    """Refuse to deploy a version whose feature service no longer serves the exact feature
    versions it was trained with (a changed transformation gives a new feature version).

    The serving side is the service's newest registered version (``conveyor features apply``).

    Raises:
        FeatureMismatchError: naming each feature whose trained and serving versions differ.
        UnknownFeatureError: the model's feature service is not registered in this store.
    """
    from conveyor.core.errors import NotFoundError
    from conveyor.packaging import Manifest
    from conveyor.registry.queries import get_version

    found = get_version(project.metadata, model, version)
    try:
        data = project.artifacts.get_bytes(found.artifact_digest)
    except NotFoundError:
        return  # no bundle here to serve, so no features to serve it with: not this check's call
    manifest = Manifest.from_yaml(data)
    if manifest.features is None:
        return
    from conveyor.features import check_serving_features, get_service

    serving = get_service(project.metadata, str(manifest.features["service"]))
    check_serving_features(manifest.features["features"], serving)


def tick_rollout(project: Project, *, model: str, actor: str) -> TickOutcome:
    """One controller step for ``model``'s rollout (see :func:`conveyor.deploy.tick`)."""
    from conveyor.deploy import tick
    from conveyor.project._gates import promote

    def promote_candidate(rollout: Rollout) -> None:
        promote(
            project,
            model=rollout.model,
            version=rollout.candidate_version,
            to="production",
            actor=actor,
            reason=f"rollout {rollout.id} passed its analysis",
        )

    return tick(project.metadata, model, promote=promote_candidate, actor=actor)


def drive(
    project: Project,
    *,
    model: str,
    actor: str,
    every: float = 1.0,
    report: Callable[[TickOutcome], None] | None = None,
    until: Callable[[], bool] | None = None,
) -> TickOutcome:
    """Tick ``model``'s rollout every ``every`` seconds until it ends; the final outcome.

    Args:
        report: Called with every outcome that is not ``waiting`` (to print progress).
        until: Stop early (returning the last outcome) when this returns True.
    """
    while True:
        outcome = tick_rollout(project, model=model, actor=actor)
        if report is not None and outcome.action not in ("waiting", "raced"):
            report(outcome)
        if outcome.action in FINAL or (until is not None and until()):
            return outcome
        time.sleep(every)


def watch(
    project: Project,
    *,
    model: str,
    actor: str,
    stop: threading.Event,
    every: float = 1.0,
    report: Callable[[TickOutcome], None] | None = None,
) -> int:
    """Drive ``model``'s rollouts as they start, one after another, until ``stop`` is set: the
    controller as a long-running service. Returns how many rollouts it saw end.

    ``report`` gets what :func:`drive` reports, and the first ``idle`` outcome after each
    rollout (not one per tick). A store that cannot be reached for a tick (a restarting
    database, a lost race) is logged and tried again at the next tick, not fatal.
    """
    from conveyor.core.errors import InfrastructureError
    from conveyor.store.metadata import TransactionConflictError

    ended = 0
    idle_reported = False
    while not stop.is_set():
        try:
            outcome = tick_rollout(project, model=model, actor=actor)
        except (InfrastructureError, TransactionConflictError) as exc:
            logger.warning("rollout controller for %s: tick failed, trying again: %s", model, exc)
            stop.wait(every)
            continue
        if outcome.action == "idle":
            if report is not None and not idle_reported:
                report(outcome)
            idle_reported = True
        else:
            idle_reported = False
            if report is not None and outcome.action not in ("waiting", "raced"):
                report(outcome)
            if outcome.action in FINAL:
                ended += 1
        stop.wait(every)
    return ended


def pause_rollout(project: Project, *, model: str, actor: str, reason: str = "") -> Rollout:
    from conveyor.deploy import pause

    return pause(project.metadata, model, actor=actor, reason=reason)


def resume_rollout(project: Project, *, model: str, actor: str, reason: str = "") -> Rollout:
    from conveyor.deploy import resume

    return resume(project.metadata, model, actor=actor, reason=reason)


def abort_rollout(
    project: Project, *, model: str, actor: str, reason: str = ""
) -> tuple[Rollout, Incident]:
    from conveyor.deploy import abort

    return abort(project.metadata, model, actor=actor, reason=reason)


def rollout_status(project: Project, *, model: str | None = None) -> list[Rollout]:
    """The active rollouts (of ``model``), or its latest one when none is active."""
    from conveyor.deploy import list_rollouts

    with project.metadata.read() as conn:
        active = list_rollouts(conn, model=model, active_only=True)
        if active or model is None:
            return active
        return list_rollouts(conn, model=model, limit=1)
