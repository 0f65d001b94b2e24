"""``conveyor ci``: the pipeline, the data checks and the gates of one stage, as CI runs them.

A CI job asks one question of a change: *would the model it produces pass the gates of the
target stage?* So :func:`run_ci` runs the pipeline (cached steps skipped, the model registered as
``experimental`` like ``conveyor run``), then evaluates every check of the stage's policy on the
new version exactly as ``conveyor promote`` would (the evaluation, the comparison with the
version in production, the inference test, the data checks, reproducibility), but as a **dry
run**: no gate result is recorded and nothing moves, unless ``promote=True`` and every check
passed, when the real promotion runs (and records its own results in one transaction).
Approvals are human gates no CI job can satisfy: they are reported as skipped, not failed.

**The CI cache key** (:func:`cache_key`) names the CI cache that holds ``.conveyor/`` (the step
cache and the stores). It is the digest of what determines the pipeline's step cache keys:

- the environment: Conveyor's version, Python's ``major.minor``, and every lock or
  requirements file at the project root (``requirements*.txt``, ``uv.lock``, ``poetry.lock``,
  ``Pipfile.lock``, ``pylock*.toml``, ``conda-lock.yml``);
- the configuration: ``conveyor.yaml`` (pipeline, parameters, model);
- the code: every ``*.py`` file of the project outside ``tests/`` and hidden or virtual-env
  folders (a step's code digest covers the project code it imports);
- the data: each file a string parameter names.

``policies.yaml`` is left out on purpose: gates do not change step outputs. A change to any part
gives a new key, so the job saves a new cache entry; it restores the newest entry by prefix, and
a stale one is harmless because every step's own cache key is checked again.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConfigError, ConflictError, StepError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conveyor.core.config import Config
    from conveyor.pipeline import StepEvent
    from conveyor.project._context import Project
    from conveyor.project._runlock import RunLock
    from conveyor.registry import CheckResult, ModelVersion

__all__ = ["CiResult", "CiStep", "cache_key", "evaluate_gates", "run_ci"]

logger = logging.getLogger(__name__)

_LOCK_PATTERNS = (
    "requirements*.txt",
    "uv.lock",
    "poetry.lock",
    "Pipfile.lock",
    "pylock*.toml",
    "conda-lock.yml",
)
_SKIPPED_FOLDERS = frozenset({"tests", "node_modules", "venv", "__pycache__", "ci-report"})
_GATED_STAGES = ("candidate", "production")


@dataclass(frozen=True)
class CiStep:
    """One pipeline step as CI saw it: ``ran``, ``cached`` or ``failed``."""

    name: str
    status: str
    duration_s: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "duration_s": self.duration_s,
            "error": self.error,
        }


@dataclass(frozen=True)
class CiResult:
    """What ``conveyor ci`` found.

    Attributes:
        project: The project's name.
        stage: The stage whose gates were evaluated.
        cache_key: :func:`cache_key` of the project.
        steps: The pipeline's steps, in the order they finished.
        checks: Every check of the stage, in the order ``promote`` runs them.
        skipped: Checks no CI job can decide (approvals), with why.
        model: The registered model's name, when the pipeline got that far.
        version: Its version number.
        version_stage: Its stage after CI (``candidate`` when promoted).
        promoted: Whether ``--promote`` moved it.
        notes: Remarks for the reader (a version already past the stage, no production yet).
    """

    project: str
    stage: str
    cache_key: str
    steps: tuple[CiStep, ...]
    checks: tuple[CheckResult, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    model: str | None = None
    version: int | None = None
    version_stage: str | None = None
    promoted: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of what failed: a pipeline step (``step:<name>``) or a check."""
        steps = tuple(f"step:{s.name}" for s in self.steps if s.status == "failed")
        return steps + tuple(c.check for c in self.checks if not c.passed)

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stage": self.stage,
            "passed": self.passed,
            "exit_code": 0 if self.passed else 1,
            "cache_key": self.cache_key,
            "model": self.model,
            "version": self.version,
            "version_stage": self.version_stage,
            "promoted": self.promoted,
            "failed": list(self.failed),
            "steps": [s.to_dict() for s in self.steps],
            "checks": [c.to_dict() for c in self.checks],
            "skipped": [{"check": c, "reason": r} for c, r in self.skipped],
            "notes": list(self.notes),
        }


def cache_key(config: Config) -> str:
    """The CI cache key of the project (64 hex digits); see the module docstring for what it
    covers and why."""
    from conveyor import __version__
    from conveyor.core.digest import digest_file, digest_json
    from conveyor.core.project_dir import config_path

    root = config.root
    _, config_file = config_path(root)
    locks = sorted({p for pattern in _LOCK_PATTERNS for p in root.glob(pattern) if p.is_file()})
    data: dict[str, str] = {}
    for value in config.params.values():
        if isinstance(value, str) and value:
            path = (root / value).resolve()
            if path.is_file() and path.is_relative_to(root.resolve()):
                data[value] = digest_file(path)
    parts = {
        "conveyor": __version__,
        "python": ".".join(platform.python_version_tuple()[:2]),
        "locks": {p.name: digest_file(p) for p in locks},
        "config": digest_file(config_file),
        "code": {rel: digest_file(root / rel) for rel in _code_files(root)},
        "data": data,
    }
    return digest_json(parts).split(":", 1)[1]


def _code_files(root: Path) -> list[str]:
    found: list[str] = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(p.startswith(".") or p in _SKIPPED_FOLDERS for p in rel.parts[:-1]):
            continue
        found.append(rel.as_posix())
    return sorted(found)


