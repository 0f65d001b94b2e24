"""Reviews: four eyes, roles, a promotion that waits for approval, rejections that hold."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from conveyor.core.clock import utcnow
from conveyor.core.errors import (
    ApprovalPendingError,
    CheckFailedError,
    ConflictError,
    ForbiddenError,
)
from conveyor.registry import (
    Evidence,
    gate_results,
    get_version,
    list_reviews,
    model_state,
    parse_policy,
    promote,
    review,
)
from conveyor.store.metadata.schema import approval, principal

if TYPE_CHECKING:
    from tests.unit.registry.conftest import Audit, Register

    from conveyor.registry import Policy
    from conveyor.store.metadata import MetadataStore

POLICY = """\
stages:
  candidate:
    checks:
      - roc_auc >= 0.75
  production:
    checks:
      - roc_auc >= production.roc_auc - 0.005
    approvals:
      count: 1
      roles: [approver]
"""


@pytest.fixture
def gated() -> Policy:
    return parse_policy(POLICY)


def _grant(store: MetadataStore, user: str, role: str) -> None:
    with store.write("admin") as tx:
        tx.conn.execute(sa.insert(principal).values(user=user, role=role, created_at=utcnow()))


def _candidate(store: MetadataStore, register: Register, policy: Policy, tag: str = "a") -> int:
    version = register(tag).version
    promote(store, model="churn", version=version, to="candidate", policy=policy, actor="lead")
    return version


def test_the_author_can_never_review_their_version(
    metadata_store: MetadataStore, register: Register, gated: Policy
) -> None:
    v = _candidate(metadata_store, register, gated)
    _grant(metadata_store, "scientist", "approver")
    with pytest.raises(ForbiddenError) as info:
        review(
            metadata_store,
            model="churn",
            version=v,
            stage="production",
            decision="approve",
            actor="scientist",
            stage_policy=gated.stage("production"),
        )
    assert info.value.message == (
        "scientist registered model 'churn' version 1 and cannot review it (four-eyes rule)"
    )
    assert "a user with role approver other than scientist" in (info.value.hint or "")
    with metadata_store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(approval)).scalar() == 0


def test_a_stage_that_names_roles_refuses_other_reviewers(
    metadata_store: MetadataStore, register: Register, gated: Policy
) -> None:
    v = _candidate(metadata_store, register, gated)
    _grant(metadata_store, "vera", "viewer")
    for who, has in (("vera", "has role viewer"), ("nobody", "has no role")):
        with pytest.raises(ForbiddenError) as info:
            review(
                metadata_store,
                model="churn",
                version=v,
                stage="production",
                decision="approve",
                actor=who,
                stage_policy=gated.stage("production"),
            )
        assert info.value.message == (
            f"{who} {has}; production reviews of model 'churn' need role approver"
        )


def test_promotion_waits_for_approval_then_moves(
    metadata_store: MetadataStore, register: Register, gated: Policy, audit: Audit
) -> None:
    v = _candidate(metadata_store, register, gated)
    with pytest.raises(ApprovalPendingError) as info:
        promote(metadata_store, model="churn", version=v, to="production", policy=gated, actor="l")
    err = info.value
    assert err.exit_code == 1
    assert "passed every check for production and waits for review" in err.message
    assert "waiting for 1 more approval from a user with role approver other than scientist" in (
        err.message
    )
    assert "conveyor approve churn 1 --stage production" in (err.hint or "")
    assert err.details["waiting_for"][0]["required"] == 1
    assert get_version(metadata_store, "churn", v).stage == "candidate"
    assert audit.actions()[-1] == ("model.approval_pending", "model:churn/1")

    _grant(metadata_store, "alice", "approver")
    done = review(
        metadata_store,
        model="churn",
        version=v,
        stage="production",
        decision="approve",
        actor="alice",
        comment="numbers look right",
        stage_policy=gated.stage("production"),
    )
    assert (done.user, done.role, done.decision) == ("alice", "approver", "approve")
    assert audit.actions()[-1] == ("model.approved", "model:churn/1")

    result = promote(
        metadata_store, model="churn", version=v, to="production", policy=gated, actor="l"
    )
    assert result.to_stage == "production"
    [approvals] = [c for c in result.checks if c.check.startswith("approvals")]
    assert (approvals.passed, approvals.observed, approvals.threshold) == (True, 1.0, 1.0)
    assert approvals.detail == "approved by alice"
    recorded = [g for g in gate_results(metadata_store, "churn", v) if g.check.startswith("appr")]
    assert [g.passed for g in recorded] == [False, True]
    assert recorded[-1].evidence is not None
    assert recorded[-1].evidence["approved_by"] == ["alice"]
    audit.verify()


def test_a_standing_rejection_holds_until_the_reviewer_changes_their_mind(
    metadata_store: MetadataStore, register: Register, gated: Policy
) -> None:
    v = _candidate(metadata_store, register, gated)
    _grant(metadata_store, "alice", "approver")
    _grant(metadata_store, "bob", "approver")
    stage = gated.stage("production")
    for who, decision in (("alice", "approve"), ("bob", "reject")):
        review(
            metadata_store,
            model="churn",
            version=v,
            stage="production",
            decision=decision,
            actor=who,
            comment="calibration is off" if who == "bob" else "",
            stage_policy=stage,
        )
    with pytest.raises(CheckFailedError) as info:
        promote(metadata_store, model="churn", version=v, to="production", policy=gated, actor="l")
    assert not isinstance(info.value, ApprovalPendingError)
    assert "rejected by bob (calibration is off)" in info.value.message

    review(
        metadata_store,
        model="churn",
        version=v,
        stage="production",
        decision="approve",
        actor="bob",
        stage_policy=stage,
    )
    result = promote(
        metadata_store, model="churn", version=v, to="production", policy=gated, actor="l"
    )
    assert result.to_stage == "production"
    with metadata_store.read() as conn:
        assert [r.decision for r in list_reviews(conn, "churn", v)] == [
            "approve",
            "reject",
            "approve",
        ]


def test_a_failed_check_is_a_failure_not_a_wait(
    metadata_store: MetadataStore, register: Register, gated: Policy
) -> None:
    first = _candidate(metadata_store, register, gated, "a")
    _grant(metadata_store, "alice", "approver")
    review(
        metadata_store,
        model="churn",
        version=first,
        stage="production",
        decision="approve",
        actor="alice",
        stage_policy=gated.stage("production"),
    )
    promote(metadata_store, model="churn", version=first, to="production", policy=gated, actor="l")
    worse = register("b", roc_auc=0.80).version
    promote(metadata_store, model="churn", version=worse, to="candidate", policy=gated, actor="l")
    with pytest.raises(CheckFailedError) as info:
        promote(
            metadata_store, model="churn", version=worse, to="production", policy=gated, actor="l"
        )
    assert not isinstance(info.value, ApprovalPendingError)
    assert info.value.details["failed"] == [
        "roc_auc >= production.roc_auc - 0.005",
        "approvals >= 1 from role approver",
    ]


def test_reviews_are_for_the_stage_a_version_waits_for(
    metadata_store: MetadataStore, register: Register, gated: Policy
) -> None:
    v = register("a").version
    with pytest.raises(ConflictError) as info:
        review(
            metadata_store,
            model="churn",
            version=v,
            stage="production",
            decision="approve",
            actor="alice",
        )
    assert info.value.message == (
        "model 'churn' version 1 is in experimental, so it cannot be reviewed for production"
    )


def test_evidence_computed_on_an_old_state_is_refused(
    metadata_store: MetadataStore, register: Register, policy: Policy, audit: Audit
) -> None:
    register("a")
    register("b")
    with metadata_store.read() as conn:
        token = model_state(conn, "churn")
    # Another promotion wins the race while the first one's evidence is being gathered.
    promote(metadata_store, model="churn", version=2, to="candidate", policy=policy, actor="x")
    before = audit.actions()
    with pytest.raises(ConflictError) as info:
        promote(
            metadata_store,
            model="churn",
            version=1,
            to="candidate",
            policy=policy,
            actor="y",
            evidence=Evidence(checks=[], state_token=token),
        )
    assert "changed stage while the gates of version 1 ran" in info.value.message
    assert get_version(metadata_store, "churn", 1).stage == "experimental"
    assert audit.actions() == before
