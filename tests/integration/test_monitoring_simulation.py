"""Six hours of production traffic replayed in seconds on a simulated clock, with planted
problems; the monitor must page on every persistent one, with the right evidence, and on none
of the transient ones.

Planted (minutes from the start; one request every 0.6 s, 5-minute windows):

====================  =========  ===========================================================
problem               minutes    expected
====================  =========  ===========================================================
latency spike         70-71      the latency rule goes pending and back: it never fires
broken upstream       90-150     40 % of ``income`` is null: the null rule fires, resolves
sudden plan shift     160-230    ``plan`` mix flips: the plan-drift rule fires, resolves
label-quality drop    200-       outcomes disagree with the model: the accuracy rule fires,
                                 rolls the model back (v2 -> v1) and opens an incident
gradual drift         240-       ``age`` and ``income`` creep up: the drift-share rule fires
====================  =========  ===========================================================
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from conveyor.core.digest import digest_bytes
from conveyor.monitoring import (
    InferenceLogger,
    Monitor,
    WindowSpec,
    list_incidents,
    parse_rules,
    timeline,
)
from conveyor.registry import parse_policy, production_version, promote, register_version

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.monitoring import AlertEvent, Transition
    from conveyor.store.metadata import MetadataStore

RULES = """\
alerts:
  - name: latency
    metric: latency.p99
    op: ">"
    threshold: 0.5
    window: 5m
    for: 10m
    severity: page
  - name: nulls
    metric: quality.null_share
    op: ">"
    threshold: 0.1
    resolve_below: 0.05
    window: 5m
    for: 10m
    actions: [open_incident]
    runbook: runbooks/error-spike.md
  - name: plan-shift
    metric: drift.column.plan
    op: ">"
    threshold: 0.2
    resolve_below: 0.1
    window: 5m
    for: 10m
    actions: [open_incident]
    runbook: runbooks/drift.md
  - name: accuracy
    metric: perf.accuracy
    op: "<"
    threshold: 0.7
    resolve_above: 0.8
    window: 5m
    for: 15m
    severity: page
    notify: [log]
    actions: [rollback, open_incident]
    runbook: runbooks/bad-rollout.md
  - name: feature-drift
    metric: drift.share_drifted
    op: ">"
    threshold: 0.3
    resolve_below: 0.2
    window: 5m
    for: 15m
    actions: [open_incident]
    runbook: runbooks/drift.md
