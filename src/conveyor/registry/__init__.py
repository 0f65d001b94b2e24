"""The model registry: versions, stages, promotion through policy checks, and rollback."""

from __future__ import annotations

from conveyor.registry.policy import Check, CheckResult, Policy, load_policy, parse_policy
from conveyor.registry.promotion import promote
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
from conveyor.registry.rollback import rollback
from conveyor.registry.versions import register_version

__all__ = [
    "STAGES",
    "Check",
    "CheckResult",
    "GateResult",
    "ModelSummary",
    "ModelVersion",
    "Policy",
    "PromotionResult",
    "RollbackResult",
    "StageChange",
    "gate_results",
    "get_version",
    "list_models",
    "list_versions",
    "load_policy",
    "parse_policy",
    "production_version",
    "promote",
    "register_version",
    "rollback",
    "routing_token",
    "stage_history",
]
