"""Fixtures for the registry tests: the example policy, one-call ways to register and to reach
production (which goes through candidate: promotion never skips a stage)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pytest
import sqlalchemy as sa

from conveyor.core.digest import digest_bytes
from conveyor.registry import parse_policy, promote, register_version
from conveyor.store.metadata import verify_chain
from conveyor.store.metadata.schema import audit_event

if TYPE_CHECKING:
    from conveyor.registry import ModelVersion, Policy, PromotionResult
    from conveyor.store.metadata import MetadataStore

POLICY_TEXT = """\
stages:
  candidate:
    checks:
      - roc_auc >= 0.75
      - accuracy >= 0.7
  production:
    checks:
      - roc_auc >= production.roc_auc - 0.005
      - log_loss <= production.log_loss + 0.01
"""

GOOD = {"roc_auc": 0.85, "accuracy": 0.80, "log_loss": 0.40}


class Register(Protocol):
    def __call__(self, tag: str, model: str = "churn", **metrics: float) -> ModelVersion: ...


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY_TEXT)


@pytest.fixture
def register(metadata_store: MetadataStore) -> Register:
    """Register a version whose bundle digest is derived from ``tag``; metrics default to GOOD."""

    def _register(tag: str, model: str = "churn", **metrics: float) -> ModelVersion:
        version, created = register_version(
            metadata_store,
            model=model,
            artifact_digest=digest_bytes(tag.encode()),
            metrics={**GOOD, **metrics},
            run_id=None,
            actor="scientist",
        )
        assert created
        return version

    return _register


class ToProduction(Protocol):
    def __call__(self, version: int, *, actor: str = "lead") -> PromotionResult: ...


@pytest.fixture
def to_production(metadata_store: MetadataStore, policy: Policy) -> ToProduction:
    """Promote a version of churn to candidate, then to production, under the example policy.

    Returns the production promotion's result; a failing gate raises as ``promote`` does, so a
    version refused at production is left in candidate.
    """

    def _to_production(version: int, *, actor: str = "lead") -> PromotionResult:
        for stage in ("candidate", "production"):
            result = promote(
                metadata_store, model="churn", version=version, to=stage, policy=policy, actor=actor
            )
        return result

    return _to_production


class Audit:
    """The audit log of one store, as the tests read it."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def actions(self) -> list[tuple[str, str]]:
        """(action, target) of every event, oldest first."""
        query = sa.select(audit_event.c.action, audit_event.c.target).order_by(audit_event.c.seq)
        with self.store.read() as conn:
            return [(r.action, r.target) for r in conn.execute(query)]

    def verify(self) -> int:
        """Assert the hash chain is intact; return the number of events."""
        with self.store.read() as conn:
            report = verify_chain(conn)
        assert report.ok, report
        return report.events


@pytest.fixture
def audit(metadata_store: MetadataStore) -> Audit:
    return Audit(metadata_store)
