"""promote: gates on absolute and relative thresholds, all-or-nothing moves, the evidence kept."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from conveyor.core.errors import CheckFailedError, ConflictError, UsageError
from conveyor.registry import (
    Policy,
    gate_results,
    get_version,
    parse_policy,
    production_version,
    promote,
    routing_token,
    stage_history,
)

if TYPE_CHECKING:
    from tests.unit.registry.conftest import Audit, Register, ToProduction

    from conveyor.store.metadata import MetadataStore


def _stage(store: MetadataStore, version: int) -> str:
    return get_version(store, "churn", version).stage


def test_candidate_gate_passes_on_absolute_thresholds(
    metadata_store: MetadataStore, register: Register, policy: Policy, audit: Audit
) -> None:
    register("a")
    result = promote(
        metadata_store, model="churn", version=1, to="candidate", policy=policy, actor="lead"
    )
    assert (result.from_stage, result.to_stage, result.replaced_version) == (
        "experimental",
        "candidate",
        None,
    )
    assert [(c.check, c.passed, c.stage) for c in result.checks] == [
        ("roc_auc >= 0.75", True, "candidate"),
        ("accuracy >= 0.7", True, "candidate"),
    ]
    assert _stage(metadata_store, 1) == "candidate"
    assert len(gate_results(metadata_store, "churn", 1)) == 2
    assert audit.actions()[-2:] == [
        ("model.gate_passed", "model:churn/1"),
        ("model.stage_changed", "model:churn/1"),
    ]
    json.dumps(result.to_dict())


def test_failed_gate_moves_nothing_but_keeps_the_evidence(
    metadata_store: MetadataStore, register: Register, policy: Policy, audit: Audit
) -> None:
    register("a", roc_auc=0.74, accuracy=0.9)
    history, token = stage_history(metadata_store, "churn"), routing_token(metadata_store)
    with pytest.raises(CheckFailedError) as info:
        promote(
            metadata_store, model="churn", version=1, to="candidate", policy=policy, actor="lead"
        )
    error = info.value
    assert error.message.startswith(
        "model 'churn' version 1 was not promoted to candidate: 1 of 2 checks failed: "
        "roc_auc >= 0.75 (roc_auc 0.74 is not >= 0.75)"
    )
    assert error.hint is not None
    assert "nothing moved" in error.hint
    assert error.details["failed"] == ["roc_auc >= 0.75"]
    assert error.details["checks"] == [
        {
            "check": "roc_auc >= 0.75",
            "stage": "candidate",
            "passed": False,
            "observed": 0.74,
            "threshold": 0.75,
            "detail": "roc_auc 0.74 is not >= 0.75",
        },
        {
            "check": "accuracy >= 0.7",
            "stage": "candidate",
            "passed": True,
            "observed": 0.9,
            "threshold": 0.7,
            "detail": "accuracy 0.9 >= 0.7",
        },
    ]
    json.dumps(error.to_dict())
    # Nothing moved ...
    assert _stage(metadata_store, 1) == "experimental"
    assert stage_history(metadata_store, "churn") == history
    assert routing_token(metadata_store) == token
    # ... but the evidence is kept.
    assert [(g.check, g.passed) for g in gate_results(metadata_store, "churn", 1)] == [
        ("roc_auc >= 0.75", False),
        ("accuracy >= 0.7", True),
    ]
    assert audit.actions()[-1] == ("model.gate_failed", "model:churn/1")


def test_relative_threshold_compares_with_production(
    metadata_store: MetadataStore, register: Register, to_production: ToProduction
) -> None:
    register("v1", roc_auc=0.87, log_loss=0.40)
    register("v2", roc_auc=0.864, log_loss=0.40)  # 0.006 below production: too far
    register("v3", roc_auc=0.866, log_loss=0.41)  # within both tolerances, exactly on one
    first = to_production(1)
    relative = [c for c in first.checks if c.stage == "production"]
    assert len(relative) == 2
    assert all(c.passed and c.threshold is None for c in relative)
    assert {c.detail for c in relative} == {"no version in production to compare with"}

    with pytest.raises(CheckFailedError) as info:
        to_production(2)  # passes the candidate gate, fails production's
    assert info.value.details["from_stage"] == "candidate"
    [failed] = [c for c in info.value.details["checks"] if not c["passed"]]
    assert failed["check"] == "roc_auc >= production.roc_auc - 0.005"
    assert (failed["observed"], failed["threshold"]) == (0.864, 0.865)
    assert "production v1" in failed["detail"]
    assert _stage(metadata_store, 2) == "candidate"

    result = to_production(3)
    assert [c.threshold for c in result.checks if c.stage == "production"] == [0.865, 0.41]


def test_skipping_candidate_is_refused_before_any_check_runs(
    metadata_store: MetadataStore, register: Register, policy: Policy
) -> None:
    register("a")
    with pytest.raises(ConflictError) as info:
        promote(
            metadata_store, model="churn", version=1, to="production", policy=policy, actor="lead"
        )
    assert (
        info.value.message == "model 'churn' version 1 cannot move from experimental to production"
    )
    assert "experimental -> candidate -> production" in (info.value.hint or "")
    assert gate_results(metadata_store, "churn", 1) == []
    assert _stage(metadata_store, 1) == "experimental"


def test_candidate_to_production_runs_only_production_checks(
    metadata_store: MetadataStore, register: Register, policy: Policy
) -> None:
    register("a")
    promote(metadata_store, model="churn", version=1, to="candidate", policy=policy, actor="lead")
    result = promote(
        metadata_store, model="churn", version=1, to="production", policy=policy, actor="lead"
    )
    assert [c.stage for c in result.checks] == ["production", "production"]
    assert result.from_stage == "candidate"


def test_promoting_to_production_archives_the_previous_one(
    metadata_store: MetadataStore, register: Register, to_production: ToProduction, audit: Audit
) -> None:
    register("a")
    register("b")
    to_production(1)
    result = to_production(2)
    assert (result.from_stage, result.replaced_version) == ("candidate", 1)
    assert _stage(metadata_store, 1) == "archived"
    prod = production_version(metadata_store, "churn")
    assert prod is not None
    assert prod.version == 2
    archived = stage_history(metadata_store, "churn")[-1]
    assert (archived.version, archived.stage, archived.reason) == (1, "archived", "replaced by v2")
    assert ("model.stage_changed", "model:churn/1") in audit.actions()


def test_reason_is_recorded(
    metadata_store: MetadataStore, register: Register, policy: Policy
) -> None:
    register("a")
    promote(
        metadata_store,
        model="churn",
        version=1,
        to="candidate",
        policy=policy,
        actor="lead",
        reason="ticket 42",
    )
    assert stage_history(metadata_store, "churn")[-1].reason == "ticket 42"


def test_archiving_runs_no_checks(
    metadata_store: MetadataStore, register: Register, policy: Policy
) -> None:
    register("a", roc_auc=0.1)
    result = promote(
        metadata_store, model="churn", version=1, to="archived", policy=policy, actor="lead"
    )
    assert result.checks == []
    assert _stage(metadata_store, 1) == "archived"


@pytest.mark.parametrize(
    ("moves", "to", "message", "hint_part"),
    [
        (
            ["candidate"],
            "candidate",
            "model 'churn' version 1 is already in candidate",
            "model list",
        ),
        (
            ["archived"],
            "production",
            "model 'churn' version 1 is archived, and archived versions cannot be promoted",
            "conveyor rollback churn",
        ),
        (
            ["archived"],
            "archived",
            "model 'churn' version 1 is already in archived",
            "model list",
        ),
        (
            ["candidate", "production"],
            "candidate",
            "model 'churn' version 1 cannot move from production to candidate",
            "allowed moves",
        ),
        (
            [],
            "experimental",
            "model 'churn' version 1 is already in experimental",
            "model list",
        ),
        (
            ["candidate"],
            "experimental",
            "model 'churn' version 1 cannot move from candidate to experimental",
            "allowed moves",
        ),
    ],
)
def test_moves_that_are_not_allowed_are_conflicts(
    metadata_store: MetadataStore,
    register: Register,
    policy: Policy,
    audit: Audit,
    moves: list[str],
    to: str,
    message: str,
    hint_part: str,
) -> None:
    register("a")
    for stage in moves:
        promote(metadata_store, model="churn", version=1, to=stage, policy=policy, actor="lead")
    events = audit.verify()
    with pytest.raises(ConflictError) as info:
        promote(metadata_store, model="churn", version=1, to=to, policy=policy, actor="lead")
    assert info.value.message == message
    assert hint_part in (info.value.hint or "")
    assert audit.verify() == events


def test_unknown_stage_is_a_usage_error(
    metadata_store: MetadataStore, register: Register, policy: Policy
) -> None:
    register("a")
    with pytest.raises(UsageError, match="unknown stage 'prod'"):
        promote(metadata_store, model="churn", version=1, to="prod", policy=policy, actor="lead")


def test_without_a_policy_the_result_says_no_checks_ran(
    metadata_store: MetadataStore, register: Register
) -> None:
    register("a")
    empty = Policy(note="no policies.yaml is configured, so no checks ran")
    result = promote(
        metadata_store, model="churn", version=1, to="candidate", policy=empty, actor="lead"
    )
    assert result.checks == []
    assert result.notes == ("no policies.yaml is configured, so no checks ran",)
    only_candidate = parse_policy("stages:\n  candidate:\n    checks: [roc_auc >= 0.5]\n")
    result = promote(
        metadata_store,
        model="churn",
        version=1,
        to="production",
        policy=only_candidate,
        actor="lead",
    )
    assert result.notes == ("the policy has no checks for production",)


def test_audit_chain_verifies_after_a_full_history(
    metadata_store: MetadataStore, register: Register, policy: Policy, audit: Audit
) -> None:
    register("a")
    register("b", roc_auc=0.5)
    register("c")
    promote(metadata_store, model="churn", version=1, to="candidate", policy=policy, actor="l")
    promote(metadata_store, model="churn", version=1, to="production", policy=policy, actor="l")
    with pytest.raises(CheckFailedError):
        promote(metadata_store, model="churn", version=2, to="candidate", policy=policy, actor="l")
    promote(metadata_store, model="churn", version=3, to="candidate", policy=policy, actor="l")
    promote(metadata_store, model="churn", version=3, to="production", policy=policy, actor="l")
    promote(metadata_store, model="churn", version=2, to="archived", policy=policy, actor="l")
    actions = [action for action, _ in audit.actions()]
    assert actions.count("model.gate_failed") == 1
    assert actions.count("model.gate_passed") == 4
    assert audit.verify() == len(actions) == 15
