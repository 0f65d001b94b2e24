"""What the deploy layer reads and writes: the routing of a model, a rollout, an incident.

Plain frozen dataclasses, built from rows by :mod:`conveyor.deploy.state`; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt

__all__ = [
    "ACTIVE_PHASES",
    "PHASES",
    "SHADOW",
    "STRATEGIES",
    "Incident",
    "Rollout",
    "Routing",
    "Step",
]

#: How a rollout exposes its candidate: weighted canary steps, a shadow that only mirrors
#: traffic (never promotes), or blue/green (a shadow analysis, then all traffic at once).
STRATEGIES = ("canary", "shadow", "bluegreen")
#: A rollout is ``progressing`` or ``paused`` until it ends in one of the other phases.
PHASES = ("progressing", "paused", "succeeded", "failed", "aborted", "superseded")
ACTIVE_PHASES = ("progressing", "paused")
#: The step of a plan that mirrors traffic to the candidate instead of giving it a share.
SHADOW = "shadow"

#: A plan step: a canary weight in percent (100 means "promote"), or :data:`SHADOW`.
Step = int | str


@dataclass(frozen=True, slots=True)
class Routing:
    """The desired traffic split of one model, as stored; every server replica converges to it.

    The stable version is always the model's production version in the registry, so a
    promotion or a rollback never has to touch the routing; a rollout only adds a canary (a
    share of the traffic) or a shadow (a mirrored sample of it).

    Attributes:
        canary_weight: Percent of requests (0-100) the canary answers.
        shadow_sample: Fraction of requests (0-1) mirrored to the shadow version.
        generation: Grows with every change; servers compare it to know when to reload.
    """

    model: str
    canary_version: int | None = None
    canary_weight: float = 0.0
    shadow_version: int | None = None
    shadow_sample: float = 0.0
    deployment_id: int | None = None
    generation: int = 0

    @property
    def active(self) -> bool:
        """Whether anything but the stable version takes part in serving."""
        return (self.canary_version is not None and self.canary_weight > 0) or (
            self.shadow_version is not None and self.shadow_sample > 0
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "canary_version": self.canary_version,
            "canary_weight": self.canary_weight,
            "shadow_version": self.shadow_version,
            "shadow_sample": self.shadow_sample,
            "deployment_id": self.deployment_id,
            "generation": self.generation,
        }


@dataclass(frozen=True, slots=True)
class Rollout:
    """One progressive delivery of a candidate version against the stable (production) one.

    Attributes:
        steps: The plan, e.g. ``(5, 25, 50, 100)`` or ``("shadow", 100)``.
        step: Index of the current step in ``steps``.
        failures: Consecutive failed analyses of the current step.
        revision: Bumped on every change; updates compare-and-set on it.
        analyses: The analyses of the current step, oldest first (bounded).
    """

    id: int
    model: str
    stable_version: int | None
    candidate_version: int
    strategy: str
    steps: tuple[Step, ...]
    shadow_sample: float
    phase: str
    step: int
    step_started_at: dt.datetime | None
    failures: int
    revision: int
    settings: dict[str, Any]
    analyses: tuple[dict[str, Any], ...]
    actor: str
    reason: str
    created_at: dt.datetime
    updated_at: dt.datetime
    ended_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def current(self) -> Step:
        """The current step of the plan."""
        return self.steps[min(self.step, len(self.steps) - 1)]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "stable_version": self.stable_version,
            "candidate_version": self.candidate_version,
            "strategy": self.strategy,
            "steps": list(self.steps),
            "shadow_sample": self.shadow_sample,
            "phase": self.phase,
            "step": self.step,
            "current_step": self.current,
            "step_started_at": _iso(self.step_started_at),
            "failures": self.failures,
            "settings": self.settings,
            "analyses": list(self.analyses),
            "actor": self.actor,
            "reason": self.reason,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "ended_at": _iso(self.ended_at),
        }


@dataclass(frozen=True, slots=True)
class Incident:
    """A record that something went wrong in production, with the evidence at the time."""

    id: str
    title: str
    state: str
    model: str | None
    opened_at: dt.datetime
    evidence: dict[str, Any] = field(default_factory=dict)
    resolved_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "state": self.state,
            "model": self.model,
            "opened_at": _iso(self.opened_at),
            "resolved_at": _iso(self.resolved_at),
            "evidence": self.evidence,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
