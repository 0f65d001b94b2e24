"""The rollout controller on a real metadata store (SQLite and PostgreSQL): start, analyse on
stored serving windows, advance, promote, fail with an incident, pause/resume/abort, supersede,
restart when production changes, and compare-and-set between two controllers."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import sqlalchemy as sa

from conveyor import registry
from conveyor.core.clock import utcnow
from conveyor.core.digest import digest_bytes
from conveyor.core.errors import (
    ApprovalPendingError,
    CheckFailedError,
    ConflictError,
    NotFoundError,
    UsageError,
)
from conveyor.deploy import AnalysisSettings, list_incidents, parse_steps, read_routing
from conveyor.deploy import controller as ctl
from conveyor.deploy.state import active_rollout, record_windows
from conveyor.deploy.telemetry import Telemetry
from conveyor.store.metadata import verify_chain
from conveyor.store.metadata.schema import audit_event

if TYPE_CHECKING:
    from conveyor.deploy import Rollout
    from conveyor.store.metadata import MetadataStore

MODEL = "churn"
SETTINGS = AnalysisSettings(interval_s=5, min_requests=200)


def _register(store: MetadataStore, tag: str) -> int:
    version, _ = registry.register_version(
        store,
        model=MODEL,
        artifact_digest=digest_bytes(tag.encode()),
        metrics={"roc_auc": 0.8},
        run_id=None,
        actor="scientist",
    )
    return version.version


def _move(store: MetadataStore, version: int, *stages: str) -> None:
    policy = registry.load_policy(None)
    for stage in stages:
        registry.promote(
            store, model=MODEL, version=version, to=stage, policy=policy, actor="ops", reason="t"
        )


@pytest.fixture
def store(metadata_store: MetadataStore) -> MetadataStore:
    """v1 in production, v2 and v3 candidates."""
    v1 = _register(metadata_store, "one")
    _move(metadata_store, v1, "candidate", "production")
    for tag in ("two", "three"):
        _move(metadata_store, _register(metadata_store, tag), "candidate")
    return metadata_store


def _window(
    *, requests: int, errors: int = 0, latency_s: float = 0.01, shift: float = 0.0, seed: int = 0
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    telemetry = Telemetry(seed=seed)
    for i in range(requests):
        jitter = latency_s * (1 + 0.1 * rng.random())
        telemetry.record_request(jitter, 500 if i < errors else 200)
    telemetry.record_predictions(np.clip(rng.normal(0.3 + shift, 0.1, requests), 0, 1))
    summary = telemetry.snapshot_and_reset()
    assert summary is not None
    return summary.to_json()


def _serve(store: MetadataStore, version: int, summary: dict[str, Any], role: str = "live") -> None:
    now = utcnow()
    record_windows(
        store,
        "test-replica",
        [
            {
                "model": MODEL,
                "version": version,
                "role": role,
                "started_at": now - dt.timedelta(seconds=1),
                "ended_at": now,
                "summary": summary,
            }
        ],
        prune=False,
    )


def _later(seconds: float = 60) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


class _Promotions:
    """A promote callback that moves the candidate to production like the gates would."""

    def __init__(self, store: MetadataStore, error: Exception | None = None) -> None:
        self.store = store
        self.error = error
        self.calls: list[int] = []

    def __call__(self, rollout: Rollout) -> None:
        self.calls.append(rollout.candidate_version)
        if self.error is not None:
            raise self.error
        _move(self.store, rollout.candidate_version, "production")


def _start(store: MetadataStore, version: int = 2, steps: str = "5,25,100", **kw: Any) -> Rollout:
    strategy = kw.pop("strategy", "canary")
    rollout, _ = ctl.start_rollout(
        store,
        model=MODEL,
        version=version,
        strategy=strategy,
        steps=parse_steps(strategy, steps),
        settings=kw.pop("settings", SETTINGS),
        actor="deployer",
        **kw,
    )
    return rollout


def _actions(store: MetadataStore) -> list[str]:
    with store.read() as conn:
        return list(
            conn.execute(sa.select(audit_event.c.action).order_by(audit_event.c.seq)).scalars()
        )


# -- plans ---------------------------------------------------------------------------------------


def test_plans_parse_and_bad_ones_are_refused() -> None:
    assert parse_steps("canary", "5,25,50,100") == (5, 25, 50, 100)
    assert parse_steps("canary", None) == (10, 50, 100)
    assert parse_steps("shadow") == ("shadow",)
    assert parse_steps("bluegreen") == ("shadow", 100)
    for bad in ("5,25", "50,25,100", "0,100", "5,x,100", "5,150"):
        with pytest.raises(UsageError, match="canary steps"):
            parse_steps("canary", bad)
    with pytest.raises(UsageError, match="unknown rollout strategy"):
        parse_steps("rainbow")


# -- start ---------------------------------------------------------------------------------------


def test_start_sets_the_canary_weight_and_audits(store: MetadataStore) -> None:
    rollout = _start(store)
    routing = read_routing(store)[MODEL]
    assert (routing.canary_version, routing.canary_weight) == (2, 5.0)
    assert routing.deployment_id == rollout.id
    assert rollout.stable_version == 1
    assert rollout.phase == "progressing"
    assert "rollout.started" in _actions(store)
    with store.read() as conn:
        assert verify_chain(conn).ok


def test_only_a_candidate_with_a_production_version_to_compare_can_be_deployed(
    store: MetadataStore,
) -> None:
    experimental = _register(store, "four")
    with pytest.raises(ConflictError, match="only a candidate"):
        _start(store, experimental)
    with pytest.raises(ConflictError, match="only a candidate"):
        _start(store, 1)  # production already
    with pytest.raises(NotFoundError):
        _start(store, 99)
    assert MODEL not in read_routing(store)


def test_a_new_version_supersedes_the_rollout_in_progress(store: MetadataStore) -> None:
    first = _start(store, 2)
    _serve(store, 2, _window(requests=300, errors=300))  # evidence against v2 only
    second, superseded = ctl.start_rollout(
        store,
        model=MODEL,
        version=3,
        strategy="canary",
        steps=(5, 100),
        settings=SETTINGS,
        actor="deployer",
    )
    assert superseded is not None
    assert superseded.id == first.id
    assert read_routing(store)[MODEL].canary_version == 3
    with store.read() as conn:
        assert active_rollout(conn, MODEL).id == second.id  # type: ignore[union-attr]
    # v2's windows say nothing about v3: the new analysis has no canary requests yet.
    outcome = ctl.tick(store, MODEL, promote=_Promotions(store), now=_later())
    assert outcome.action == "analysed"
    assert outcome.analysis is not None
    assert outcome.analysis["verdict"] == "inconclusive"


# -- analysis and decisions ------------------------------------------------------------------------


def test_nothing_happens_before_the_interval(store: MetadataStore) -> None:
    _start(store)
    outcome = ctl.tick(store, MODEL, promote=_Promotions(store), now=utcnow())
    assert outcome.action == "waiting"


def test_too_few_requests_wait_for_more(store: MetadataStore) -> None:
    _start(store)
    _serve(store, 1, _window(requests=50))
    _serve(store, 2, _window(requests=5))
    outcome = ctl.tick(store, MODEL, promote=_Promotions(store), now=_later())
    assert outcome.action == "analysed"
    assert outcome.analysis is not None
    assert outcome.analysis["verdict"] == "inconclusive"
    assert read_routing(store)[MODEL].canary_weight == 5.0


def test_a_healthy_canary_walks_the_steps_and_is_promoted(store: MetadataStore) -> None:
    promotions = _Promotions(store)
    _start(store)
    weights = []
    for step in range(2):
        _serve(store, 1, _window(requests=2000, errors=4, seed=step))
        _serve(store, 2, _window(requests=2000, errors=4, seed=step + 10))
        outcome = ctl.tick(store, MODEL, promote=promotions, now=_later(60 * (step + 1)))
        weights.append(read_routing(store)[MODEL].canary_weight)
        assert outcome.analysis is not None
        assert outcome.analysis["verdict"] == "pass", outcome
    assert outcome.action == "succeeded"
    assert weights == [25.0, 0.0]
    assert promotions.calls == [2]
    assert registry.production_version(store, MODEL).version == 2  # type: ignore[union-attr]
    assert not read_routing(store)[MODEL].active
    actions = _actions(store)
    assert actions.count("rollout.advanced") == 1
    assert "rollout.succeeded" in actions


def test_a_failing_canary_is_rolled_back_with_an_incident(store: MetadataStore) -> None:
    _start(store)
    _serve(store, 1, _window(requests=2000, errors=2))
    _serve(store, 2, _window(requests=2000, errors=200))
    outcome = ctl.tick(store, MODEL, promote=_Promotions(store), now=_later())
    assert outcome.action == "failed"
    assert "error" in outcome.message
    routing = read_routing(store)[MODEL]
    assert routing.canary_version is None
    assert routing.canary_weight == 0
    assert outcome.incident is not None
    incidents = list_incidents_for(store)
    assert [i.id for i in incidents] == [outcome.incident.id]
    evidence = incidents[0].evidence
    assert evidence["candidate_version"] == 2
    assert evidence["analysis"]["verdict"] == "fail"
    assert "rollout.failed" in _actions(store)
    assert registry.production_version(store, MODEL).version == 1  # type: ignore[union-attr]


def list_incidents_for(store: MetadataStore) -> list[Any]:
    with store.read() as conn:
        return list_incidents(conn, model=MODEL)


def test_failure_limit_tolerates_that_many_failed_analyses(store: MetadataStore) -> None:
    settings = AnalysisSettings(interval_s=5, min_requests=200, failure_limit=1)
    _start(store, settings=settings)
    _serve(store, 1, _window(requests=2000, errors=2))
    _serve(store, 2, _window(requests=2000, errors=200))
    first = ctl.tick(store, MODEL, promote=_Promotions(store), now=_later(60))
    assert first.action == "analysed"
    assert read_routing(store)[MODEL].canary_weight == 5.0
    second = ctl.tick(store, MODEL, promote=_Promotions(store), now=_later(120))
    assert second.action == "failed"


def test_a_refused_promotion_fails_the_rollout_and_missing_reviews_wait(
    store: MetadataStore,
) -> None:
    _start(store, steps="5,100")
    _serve(store, 1, _window(requests=2000))
    _serve(store, 2, _window(requests=2000, seed=3))
    pending = _Promotions(store, ApprovalPendingError("1 approval missing"))
    outcome = ctl.tick(store, MODEL, promote=pending, now=_later(60))
    assert outcome.action == "awaiting-approval"
    assert read_routing(store)[MODEL].canary_weight == 5.0
    refused = _Promotions(store, CheckFailedError("roc_auc 0.7 < 0.75"))
    outcome = ctl.tick(store, MODEL, promote=refused, now=_later(120))
    assert outcome.action == "failed"
    assert "roc_auc" in outcome.message
    assert not read_routing(store)[MODEL].active
    assert outcome.incident is not None
    assert outcome.incident.evidence["promotion_error"] == "roc_auc 0.7 < 0.75"


def test_a_changed_production_version_restarts_the_analysis(store: MetadataStore) -> None:
    _start(store, version=3)
    _move(store, 2, "production")  # someone promoted v2 by hand meanwhile
    outcome = ctl.tick(store, MODEL, promote=_Promotions(store), now=_later())
    assert outcome.action == "restarted"
    assert outcome.rollout is not None
    assert outcome.rollout.stable_version == 2
    assert "rollout.restarted" in _actions(store)


def test_shadow_plan_ends_with_its_analysis_and_never_promotes(store: MetadataStore) -> None:
    promotions = _Promotions(store)
    _start(store, strategy="shadow", steps="", shadow_sample=0.5)
    routing = read_routing(store)[MODEL]
    assert (routing.shadow_version, routing.shadow_sample, routing.canary_version) == (2, 0.5, None)
    _serve(store, 1, _window(requests=2000))
    _serve(store, 2, _window(requests=2000, seed=4), role="shadow")
    outcome = ctl.tick(store, MODEL, promote=promotions, now=_later())
    assert outcome.action == "succeeded"
    assert promotions.calls == []
    assert outcome.analysis is not None
    assert "shadow" in outcome.analysis
    assert not read_routing(store)[MODEL].active


# -- by hand ---------------------------------------------------------------------------------------


def test_pause_resume_abort(store: MetadataStore) -> None:
    _start(store)
    paused = ctl.pause(store, MODEL, actor="ops", reason="looking")
    assert paused.phase == "paused"
    _serve(store, 1, _window(requests=2000))
    _serve(store, 2, _window(requests=2000, errors=500))
    assert ctl.tick(store, MODEL, promote=_Promotions(store), now=_later()).action == "paused"
    assert read_routing(store)[MODEL].canary_weight == 5.0  # the split stays while paused
    with pytest.raises(ConflictError, match="paused already"):
        ctl.pause(store, MODEL, actor="ops")
    resumed = ctl.resume(store, MODEL, actor="ops")
    assert resumed.phase == "progressing"
    ended, incident = ctl.abort(store, MODEL, actor="ops", reason="customer complaint")
    assert ended.phase == "aborted"
    assert "customer complaint" in incident.title
    assert not read_routing(store)[MODEL].active
    with pytest.raises(NotFoundError, match="no rollout in progress"):
        ctl.abort(store, MODEL, actor="ops")
    actions = _actions(store)
    for action in ("rollout.paused", "rollout.resumed", "rollout.aborted"):
        assert action in actions


def test_two_controllers_never_both_act(store: MetadataStore) -> None:
    """The second controller holds a stale rollout: its write is refused (compare-and-set)."""
    from conveyor.deploy import state

    rollout = _start(store)
    with store.write("a") as tx:
        assert state.update_rollout(tx.conn, rollout, failures=1)
    with store.write("b") as tx:
        assert not state.update_rollout(tx.conn, rollout, failures=2)
    with store.read() as conn:
        assert active_rollout(conn, MODEL).failures == 1  # type: ignore[union-attr]
