"""Fixtures for the registry tests: the example policy and a one-call way to register."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pytest
import sqlalchemy as sa

from conveyor.core.digest import digest_bytes
from conveyor.registry import parse_policy, register_version
from conveyor.store.metadata import verify_chain
from conveyor.store.metadata.schema import audit_event

if TYPE_CHECKING:
    from conveyor.registry import ModelVersion, Policy
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