def run_ci(
    project: Project,
    *,
    stage: str,
    actor: str,
    promote: bool = False,
    lock: RunLock | None = None,
    on_event: Callable[[StepEvent], None] | None = None,
) -> CiResult:
    """Run the pipeline and evaluate the gates of ``stage`` on the version it registers.

    Args:
        project: The open project.
        stage: ``candidate`` or ``production``.
        actor: Who runs it, for the audit trail.
        promote: Promote the version to ``stage`` when every check passed.
        lock: The run lock taken before the configuration was read (see ``conveyor run``).
        on_event: Called with each step's event, after CI has noted it.

    Returns:
        The steps, the checks and their verdict. A step that raises is a failed result, not an
        error: CI reports it like a failed check.

    Raises:
        UsageError: ``stage`` is not a gated stage.
        ConfigError: the project has no ``model:`` section, or the policy is invalid.
    """
    from conveyor.project._workflows import run as run_project

    if stage not in _GATED_STAGES:
        raise UsageError(
            f"stage '{stage}' has no gates to run in CI",
            hint=f"use one of: {', '.join(_GATED_STAGES)}",
        )
    config = project.config
    if config.model is None:
        raise ConfigError(
            f"{config.root / 'conveyor.yaml'} has no `model:` section, so there is no version "
            "to gate",
            hint="add `model: {name: ..., step: ..., metrics: ...}` to conveyor.yaml",
        )
    key = cache_key(config)
    events: list[CiStep] = []

    def note(event: StepEvent) -> None:
        if event.status in ("ran", "cached", "failed"):
            events.append(CiStep(event.name, event.status, event.duration_s))
        if on_event is not None:
            on_event(event)

    base = CiResult(project=config.project, stage=stage, cache_key=key, steps=())
    try:
        report = run_project(project, actor=actor, on_event=note, lock=lock)
    except StepError as exc:
        step = str(exc.details.get("step", ""))
        error = str(exc.details.get("error", exc.message))
        failed = [
            s if s.name != step else CiStep(s.name, "failed", s.duration_s, error) for s in events
        ]
        if not any(s.name == step for s in failed):
            failed.append(CiStep(step or "pipeline", "failed", 0.0, error))
        return _replace(base, steps=tuple(failed))
    assert report.version is not None  # config.model is set
    steps = tuple(CiStep(s.name, s.status, s.duration_s) for s in report.pipeline.steps)
    current = report.version
    checks, skipped, notes = evaluate_gates(project, current, stage, actor=actor)
    result = _replace(
        base,
        steps=steps,
        checks=tuple(checks),
        skipped=tuple(skipped),
        model=current.model,
        version=current.version,
        version_stage=current.stage,
        notes=tuple(notes),
    )
    if promote and result.passed and current.stage != stage and not _past(current.stage, stage):
        from conveyor.project._gates import promote as gated_promote

        moved = gated_promote(
            project,
            model=current.model,
            version=current.version,
            to=stage,
            actor=actor,
            reason="conveyor ci --promote",
        )
        result = _replace(result, promoted=True, version_stage=moved.to_stage)
    return result


def _past(current: str, stage: str) -> bool:
    order = ("experimental", "candidate", "production")
    return current in order and order.index(current) >= order.index(stage)


def _replace(result: CiResult, **changes: Any) -> CiResult:
    from dataclasses import replace

    return replace(result, **changes)


def evaluate_gates(
    project: Project, current: ModelVersion, stage: str, *, actor: str
) -> tuple[list[CheckResult], list[tuple[str, str]], list[str]]:
    """Every check of ``stage`` on ``current``, computed as ``conveyor promote`` computes its
    evidence, without recording gate results or moving anything.

    Returns:
        The checks, the approvals left to people (check, why), and notes.

    Raises:
        ConfigError: the policy is invalid for this model or data.
    """
    from conveyor.project import _gates
    from conveyor.registry import load_policy, production_version

    policy = load_policy(project.config.policies)
    stage_policy = policy.stage(stage)
    notes: list[str] = []
    if current.stage != "experimental" and _past(current.stage, stage):
        notes.append(
            f"version {current.version} is already {current.stage}; its {stage} gates are "
            "re-evaluated for this change"
        )
    if not policy.has_checks:
        notes.append(policy.note or "the policy has no checks, so no checks ran")
    production = production_version(project.metadata, current.model)
    plan = _gates._preflight(project, policy, (stage,), current)
    candidate = baseline = None
    if plan.spec is not None:
        candidate = _gates.evaluate_version(project, current, plan.spec, actor=actor)
        if production is not None and production.version != current.version and plan.relative:
            baseline = _gates.evaluate_version(project, production, plan.spec, actor=actor)
    if plan.relative and production is None:
        notes.append("no version is in production, so relative checks compare with nothing")
    checks: list[CheckResult] = [
        _gates._metric_check(c, current, production, candidate, baseline, policy.evaluation)
        for c in stage_policy.checks
    ]
    if stage_policy.inference is not None:
        checks += _gates._inference_checks(project, current, stage, plan, policy)
    if stage_policy.data_checks is not None:
        try:
            checks += _gates._data_checks(project, current, stage, plan, actor=actor)
        except ConflictError as exc:
            raise ConfigError(exc.message, hint=exc.hint) from exc
    if stage_policy.reproducible:
        checks.append(
            _gates._reproducible_check(
                project, current, stage, rebuild=stage_policy.rebuild, actor=actor
            )
        )
    skipped: list[tuple[str, str]] = []
    if stage_policy.approvals is not None:
        count = stage_policy.approvals.count
        skipped.append(
            (
                "approvals",
                f"{count} review(s) by someone other than the author are counted when the "
                "version is promoted; CI does not decide them",
            )
        )
    from dataclasses import replace

    return [c if c.stage else replace(c, stage=stage) for c in checks], skipped, notes
