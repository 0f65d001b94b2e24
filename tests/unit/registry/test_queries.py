"""Reading the registry: not-found messages, listings, the production version, the token."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from conveyor.core.errors import CheckFailedError, NotFoundError
from conveyor.registry import (
    gate_results,
    get_version,
    list_models,
    list_versions,
    production_version,
    promote,
    routing_token,
    stage_history,
)

if TYPE_CHECKING:
    from tests.unit.registry.conftest import Register, ToProduction

    from conveyor.registry import Policy
    from conveyor.store.metadata import MetadataStore


def test_unknown_version_names_the_latest(
    metadata_store: MetadataStore, register: Register
) -> None:
    for tag in "abcdefg":
        register(tag)
    with pytest.raises(NotFoundError) as info:
        get_version(metadata_store, "churn", 9)
    assert info.value.message == "model 'churn' has no version 9 (latest is 7)"
    assert info.value.hint == "see `conveyor model list churn`"


def test_unknown_model_says_how_to_see_models(
    metadata_store: MetadataStore, register: Register
) -> None:
    with pytest.raises(NotFoundError) as info:
        get_version(metadata_store, "churn", 1)
    assert info.value.message == "no model named 'churn'"
    assert info.value.hint == "no model is registered yet; `conveyor run` registers one"
    register("a")
    register("a", model="fraud")
    with pytest.raises(NotFoundError) as info:
        list_versions(metadata_store, "x")
    assert info.value.message == "no model named 'x'"
    assert info.value.hint == "see `conveyor model list` for the registered models"
    with pytest.raises(NotFoundError) as info:
        stage_history(metadata_store, "chrun")
    assert info.value.hint is not None
    assert info.value.hint.startswith("did you mean 'churn'?")
    for query in (production_version, gate_results):
        with pytest.raises(NotFoundError, match="no model named 'x'"):
            query(metadata_store, "x")


def test_listings_show_counts_stages_and_production(
    metadata_store: MetadataStore, register: Register, policy: Policy, to_production: ToProduction
) -> None:
    assert list_models(metadata_store) == []
    for tag in "abc":
        register(tag)
    register("a", model="fraud")
    to_production(2)
    promote(metadata_store, model="churn", version=3, to="candidate", policy=policy, actor="lead")

    churn, fraud = list_models(metadata_store)
    assert (churn.name, churn.versions, churn.latest_version, churn.production_version) == (
        "churn",
        3,
        3,
        2,
    )
    assert churn.stages == {"experimental": 1, "production": 1, "candidate": 1}
    assert (fraud.name, fraud.versions, fraud.production_version) == ("fraud", 1, None)
    assert [(v.version, v.stage) for v in list_versions(metadata_store, "churn")] == [
        (1, "experimental"),
        (2, "production"),
        (3, "candidate"),
    ]
    prod = production_version(metadata_store, "churn")
    assert prod is not None
    assert prod.version == 2
    assert production_version(metadata_store, "fraud") is None
    json.dumps([m.to_dict() for m in list_models(metadata_store)])
    json.dumps([v.to_dict() for v in list_versions(metadata_store, "churn")])


def test_history_keeps_every_stage_of_every_version(
    metadata_store: MetadataStore, register: Register, policy: Policy
) -> None:
    register("a")
    register("b")
    moves = (
        (1, "candidate"),
        (1, "production"),
        (2, "candidate"),
        (2, "production"),
        (2, "archived"),
    )
    for version, to in moves:
        promote(metadata_store, model="churn", version=version, to=to, policy=policy, actor="lead")
    history = stage_history(metadata_store, "churn")
    assert [(c.version, c.stage) for c in history] == [
        (1, "experimental"),
        (2, "experimental"),
        (1, "candidate"),
        (1, "production"),
        (2, "candidate"),
        (2, "production"),
        (1, "archived"),
        (2, "archived"),
    ]
    assert [c.reason for c in history][6] == "replaced by v2"
    assert [c.id for c in history] == sorted(c.id for c in history)
    assert {c.actor for c in history} == {"scientist", "lead"}
    json.dumps([c.to_dict() for c in history])


def test_routing_token_moves_with_every_stage_change(
    metadata_store: MetadataStore, register: Register, policy: Policy
) -> None:
    assert routing_token(metadata_store) == 0
    register("a")
    after_register = routing_token(metadata_store)
    assert after_register > 0
    promote(metadata_store, model="churn", version=1, to="candidate", policy=policy, actor="lead")
    after_promote = routing_token(metadata_store)
    assert after_promote > after_register
    assert after_promote == stage_history(metadata_store, "churn")[-1].id


def test_gate_results_per_version(
    metadata_store: MetadataStore, register: Register, policy: Policy
) -> None:
    register("a")
    register("b", roc_auc=0.5)
    promote(metadata_store, model="churn", version=1, to="candidate", policy=policy, actor="lead")
    with pytest.raises(CheckFailedError, match="was not promoted"):
        promote(metadata_store, model="churn", version=2, to="candidate", policy=policy, actor="x")
    assert [(g.version, g.passed) for g in gate_results(metadata_store, "churn")] == [
        (1, True),
        (1, True),
        (2, False),
        (2, True),
    ]
    [failed, _] = gate_results(metadata_store, "churn", 2)
    assert (failed.check, failed.observed, failed.threshold) == ("roc_auc >= 0.75", 0.5, 0.75)
    assert failed.detail == "roc_auc 0.5 is not >= 0.75"
    with pytest.raises(NotFoundError, match="has no version 5"):
        gate_results(metadata_store, "churn", 5)