"""

START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
MINUTES = 360
PER_MINUTE = 100
PLANS = np.array(["basic", "plus", "pro"])


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def notify(self, event: AlertEvent) -> None:
        self.events.append(event)


def _features(rng: np.random.Generator, n: int, minute: float) -> pd.DataFrame:
    creep = max(0.0, (minute - 240) / 120) * 1.5  # in reference standard deviations
    plan_p = [0.15, 0.25, 0.6] if 160 <= minute < 230 else [0.5, 0.3, 0.2]
    frame = pd.DataFrame(
        {
            "age": rng.normal(40 + 10 * creep, 10, n),
            "income": rng.lognormal(10 + 0.3 * creep, 0.3, n),
            "tenure": rng.exponential(24, n),
            "plan": rng.choice(PLANS, n, p=plan_p),
            "region": rng.choice(["north", "south", "east", "west"], n),
        }
    )
    if 90 <= minute < 150:
        frame.loc[rng.random(n) < 0.4, "income"] = np.nan
    return frame


def _predict(frame: pd.DataFrame) -> np.ndarray:
    income = frame["income"].fillna(np.exp(10))
    z = 0.08 * (frame["age"] - 40) - 0.03 * (frame["tenure"] - 24) + (np.log(income) - 10)
    out: np.ndarray = (z > 0).astype(int).to_numpy()
    return out


@pytest.fixture
def two_versions(sqlite_store: MetadataStore) -> MetadataStore:
    """churn v1 then v2 promoted to production, so a rollback has somewhere to go."""
    policy = parse_policy("stages:\n  candidate:\n    checks:\n      - accuracy >= 0.7\n")
    for tag in ("v1", "v2"):
        version, _ = register_version(
            sqlite_store,
            model="churn",
            artifact_digest=digest_bytes(tag.encode()),
            metrics={"accuracy": 0.9},
            run_id=None,
            actor="scientist",
        )
        for stage in ("candidate", "production"):
            promote(
                sqlite_store,
                model="churn",
                version=version.version,
                to=stage,
                policy=policy,
                actor="lead",
            )
    return sqlite_store


def test_planted_problems_fire_and_the_transient_spike_does_not(
    two_versions: MetadataStore, tmp_path: Path
) -> None:
    store = two_versions
    rng = np.random.default_rng(7)
    reference = _features(rng, 3000, 0)
    clock = Clock()
    log = InferenceLogger(tmp_path / "log", clock=clock, queue_size=50_000)
    recorder = Recorder()
    monitor = Monitor(
        store,
        parse_rules(RULES),
        log_root=tmp_path / "log",
        specs={
            "churn": WindowSpec(
                reference=reference,
                reference_predictions=_predict(reference),
                slices=("region",),
            )
        },
        notifiers={"log": recorder},
        clock=clock,
    )
    transitions: list[Transition] = []
    serving = 2
    for minute in range(MINUTES):
        frame = _features(rng, PER_MINUTE, minute)
        predictions = _predict(frame)
        flip = rng.random(PER_MINUTE) < (0.45 if minute >= 200 else 0.1)
        latency = 2.0 if 70 <= minute < 71 else 0.02
        rows = frame.to_dict(orient="records")
        for i in range(PER_MINUTE):
            clock.now = START + dt.timedelta(minutes=minute, seconds=0.6 * i)
            request = f"r{minute}-{i}"
            assert log.log("churn", serving, request, rows[i], predictions[i], latency)
            # The outcome comes back through the feedback endpoint, which the server logs. After
            # minute 200 outcomes disagree with the model far more often (the world changed
            # under it): accuracy falls from ~0.9 to ~0.55.
            assert log.log_labels("churn", request, int(predictions[i] ^ flip[i]))
        if (minute + 1) % 5 == 0:
            assert log.flush()
            clock.now = START + dt.timedelta(minutes=minute + 1, seconds=1)
            done = monitor.run_once()
            assert len(done.windows) == 1
            transitions.extend(done.transitions)
            if any(t.actions.get("rollback") for t in done.transitions):
                serving = 1
    counters = log.close()
    # 36,000 requests and their 36,000 labels.
    assert (counters.logged, counters.dropped, counters.written) == (72_000, 0, 72_000)

    fired = {t.rule: t for t in transitions if t.after == "firing"}
    # The one-minute latency spike made its rule pending, never firing.
    latency_states = [t.after for t in transitions if t.rule == "latency"]
    assert latency_states == ["pending", "inactive"]
    assert set(fired) == {"nulls", "plan-shift", "accuracy", "feature-drift"}

    # Each fired after its `for:` held, once the problem had started, with the right numbers.
    nulls = fired["nulls"]
    assert START + dt.timedelta(minutes=100) <= nulls.at <= START + dt.timedelta(minutes=110)
    assert 0.3 < nulls.value < 0.5
    plan = fired["plan-shift"]
    assert START + dt.timedelta(minutes=170) <= plan.at <= START + dt.timedelta(minutes=180)
    accuracy = fired["accuracy"]
    assert START + dt.timedelta(minutes=215) <= accuracy.at <= START + dt.timedelta(minutes=225)
    assert accuracy.value < 0.65
    assert accuracy.actions["rollback"] == {"model": "churn", "from_version": 2, "to_version": 1}
    drift = fired["feature-drift"]
    assert drift.at >= START + dt.timedelta(minutes=250)

    resolved = {t.rule for t in transitions if t.after == "resolved"}
    assert resolved == {"nulls", "plan-shift"}  # fixed upstream; accuracy and drift persist

    # The rollback happened in the registry.
    prod = production_version(store, "churn")
    assert prod is not None
    assert prod.version == 1

    # One incident per acting rule, with the evidence an on-call engineer needs.
    incidents = {i.rule: i for i in list_incidents(store, model="churn")}
    assert set(incidents) == {"nulls", "plan-shift", "accuracy", "feature-drift"}
    null_evidence = incidents["nulls"].evidence
    assert null_evidence["rule"]["name"] == "nulls"
    assert null_evidence["versions"] == [2]
    assert null_evidence["last_window"]["quality.null_share.income"] == pytest.approx(0.4, abs=0.1)
    assert null_evidence["last_window"]["quality.null_share.age"] == 0.0
    assert incidents["nulls"].runbook == "runbooks/error-spike.md"
    assert incidents["accuracy"].evidence["actions"]["rollback"]["to_version"] == 1
    drifted = incidents["feature-drift"].evidence["last_window"]["drift.drifted"]
    assert {"age", "income"} <= set(drifted)
    assert "plan" not in drifted
    plan_evidence = incidents["plan-shift"].evidence
    assert plan_evidence["value"] > 0.2
    assert all(w["value"] > 0.2 for w in plan_evidence["windows"])

    # Notifications went out for firing and resolved transitions of rules that notify.
    assert [(e.rule, e.state) for e in recorder.events if e.rule == "nulls"] == [
        ("nulls", "firing"),
        ("nulls", "resolved"),
    ]

    # The timeline puts the rollback between the accuracy alert and its incident.
    events = timeline(store, "churn", since=START)
    kinds = [(e.kind, e.summary) for e in events]
    rollback_at = next(i for i, (k, _) in enumerate(kinds) if k == "rollback")
    assert any(k == "alert" and "accuracy firing" in s for k, s in kinds[: rollback_at + 1])
