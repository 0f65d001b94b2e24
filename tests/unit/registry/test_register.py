"""register_version: numbering per model, idempotency on the bundle digest, validation, audit."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from conveyor.core.clock import utcnow
from conveyor.core.digest import digest_bytes
from conveyor.core.errors import NotFoundError, ValidationError
from conveyor.registry import get_version, register_version, routing_token, stage_history
from conveyor.store.metadata.schema import run

if TYPE_CHECKING:
    from tests.unit.registry.conftest import Audit, Register

    from conveyor.store.metadata import MetadataStore


def test_versions_are_numbered_per_model(register: Register) -> None:
    assert [register(t).version for t in ("a", "b", "c")] == [1, 2, 3]
    assert register("a", model="fraud").version == 1
    assert register("d").version == 4


def test_new_version_starts_in_experimental_with_a_history_row(
    metadata_store: MetadataStore, register: Register
) -> None:
    v = register("a", roc_auc=0.9)
    assert (v.model, v.version, v.stage, v.created_by) == ("churn", 1, "experimental", "scientist")
    assert v.metrics == {"roc_auc": 0.9, "accuracy": 0.8, "log_loss": 0.4}
    assert v.created_at.tzinfo is not None
    assert v.artifact_digest == digest_bytes(b"a")
    assert get_version(metadata_store, "churn", 1) == v
    [change] = stage_history(metadata_store, "churn")
    assert (change.version, change.stage, change.reason) == (1, "experimental", "registered")


def test_same_digest_returns_the_existing_version_and_writes_nothing(
    metadata_store: MetadataStore, register: Register, audit: Audit
) -> None:
    first = register("a")
    events, token = audit.verify(), routing_token(metadata_store)
    again, created = register_version(
        metadata_store,
        model="churn",
        artifact_digest=digest_bytes(b"a"),
        metrics={"roc_auc": 0.1},
        run_id=None,
        actor="someone-else",
    )
    assert created is False
    assert again == first
    assert audit.verify() == events
    assert routing_token(metadata_store) == token


def test_audit_events_name_the_model_and_version(register: Register, audit: Audit) -> None:
    register("a")
    register("b")
    assert audit.actions() == [
        ("model.created", "model:churn"),
        ("model.version_registered", "model:churn/1"),
        ("model.version_registered", "model:churn/2"),
    ]
    assert audit.verify() == 3


def test_run_id_must_name_a_recorded_run(metadata_store: MetadataStore) -> None:
    kwargs: dict[str, Any] = {
        "model": "churn",
        "artifact_digest": digest_bytes(b"a"),
        "metrics": {},
        "actor": "scientist",
    }
    with pytest.raises(NotFoundError, match="run 'nope' does not exist"):
        register_version(metadata_store, run_id="nope", **kwargs)
    with metadata_store.write("scientist") as tx:
        tx.conn.execute(
            sa.insert(run).values(
                id="r1",
                pipeline_run_id="p1",
                pipeline="train",
                step="fit",
                status="ok",
                params={},
                code_digest="c",
                env_digest="e",
                cache_key="k",
                cache_hit=False,
                started_at=utcnow(),
            )
        )
    version, created = register_version(metadata_store, run_id="r1", **kwargs)
    assert created
    assert version.run_id == "r1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "../etc"}, "model name '../etc' is not valid"),
        ({"model": ""}, "model name '' is not valid"),
        ({"artifact_digest": "sha1:abc"}, "'sha1:abc' is not a digest"),
        ({"metrics": {"auc": math.nan}}, "metric 'auc' is nan, not a finite number"),
        ({"metrics": {"auc": math.inf}}, "metric 'auc' is inf, not a finite number"),
        ({"metrics": {"auc": "0.9"}}, "metric 'auc' is str, not a number"),
        ({"metrics": {"auc": True}}, "metric 'auc' is bool, not a number"),
        ({"metrics": {"": 1.0}}, "metric name '' is not valid"),
    ],
)
def test_bad_input_is_a_validation_error_and_writes_nothing(
    metadata_store: MetadataStore, audit: Audit, changes: dict[str, Any], message: str
) -> None:
    kwargs: dict[str, Any] = {
        "model": "churn",
        "artifact_digest": digest_bytes(b"a"),
        "metrics": {"auc": 0.9},
        "run_id": None,
        "actor": "scientist",
    }
    with pytest.raises(ValidationError) as info:
        register_version(metadata_store, **{**kwargs, **changes})
    assert info.value.message == message
    assert info.value.hint
    assert audit.verify() == 0


def test_integer_metrics_are_stored_as_floats(metadata_store: MetadataStore) -> None:
    version, _ = register_version(
        metadata_store,
        model="churn",
        artifact_digest=digest_bytes(b"a"),
        metrics={"rows": 1000},
        run_id=None,
        actor="scientist",
    )
    assert version.metrics == {"rows": 1000.0}
    assert isinstance(get_version(metadata_store, "churn", 1).metrics["rows"], float)
