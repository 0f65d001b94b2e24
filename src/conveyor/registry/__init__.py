"""The model registry: versions, stages, promotion through policy checks, and rollback."""

from __future__ import annotations

from conveyor.registry.evaluations import (
    StoredEvaluation,
    find_evaluation,
    list_evaluations,
    record_evaluation,
)
from conveyor.registry.policy import (
    ApprovalRule,
    Check,
    CheckResult,
    EvaluationSpec,
    Policy,
    StagePolicy,
    load_policy,
    parse_policy,
)
from conveyor.registry.promotion import Evidence, gates_for, model_state, promote
from conveyor.registry.queries import (
    gate_results,
    get_version,
    list_models,
    list_versions,
    production_version,
    routing_token,
    stage_history,
)
from conveyor.registry.records import (
    STAGES,
    GateResult,
    ModelSummary,
    ModelVersion,
    PromotionResult,
    RollbackResult,
    StageChange,
)
from conveyor.registry.reviews import Review, approval_check, list_reviews, review, role_of
from conveyor.registry.rollback import rollback
from conveyor.registry.versions import register_version

__all__ = [
    "STAGES",
    "ApprovalRule",
    "Check",
    "CheckResult",
    "EvaluationSpec",
    "Evidence",
    "GateResult",
    "ModelSummary",
    "ModelVersion",
    "Policy",
    "PromotionResult",
    "Review",
    "RollbackResult",
    "StageChange",
    "StagePolicy",
    "StoredEvaluation",
    "approval_check",
    "find_evaluation",
    "gate_results",
    "gates_for",
    "get_version",
    "list_evaluations",
    "list_models",
    "list_reviews",
    "list_versions",
    "load_policy",
    "model_state",
    "parse_policy",
    "production_version",
    "promote",
    "record_evaluation",
    "register_version",
    "review",
    "role_of",
    "rollback",
    "routing_token",
    "stage_history",
]
