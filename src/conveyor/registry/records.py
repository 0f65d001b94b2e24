"""What the registry hands back: plain frozen records that render as JSON with ``to_dict()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt

    from conveyor.registry.policy import CheckResult

__all__ = [
    "STAGES",
    "GateResult",
    "ModelSummary",
    "ModelVersion",
    "PromotionResult",
    "RollbackResult",
    "StageChange",
]

STAGES = ("experimental", "candidate", "production", "archived")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model and the stage it is in now."""

    model: str
    version: int
    artifact_digest: str
    run_id: str | None
    metrics: dict[str, float]
    created_by: str
    created_at: dt.datetime
    stage: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "artifact_digest": self.artifact_digest,
            "run_id": self.run_id,
            "metrics": dict(self.metrics),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "stage": self.stage,
        }


@dataclass(frozen=True)
class ModelSummary:
    """A model at a glance: how many versions, the latest, the one in production."""

    name: str
    description: str
    created_by: str
    created_at: dt.datetime
    versions: int
    latest_version: int | None
    production_version: int | None
    stages: dict[str, int] = field(default_factory=dict)  # stage -> number of versions in it

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "versions": self.versions,
            "latest_version": self.latest_version,
            "production_version": self.production_version,
            "stages": dict(self.stages),
        }


@dataclass(frozen=True)
class StageChange:
    """One row of a model's stage history; ``id`` orders them (and is the routing token)."""

    id: int
    model: str
    version: int
    stage: str
    actor: str
    reason: str
    at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "stage": self.stage,
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class GateResult:
    """One recorded check evaluation: the evidence behind a promotion or a refusal."""

    model: str
    version: int
    stage: str
    check: str
    passed: bool
    observed: float | None
    threshold: float | None
    detail: str
    at: dt.datetime
    evidence: dict[str, Any] | None = None
    policy_digest: str | None = None
    dataset_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "stage": self.stage,
            "check": self.check,
            "passed": self.passed,
            "observed": self.observed,
            "threshold": self.threshold,
            "detail": self.detail,
            "at": self.at.isoformat(),
            "evidence": self.evidence,
            "policy_digest": self.policy_digest,
            "dataset_version": self.dataset_version,
        }


@dataclass(frozen=True)
class PromotionResult:
    """A successful promotion: the move, every check that ran, and what it replaced.

    ``notes`` says what the reader might not expect, e.g. that no policy file exists and so
    no checks ran.
    """

    model: str
    version: int
    from_stage: str
    to_stage: str
    checks: list[CheckResult]
    replaced_version: int | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "from_stage": self.from_stage,
            "to_stage": self.to_stage,
            "checks": [c.to_dict() for c in self.checks],
            "replaced_version": self.replaced_version,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RollbackResult:
    """A rollback: production went from ``from_version`` back to ``to_version``."""

    model: str
    from_version: int
    to_version: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "from_version": self.from_version,
            "to_version": self.to_version,
        }
