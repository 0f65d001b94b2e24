"""Promotion: moving a version to a later stage through the checks of the policy.

Allowed moves::

    experimental -> candidate -> production       (each runs the target stage's gate)
    any stage    -> archived                      (no checks)

Skipping candidate is refused: a version reaches production only through a candidate gate.

Everything a promotion decides happens in one write transaction, and the checks read the same
snapshot that the move changes: no other promotion can slip in between. Checks that take time
(evaluations, comparisons with production, the inference test, data checks) run *before* that
transaction, in the project's promotion workflow, and reach :func:`promote` as
:class:`Evidence` with the model's state token (its newest stage-history id) read when they
started; if any version of the model changed stage in the meantime the promotion is refused with
a :class:`ConflictError`, so of two concurrent promotions of one model exactly one wins.

Approvals are counted inside the transaction. When a check fails the gate results and a
``model.gate_failed`` event are still committed (they are the evidence of the refusal) but no
stage changes, and :class:`CheckFailedError` is raised after the commit; when every check
passed and only reviews are missing, :class:`ApprovalPendingError` says how many and from whom.

Promoting to production archives the version it replaces. The replacement's ``production`` row
is written *before* the old version's ``archived`` row: rollback reads that order to tell a
replaced version (which rollback may restore) from one archived on purpose (which it skips).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import ApprovalPendingError, CheckFailedError, ConflictError, UsageError
from conveyor.registry._rows import add_stage, fetch_version_and_production
from conveyor.registry.records import STAGES, PromotionResult
from conveyor.registry.reviews import approval_check
from conveyor.store.metadata.schema import gate_result, stage_history

if TYPE_CHECKING:
    from conveyor.registry.policy import CheckResult, Policy
    from conveyor.registry.records import ModelVersion
    from conveyor.store.metadata import MetadataStore, Tx

__all__ = ["Evidence", "gates_for", "model_state", "promote"]

logger = logging.getLogger(__name__)

_FORWARD = {
    ("experimental", "candidate"): ("candidate",),
    ("candidate", "production"): ("production",),
}
_MOVES_HINT = "allowed moves: experimental -> candidate -> production, and any stage -> archived"


@dataclass(frozen=True)
class Evidence:
    """Checks computed before the promotion's transaction, and the state they were computed on.

    Attributes:
        checks: Every computed check of the gated stage (metrics, comparisons, inference test,
            data checks, reproducibility); approvals are added by :func:`promote` itself.
        state_token: :func:`model_state` when the checks started.
        dataset_version: The dataset version the metrics were measured on, if any.
    """

    checks: list[CheckResult]
    state_token: int
    dataset_version: str | None = None


def model_state(conn: sa.Connection, model: str) -> int:
    """The newest stage-history id of ``model`` (0 when it has none): changes on every move."""
    token = conn.execute(
        sa.select(sa.func.max(stage_history.c.id)).where(stage_history.c.model == model)
    ).scalar_one_or_none()
    return int(token or 0)


@dataclass(frozen=True)
class _Outcome:
    result: PromotionResult
    passed: bool
    pending: bool = False


def promote(
    store: MetadataStore,
    *,
    model: str,
    version: int,
    to: str,
    policy: Policy,
    actor: str,
    reason: str = "",
    evidence: Evidence | None = None,
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
        evidence: Checks computed beforehand (the promotion workflow's); without it the
            policy's metric checks are evaluated here against the registered metrics.

    Returns:
        The move, every check that ran (all passed) and the version it replaced, if any.

    Raises:
        UsageError: ``to`` is not a stage.
        NotFoundError: no such model or version.
        ConflictError: the move is not allowed from the version's current stage, or the
            model changed stage since ``evidence`` was computed.
        CheckFailedError: a check failed; ``details["checks"]`` holds every check's result as
            a dict (``CheckResult.to_dict``). Nothing moved; the results were recorded.
        ApprovalPendingError: every check passed but reviews are missing.
    """
    if to not in STAGES:
        raise UsageError(f"unknown stage '{to}'", hint=f"use one of: {', '.join(STAGES)}")
    with store.write(actor) as tx:
        outcome = _promote(
            tx, model=model, version=version, to=to, policy=policy, reason=reason, evidence=evidence
        )
    if outcome.pending:
        raise _approval_pending(outcome.result)
    if not outcome.passed:
        raise _gate_failed(outcome.result)
    logger.info(
        "promoted model version",
        extra={"model": model, "version": version, "from": outcome.result.from_stage, "to": to},
    )
    return outcome.result


