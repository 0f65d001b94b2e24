"""rollback: restore the previous production version, walk further back, refuse when none is."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest

from conveyor.core.errors import ConflictError, NotFoundError
from conveyor.registry import (
    StageChange,
    get_version,
    production_version,
    promote,
    rollback,
    stage_history,
)
from conveyor.registry.rollback import production_lineage

if TYPE_CHECKING:
    from tests.unit.registry.conftest import Audit, Register, ToProduction

    from conveyor.registry import Policy
    from conveyor.store.metadata import MetadataStore


@pytest.fixture
def three_in_production(
    metadata_store: MetadataStore, register: Register, to_production: ToProduction
) -> MetadataStore:
    """v1, v2, v3 promoted (through candidate) to production one after the other; v3 is in it."""
    for tag in ("v1", "v2", "v3"):
        to_production(register(tag).version, actor="l")
    return metadata_store


def _production(store: MetadataStore) -> int | None:
    prod = production_version(store, "churn")
    return None if prod is None else prod.version


def test_rollback_restores_the_previous_production_version(
    three_in_production: MetadataStore, audit: Audit
) -> None:
    store = three_in_production
    result = rollback(store, model="churn", actor="oncall", reason="error rate")
    assert (result.model, result.from_version, result.to_version) == ("churn", 3, 2)
    assert _production(store) == 2
    assert get_version(store, "churn", 3).stage == "archived"
    restored, archived = stage_history(store, "churn")[-2:]
    assert (restored.version, restored.stage) == (2, "production")
    assert restored.reason == "restored by rollback from v3: error rate"
    assert (archived.version, archived.stage, archived.reason) == (
        3,
        "archived",
        "rolled back: error rate",
    )
    assert archived.actor == "oncall"
    assert audit.actions()[-1] == ("model.rolled_back", "model:churn")
    assert result.to_dict() == {"model": "churn", "from_version": 3, "to_version": 2}


def test_repeated_rollbacks_walk_further_back(
    three_in_production: MetadataStore, audit: Audit
) -> None:
    store = three_in_production
    assert rollback(store, model="churn", actor="oncall").to_version == 2
    second = rollback(store, model="churn", actor="oncall")
    assert (second.from_version, second.to_version) == (2, 1)
    assert _production(store) == 1
    assert [v.stage for v in (get_version(store, "churn", n) for n in (1, 2, 3))] == [
        "production",
        "archived",
        "archived",
    ]
    with pytest.raises(ConflictError) as info:
        rollback(store, model="churn", actor="oncall")
    assert info.value.message == "model 'churn' has no earlier production version to roll back to"
    assert _production(store) == 1
    audit.verify()


def test_rollback_after_a_new_promotion_returns_to_the_restored_version(
    three_in_production: MetadataStore, register: Register, to_production: ToProduction
) -> None:
    store = three_in_production
    rollback(store, model="churn", actor="oncall")  # v3 -> v2
    register("v4")
    to_production(4, actor="l")
    assert rollback(store, model="churn", actor="oncall").to_version == 2
    assert rollback(store, model="churn", actor="oncall").to_version == 1


def test_rollback_without_an_earlier_version_is_a_conflict(
    metadata_store: MetadataStore, register: Register, to_production: ToProduction, audit: Audit
) -> None:
    register("a")
    with pytest.raises(ConflictError) as info:
        rollback(metadata_store, model="churn", actor="oncall")
    assert info.value.message == (
        "model 'churn' has no version in production, so there is nothing to roll back"
    )
    to_production(1, actor="l")
    events = audit.verify()
    with pytest.raises(ConflictError) as info:
        rollback(metadata_store, model="churn", actor="oncall")
    assert info.value.message == "model 'churn' has no earlier production version to roll back to"
    assert info.value.hint is not None
    assert "conveyor promote churn 1 --to archived" in info.value.hint
    assert audit.verify() == events
    assert _production(metadata_store) == 1


def test_rollback_of_an_unknown_model_is_not_found(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="no model named 'churn'"):
        rollback(metadata_store, model="churn", actor="oncall")


def test_a_version_archived_on_purpose_is_never_rolled_back_to(
    three_in_production: MetadataStore,
    register: Register,
    policy: Policy,
    to_production: ToProduction,
) -> None:
    store = three_in_production
    promote(store, model="churn", version=3, to="archived", policy=policy, actor="l")
    assert _production(store) is None
    with pytest.raises(ConflictError, match="no version in production"):
        rollback(store, model="churn", actor="oncall")
    register("v4")
    to_production(4, actor="l")
    assert rollback(store, model="churn", actor="oncall").to_version == 2


def _changes(*rows: tuple[int, str]) -> list[StageChange]:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [StageChange(i, "m", v, s, "a", "", at) for i, (v, s) in enumerate(rows, 1)]


@pytest.mark.parametrize(
    ("rows", "current", "stack"),
    [
        ([], None, []),
        ([(1, "experimental"), (1, "candidate")], None, []),
        ([(1, "production")], 1, [1]),
        ([(1, "production"), (2, "production"), (1, "archived")], 2, [1, 2]),
        # rollback from 2 to 1: 1 re-enters production, 2 leaves after it
        (
            [
                (1, "production"),
                (2, "production"),
                (1, "archived"),
                (1, "production"),
                (2, "archived"),
            ],
            1,
            [1],
        ),
        # 2 archived on purpose: it leaves production with no successor row before it
        ([(1, "production"), (2, "production"), (1, "archived"), (2, "archived")], None, [1]),
    ],
)
def test_production_lineage_replays_the_history(
    rows: list[tuple[int, str]], current: int | None, stack: list[int]
) -> None:
    assert production_lineage(_changes(*rows)) == (current, stack)
