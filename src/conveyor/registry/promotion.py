"""Promotion: moving a version to a later stage through the checks of the policy.

Allowed moves::

    experimental -> candidate -> production       (each runs the target stage's checks)
    experimental -> production                    (runs candidate's and production's checks)
    any stage    -> archived                      (no checks)

Everything a promotion does happens in one write transaction, and the checks read the same
snapshot that the move changes: no other promotion can slip in between. When a check fails the
gate results and a ``model.gate_failed`` event are still committed (they are the evidence of the
refusal) but no stage changes, and :class:`CheckFailedError` is raised after the commit.

Promoting to production archives the version it replaces. The replacement's ``production`` row
is written *before* the old version's ``archived`` row: rollback reads that order to tell a
replaced version (which rollback may restore) from one archived on purpose (which it skips).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import CheckFailedError, ConflictError, UsageError
from conveyor.registry._rows import add_stage, fetch_version_and_production
from conveyor.registry.records import STAGES, PromotionResult
from conveyor.store.metadata.schema import gate_result

if TYPE_CHECKING:
    from conveyor.registry.policy import CheckResult, Policy
    from conveyor.registry.records import ModelVersion
    from conveyor.store.metadata import MetadataStore, Tx

__all__ = ["promote"]

logger = logging.getLogger(__name__)

_FORWARD = {
    ("experimental", "candidate"): ("candidate",),
    ("candidate", "production"): ("production",),
    # Skipping a stage must not skip its checks.
    ("experimental", "production"): ("candidate", "production"),
}
_MOVES_HINT = (
    "allowed moves: experimental -> candidate -> production, experimental -> production "
    "(runs the checks of both), and any stage -> archived"
)


@dataclass(frozen=True)
class _Outcome:
    result: PromotionResult
    passed: bool


def promote(
    store: MetadataStore,
    *,
    model: str,
    version: int,
    to: str,
    policy: Policy,
    actor: str,
    reason: str = "",
) -> PromotionResult:
    """Move ``version`` of ``model`` to stage ``to`` if every check of the policy passes.

    Args:
        store: The metadata store.
        model: The model name.
        version: The version number.
        to: The target stage: ``candidate``, ``production`` or ``archived``.
        policy: The checks per stage (``load_policy``).
        actor: Who promotes, for the stage history and the audit trail.
        reason: Why, recorded with the stage change.

    Returns:
        The move, every check that ran (all passed) and the version it replaced, if any.

    Raises:
        UsageError: ``to`` is not a stage.
        NotFoundError: no such model or version.
        ConflictError: the move is not allowed from the version's current stage.
        CheckFailedError: a check failed; ``details["checks"]`` holds every check's result as
            a dict (``CheckResult.to_dict``). Nothing moved; the results were recorded.
    """
    if to not in STAGES:
        raise UsageError(f"unknown stage '{to}'", hint=f"use one of: {', '.join(STAGES)}")
    with store.write(actor) as tx:
        outcome = _promote(tx, model=model, version=version, to=to, policy=policy, reason=reason)
    if not outcome.passed:
        raise _gate_failed(outcome.result)
    logger.info(
        "promoted model version",
        extra={"model": model, "version": version, "from": outcome.result.from_stage, "to": to},
    )
    return outcome.result


def _promote(tx: Tx, *, model: str, version: int, to: str, policy: Policy, reason: str) -> _Outcome:
    current, production = fetch_version_and_production(tx.conn, model, version)
    from_stage = current.stage
    gates = _gates(current, to)
    checks = [
        check.evaluate(
            current.metrics,
            production_version=production.version if production else None,
            production_metrics=production.metrics if production else None,
        )
        for stage in gates
        for check in policy.checks_for(stage)
    ]
    passed = all(c.passed for c in checks)
    target = f"model:{model}/{version}"
    _record_gate_results(tx, current, to, checks)
    result = PromotionResult(
        model=model,
        version=version,
        from_stage=from_stage,
        to_stage=to,
        checks=checks,
        notes=_notes(policy, gates),
    )
    payload: dict[str, Any] = {
        "from_stage": from_stage,
        "to_stage": to,
        "checks": [c.to_dict() for c in checks],
    }
    if not passed:
        tx.audit("model.gate_failed", target, payload)
        return _Outcome(result, passed=False)
    if checks:
        tx.audit("model.gate_passed", target, payload)

    reason = reason or f"promoted from {from_stage}"
    add_stage(
        tx.conn, model=model, version=version, stage=to, actor=tx.actor, reason=reason, at=tx.at
    )
    tx.audit(
        "model.stage_changed", target, {"from_stage": from_stage, "to_stage": to, "reason": reason}
    )
    replaced = None
    if to == "production" and production is not None:
        # After the new production row, never before it: see the module docstring.
        replaced = production.version
        why = f"replaced by v{version}"
        add_stage(
            tx.conn,
            model=model,
            version=replaced,
            stage="archived",
            actor=tx.actor,
            reason=why,
            at=tx.at,
        )
        tx.audit(
            "model.stage_changed",
            f"model:{model}/{replaced}",
            {"from_stage": "production", "to_stage": "archived", "reason": why},
        )
    return _Outcome(
        PromotionResult(
            model=model,
            version=version,
            from_stage=from_stage,
            to_stage=to,
            checks=checks,
            replaced_version=replaced,
            notes=result.notes,
        ),
        passed=True,
    )


def _gates(current: ModelVersion, to: str) -> tuple[str, ...]:
    """The stages whose checks this move must pass; raises if the move is not allowed."""
    name, version, stage = current.model, current.version, current.stage
    if stage == to:
        raise ConflictError(
            f"model '{name}' version {version} is already in {to}",
            hint=f"see `conveyor model list {name}` for the stage of each version",
        )
    if stage == "archived":
        raise ConflictError(
            f"model '{name}' version {version} is archived, and archived versions cannot be "
            "promoted",
            hint=f"register a new version, or `conveyor rollback {name}` to bring back the "
            "previous production version",
        )
    if to == "archived":
        return ()
    gates = _FORWARD.get((stage, to))
    if gates is None:
        raise ConflictError(
            f"model '{name}' version {version} cannot move from {stage} to {to}",
            hint=_MOVES_HINT,
        )
    return gates


def _record_gate_results(tx: Tx, version: ModelVersion, to: str, checks: list[CheckResult]) -> None:
    if not checks:
        return
    tx.conn.execute(
        sa.insert(gate_result),
        [
            {
                "model": version.model,
                "version": version.version,
                "stage": c.stage,
                "check": c.check,
                "passed": c.passed,
                "observed": c.observed,
                "threshold": c.threshold,
                "details": {"detail": c.detail, "from_stage": version.stage, "to_stage": to},
                "created_at": tx.at,
            }
            for c in checks
        ],
    )


def _notes(policy: Policy, gates: tuple[str, ...]) -> tuple[str, ...]:
    if not gates:
        return ()
    if not policy.has_checks:
        return (policy.note or "the policy has no checks, so no checks ran",)
    empty = [stage for stage in gates if not policy.checks_for(stage)]
    return tuple(f"the policy has no checks for {stage}" for stage in empty)


def _gate_failed(result: PromotionResult) -> CheckFailedError:
    failed = [c for c in result.checks if not c.passed]
    listing = "; ".join(f"{c.check} ({c.detail})" for c in failed)
    return CheckFailedError(
        f"model '{result.model}' version {result.version} was not promoted to "
        f"{result.to_stage}: {len(failed)} of {len(result.checks)} checks failed: {listing}",
        hint="nothing moved and the results are recorded; register an improved version, "
        "or change the checks in policies.yaml",
        details={
            "model": result.model,
            "version": result.version,
            "from_stage": result.from_stage,
            "to_stage": result.to_stage,
            "checks": [c.to_dict() for c in result.checks],
            "failed": [c.check for c in failed],
        },
    )