def _promote(
    tx: Tx,
    *,
    model: str,
    version: int,
    to: str,
    policy: Policy,
    reason: str,
    evidence: Evidence | None,
) -> _Outcome:
    current, production = fetch_version_and_production(tx.conn, model, version)
    from_stage = current.stage
    gates = gates_for(current, to)
    if evidence is not None:
        now = model_state(tx.conn, model)
        if now != evidence.state_token:
            raise ConflictError(
                f"model '{model}' changed stage while the gates of version {version} ran "
                "(another promotion or a rollback won the race); nothing moved",
                hint=f"see `conveyor model history {model}`, then promote again if it still "
                "applies",
            )
        checks = list(evidence.checks)
    else:
        checks = [
            check.evaluate(
                current.metrics,
                production_version=production.version if production else None,
                production_metrics=production.metrics if production else None,
            )
            for stage in gates
            for check in policy.checks_for(stage)
        ]
    automated_passed = all(c.passed for c in checks)
    approvals = [
        approval_check(tx.conn, current, stage, rule)
        for stage in gates
        if (rule := policy.stage(stage).approvals) is not None
    ]
    checks += approvals
    passed = all(c.passed for c in checks)
    target = f"model:{model}/{version}"
    _record_gate_results(
        tx,
        current,
        to,
        checks,
        policy_digest=policy.digest,
        dataset_version=evidence.dataset_version if evidence else None,
    )
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
        # Waiting, not failed: every check passed and reviews are missing but none rejects.
        pending = automated_passed and not any(
            a.evidence and a.evidence.get("rejected_by") for a in approvals
        )
        tx.audit("model.approval_pending" if pending else "model.gate_failed", target, payload)
        return _Outcome(result, passed=False, pending=pending)
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


def gates_for(current: ModelVersion, to: str) -> tuple[str, ...]:
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


def _record_gate_results(
    tx: Tx,
    version: ModelVersion,
    to: str,
    checks: list[CheckResult],
    *,
    policy_digest: str | None,
    dataset_version: str | None,
) -> None:
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
                "details": {
                    "detail": c.detail,
                    "from_stage": version.stage,
                    "to_stage": to,
                    **({"evidence": c.evidence} if c.evidence is not None else {}),
                },
                "created_at": tx.at,
                "policy_digest": policy_digest,
                "dataset_version": dataset_version,
            }
            for c in checks
        ],
    )


def _notes(policy: Policy, gates: tuple[str, ...]) -> tuple[str, ...]:
    if not gates:
        return ()
    if not policy.has_checks:
        return (policy.note or "the policy has no checks, so no checks ran",)
    empty = [stage for stage in gates if policy.stage(stage).empty]
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


def _approval_pending(result: PromotionResult) -> ApprovalPendingError:
    waiting = [c for c in result.checks if not c.passed]
    listing = "; ".join(c.detail for c in waiting)
    stage = result.to_stage
    return ApprovalPendingError(
        f"model '{result.model}' version {result.version} passed every check for {stage} "
        f"and waits for review: {listing}",
        hint=f"a reviewer runs `conveyor approve {result.model} {result.version} --stage "
        f"{stage}`, then promote again; nothing moved and the results are recorded",
        details={
            "model": result.model,
            "version": result.version,
            "from_stage": result.from_stage,
            "to_stage": stage,
            "checks": [c.to_dict() for c in result.checks],
            "waiting_for": [c.evidence for c in waiting],
        },
    )
