"""Reviews: people approving or rejecting a version for a stage, four eyes always.

A review is a row of ``approval`` (decision ``approve`` or ``reject``) with its audit event. The
author of a version (who registered it) can never review it. A user's newest review of a version
for a stage is the one that counts, so a reviewer can change their mind; any standing rejection
holds the promotion, whatever the number of approvals.

Roles come from the ``principal`` table (``conveyor auth`` manages it); a user with no row has
no role, so a stage that requires roles cannot be approved by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import ConflictError, ForbiddenError, UsageError
from conveyor.registry._rows import fetch_version
from conveyor.registry.policy import GATED_STAGES
from conveyor.store.metadata.schema import approval, principal

if TYPE_CHECKING:
    import datetime as dt

    from conveyor.registry.policy import ApprovalRule, CheckResult, StagePolicy
    from conveyor.registry.records import ModelVersion
    from conveyor.store.metadata import MetadataStore

__all__ = ["DECISIONS", "Review", "approval_check", "list_reviews", "review", "role_of"]

DECISIONS = ("approve", "reject")
# Which stages a version may be reviewed for, from the stage it is in.
_REVIEWABLE = {"experimental": ("candidate",), "candidate": ("production",)}


@dataclass(frozen=True)
class Review:
    """One recorded review of a version for a stage."""

    model: str
    version: int
    stage: str
    user: str
    role: str | None
    decision: str
    comment: str
    at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "stage": self.stage,
            "user": self.user,
            "role": self.role,
            "decision": self.decision,
            "comment": self.comment,
            "at": self.at.isoformat(),
        }


def role_of(conn: sa.Connection, user: str) -> str | None:
    """The role of ``user`` in the ``principal`` table, or None."""
    role: str | None = conn.execute(
        sa.select(principal.c.role).where(principal.c.user == user)
    ).scalar_one_or_none()
    return role


def review(
    store: MetadataStore,
    *,
    model: str,
    version: int,
    stage: str,
    decision: str,
    actor: str,
    comment: str = "",
    stage_policy: StagePolicy | None = None,
) -> Review:
    """Record ``actor``'s review of ``version`` for ``stage``.

    Args:
        store: The metadata store.
        model: The model name.
        version: The version number.
        stage: The stage the review is for (``candidate`` or ``production``).
        decision: ``approve`` or ``reject``.
        actor: The reviewer.
        comment: Why; shown wherever the review is.
        stage_policy: The policy of ``stage``; when it requires roles, a reviewer without one
            of them is refused.

    Raises:
        UsageError: ``decision`` or ``stage`` is not one of the known ones.
        NotFoundError: no such model or version.
        ConflictError: the version is not waiting for that stage (already there, archived...).
        ForbiddenError: ``actor`` is the version's author, or lacks a role the stage requires.
    """
    if decision not in DECISIONS:
        raise UsageError(f"unknown decision '{decision}'", hint="use approve or reject")
    if stage not in GATED_STAGES:
        raise UsageError(
            f"stage '{stage}' is not reviewed",
            hint=f"reviews are for the stages {' and '.join(GATED_STAGES)}",
        )
    rule = stage_policy.approvals if stage_policy is not None else None
    target = f"model:{model}/{version}"
    with store.write(actor) as tx:
        current = fetch_version(tx.conn, model, version)
        if stage not in _REVIEWABLE.get(current.stage, ()):
            raise ConflictError(
                f"model '{model}' version {version} is in {current.stage}, so it cannot be "
                f"reviewed for {stage}",
                hint="review a version for the stage it is waiting to enter: an experimental "
                "version for candidate, a candidate for production",
            )
        if actor == current.created_by:
            raise ForbiddenError(
                f"{actor} registered model '{model}' version {version} and cannot review it "
                "(four-eyes rule)",
                hint=f"ask {rule.who(actor) if rule else 'another user'} to review it",
            )
        role = role_of(tx.conn, actor)
        if rule is not None and rule.roles and role not in rule.roles:
            has = f"has role {role}" if role else "has no role"
            raise ForbiddenError(
                f"{actor} {has}; {stage} reviews of model '{model}' need role "
                f"{' or '.join(rule.roles)}",
                hint=f"ask {rule.who(current.created_by)}, or have an admin grant the role",
            )
        tx.conn.execute(
            sa.insert(approval).values(
                model=model,
                version=version,
                stage=stage,
                user=actor,
                role=role,
                decision=decision,
                comment=comment or None,
                created_at=tx.at,
            )
        )
        action = "model.approved" if decision == "approve" else "model.rejected"
        tx.audit(action, target, {"stage": stage, "role": role, "comment": comment})
        at = tx.at
    return Review(model, version, stage, actor, role, decision, comment, at)


def list_reviews(
    conn: sa.Connection, model: str, version: int, *, stage: str | None = None
) -> list[Review]:
    """Every review of a version (for ``stage`` when given), oldest first."""
    query = sa.select(approval).where(approval.c.model == model, approval.c.version == version)
    if stage is not None:
        query = query.where(approval.c.stage == stage)
    rows = conn.execute(query.order_by(approval.c.id)).mappings()
    return [
        Review(
            model=r["model"],
            version=r["version"],
            stage=r["stage"],
            user=r["user"],
            role=r["role"],
            decision=r["decision"],
            comment=r["comment"] or "",
            at=r["created_at"],
        )
        for r in rows
    ]


def approval_check(
    conn: sa.Connection, current: ModelVersion, stage: str, rule: ApprovalRule
) -> CheckResult:
    """Whether the reviews of ``current`` for ``stage`` satisfy ``rule``, as a check result.

    Counted: each eligible reviewer's newest review (not the author; with a required role
    when the rule names roles). Passed when approvals reach the count and no eligible reviewer's
    newest review is a rejection.
    """
    from conveyor.registry.policy import CheckResult

    newest: dict[str, Review] = {}
    for r in list_reviews(conn, current.model, current.version, stage=stage):
        newest[r.user] = r
    eligible = [
        r
        for r in newest.values()
        if r.user != current.created_by and (not rule.roles or r.role in rule.roles)
    ]
    approved = sorted(r.user for r in eligible if r.decision == "approve")
    rejected = [r for r in eligible if r.decision == "reject"]
    evidence = {
        "required": rule.count,
        "roles": list(rule.roles),
        "approved_by": approved,
        "rejected_by": [{"user": r.user, "comment": r.comment} for r in rejected],
        "author": current.created_by,
    }
    if rejected:
        who = ", ".join(f"{r.user}" + (f" ({r.comment})" if r.comment else "") for r in rejected)
        detail = f"rejected by {who}"
        passed = False
    elif len(approved) >= rule.count:
        detail = f"approved by {', '.join(approved)}"
        passed = True
    else:
        missing = rule.count - len(approved)
        have = f" (approved by {', '.join(approved)})" if approved else ""
        detail = (
            f"waiting for {missing} more approval{'s' if missing > 1 else ''} from "
            f"{rule.who(current.created_by)}{have}"
        )
        passed = False
    return CheckResult(
        check=rule.text,
        passed=passed,
        observed=float(len(approved)),
        threshold=float(rule.count),
        detail=detail,
        stage=stage,
        evidence=evidence,
    )
