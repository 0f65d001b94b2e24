"""A project with realistic history for the dashboard's tests, built through the services.

Two models: ``churn`` (v1 production, v2 candidate waiting for review after a comparison with
production, v3 candidate in a canary rollout with serving telemetry and analyses, v4
experimental that failed its candidate gate) and ``fraud`` (v1 production, v2 whose shadow
rollout was aborted, which opened an incident). Monitoring windows with drift per column, a
firing and a pending alert, a data-quality report, users of every role with API tokens, and
the audit trail all of this wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor import registry
from conveyor.access import add_user, bootstrap_admin, create_token
from conveyor.core.clock import utcnow
from conveyor.core.digest import digest_bytes
from conveyor.core.errors import ApprovalPendingError, CheckFailedError
from conveyor.deploy import AnalysisSettings, abort, parse_steps, start_rollout, tick
from conveyor.deploy.state import record_windows
from conveyor.deploy.telemetry import Telemetry
from conveyor.evaluation.calibration import reliability_curve
from conveyor.evaluation.fairness import fairness_metrics
from conveyor.monitoring import evaluate, parse_rules, record_window
from conveyor.project import open_project
from conveyor.registry import CheckResult, Evidence, model_state

if TYPE_CHECKING:
    from conveyor.project import Project
    from conveyor.store.metadata import MetadataStore

POLICY = """
stages:
  candidate:
    checks:
      - roc_auc >= 0.75
  production:
    checks:
      - roc_auc >= 0.75
    approvals: {count: 1, roles: [approver]}
"""

RULES = """
alerts:
  - name: feature-drift
    metric: drift.share_drifted
    op: ">"
    threshold: 0.3
    window: 5m
    for: 0s
    actions: [open_incident]
  - name: slow
    metric: latency.p99
    op: ">"
    threshold: 0.2
    window: 5m
    for: 1h
"""

SETTINGS = AnalysisSettings(interval_s=5, min_requests=200)


@dataclass
class Built:
    """The project and one API token per role."""

    project: Project
    tokens: dict[str, str]
    evaluation_report: dict[str, Any]


def build_project(root: Path, store_url: str | None = None) -> Built:
    """Write a project folder under ``root`` and fill its store (``store_url``, an empty
    database; the project's own SQLite file without one)."""
    config = {"store": store_url} if store_url else {}
    (root / "conveyor.yaml").write_text(json.dumps(config) + "\n")
    (root / "policies.yaml").write_text(textwrap.dedent(POLICY))
    project = open_project(root)
    store = project.metadata
    policy = registry.load_policy(root / "policies.yaml")
    tokens = _people(store)
    report = _churn(store, policy)
    _fraud(store, policy)
    _monitoring(store)
    _data_check(store)
    return Built(project, tokens, report)


def _people(store: MetadataStore) -> dict[str, str]:
    bootstrap_admin(store, "root", actor="root")
    roles = {"alice": "approver", "dora": "deployer", "victor": "viewer", "sam": "scientist"}
    for user, role in roles.items():
        add_user(store, user, role, actor="root")
    return {role: create_token(store, user, actor="root").secret for user, role in roles.items()}


def register(store: MetadataStore, model: str, tag: str, auc: float) -> int:
    version, _ = registry.register_version(
        store,
        model=model,
        artifact_digest=digest_bytes(f"{model}-{tag}".encode()),
        metrics={"roc_auc": auc, "accuracy": auc - 0.05},
        run_id=None,
        actor="sam",
    )
    return version.version


def _to_production(store: MetadataStore, policy: Any, model: str, version: int) -> None:
    registry.promote(
        store, model=model, version=version, to="candidate", policy=policy, actor="sam"
    )
    registry.review(
        store,
        model=model,
        version=version,
        stage="production",
        decision="approve",
        actor="alice",
        comment="looks good",
        stage_policy=policy.stage("production"),
    )
    registry.promote(
        store, model=model, version=version, to="production", policy=policy, actor="dora"
    )


def evaluation_report() -> dict[str, Any]:
    """An evaluation report as the evaluation service writes it: calibration and fairness
    measured on synthetic scores by the real functions."""
    rng = np.random.default_rng(7)
    n = 2000
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, n), 0, 1)
    group = rng.choice(["f", "m", "x"], n, p=[0.48, 0.48, 0.04])
    fairness = fairness_metrics(y, (p >= 0.5).astype(int), group, attribute="gender")
    return {
        "n": n,
        "task": "binary",
        "settings": {"threshold": 0.5},
        "calibration": reliability_curve(y, p, n_bins=10).to_dict(),
        "fairness": {"gender": fairness.to_dict()},
    }


def _churn(store: MetadataStore, policy: Any) -> dict[str, Any]:
    v1 = register(store, "churn", "one", 0.81)
    _to_production(store, policy, "churn", v1)
    v2 = register(store, "churn", "two", 0.84)
    registry.promote(store, model="churn", version=v2, to="candidate", policy=policy, actor="sam")
    report = evaluation_report()
    registry.record_evaluation(
        store,
        model="churn",
        version=v2,
        dataset_version=digest_bytes(b"eval-data"),
        config_digest=digest_bytes(b"settings"),
        metrics={"roc_auc": 0.84, "accuracy": 0.79},
        report=report,
        predictions_digest=None,
        actor="sam",
    )
    with store.read() as conn:
        token = model_state(conn, "churn")
    comparison = CheckResult(
        check="roc_auc >= production.roc_auc + 0.005 with 95% confidence",
        passed=True,
        observed=0.84,
        threshold=0.815,
        detail="the whole 95% interval clears +0.005",
        stage="production",
        evidence={
            "metric": "roc_auc",
            "candidate": 0.84,
            "baseline": 0.81,
            "production_version": v1,
            "difference": 0.03,
            "ci_low": 0.012,
            "ci_high": 0.047,
            "confidence": 0.95,
            "method": "delong",
            "n": 2000,
        },
    )
    absolute = CheckResult("roc_auc >= 0.75", True, 0.84, 0.75, "0.84 >= 0.75", "production")
    try:
        registry.promote(
            store,
            model="churn",
            version=v2,
            to="production",
            policy=policy,
            actor="dora",
            evidence=Evidence([absolute, comparison], token),
        )
    except ApprovalPendingError:
        pass  # what the page shows: every check passed, a review is missing
    v3 = register(store, "churn", "three", 0.83)
    registry.promote(store, model="churn", version=v3, to="candidate", policy=policy, actor="sam")
    start_rollout(
        store,
        model="churn",
        version=v3,
        strategy="canary",
        steps=parse_steps("canary", "5,25,50,100"),
        settings=SETTINGS,
        actor="dora",
        reason="better recall",
    )
    # Step 5%: a clean canary, so the analysis passes and the rollout advances to 25%. (The
    # windows end after the rollout started, as a server's would; the analysis runs at the end.)
    now = utcnow()
    for i in range(6):
        end = now + dt.timedelta(seconds=10 * (i + 1))
        latency = 0.010 * (1 + 0.3 * (i % 3))
        serve(store, "churn", v1, end, requests=900, errors=i % 2, latency_s=latency, seed=i)
        serve(store, "churn", v3, end, requests=300, errors=0, latency_s=latency, seed=10 + i)
    tick(store, "churn", promote=lambda _r: None, now=now + dt.timedelta(seconds=70))
    v4 = register(store, "churn", "four", 0.70)
    try:
        registry.promote(
            store, model="churn", version=v4, to="candidate", policy=policy, actor="sam"
        )
    except CheckFailedError:
        pass
    return report


def serve(
    store: MetadataStore,
    model: str,
    version: int,
    end: dt.datetime,
    *,
    requests: int,
    errors: int,
    latency_s: float,
    seed: int,
    role: str = "live",
    shadow: int = 0,
) -> None:
    """Record one 10-second serving window of ``version`` as a server replica would."""
    rng = np.random.default_rng(seed)
    telemetry = Telemetry(seed=seed)
    for i in range(requests):
        telemetry.record_request(latency_s * (1 + 0.2 * rng.random()), 500 if i < errors else 200)
    telemetry.record_predictions(np.clip(rng.normal(0.3, 0.1, requests), 0, 1))
    for i in range(shadow):
        telemetry.record_shadow(
            agree=i % 10 != 0,
            abs_diff=0.01 * (i % 7),
            shadow_latency_s=0.02,
            error=False,
            timed_out=False,
        )
    summary = telemetry.snapshot_and_reset()
    assert summary is not None
    record_windows(
        store,
        "replica-1",
        [
            {
                "model": model,
                "version": version,
                "role": role,
                "started_at": end - dt.timedelta(seconds=10),
                "ended_at": end,
                "summary": summary.to_json(),
            }
        ],
        prune=False,
    )


def _fraud(store: MetadataStore, policy: Any) -> None:
    v1 = register(store, "fraud", "one", 0.90)
    _to_production(store, policy, "fraud", v1)
    v2 = register(store, "fraud", "two", 0.91)
    registry.promote(store, model="fraud", version=v2, to="candidate", policy=policy, actor="sam")
    start_rollout(
        store,
        model="fraud",
        version=v2,
        strategy="shadow",
        steps=parse_steps("shadow"),
        settings=SETTINGS,
        actor="dora",
    )
    now = utcnow()
    for i in range(3):
        end = now + dt.timedelta(seconds=10 * (i + 1))
        serve(store, "fraud", v1, end, requests=400, errors=0, latency_s=0.01, seed=20 + i)
        serve(
            store,
            "fraud",
            v2,
            end,
            requests=0,
            errors=0,
            latency_s=0.01,
            seed=30 + i,
            role="shadow",
            shadow=200,
        )
    tick(store, "fraud", promote=lambda _r: None, now=now + dt.timedelta(seconds=40))
    abort(store, "fraud", actor="dora", reason="shadow disagrees too often")


def _monitoring(store: MetadataStore) -> None:
    rules = parse_rules(textwrap.dedent(RULES))
    now = utcnow()
    for i, share in enumerate((0.0, 0.1, 0.25, 0.5, 0.75)):
        start = now - dt.timedelta(minutes=5 * (5 - i))
        record_window(
            store,
            model="churn",
            version=1,
            start=start,
            end=start + dt.timedelta(minutes=5),
            metrics={
                "rows": 500,
                "drift.share_drifted": share,
                "drift.column.age": 0.05 + 0.1 * i,
                "drift.column.tenure": 0.02 + 0.01 * i,
                "drift.column.plan": 0.01,
                "drift.drifted": ["age", "tenure"][: i // 2],
                "latency.p99": 0.35,
            },
        )
    evaluate(store, rules, model="churn", now=now)


def _data_check(store: MetadataStore) -> None:
    import pandas as pd

    from conveyor.data import DataGateSettings, record_findings, validate_frames

    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"age": rng.normal(40, 10, 500), "plan": rng.choice(["a", "b"], 500)})
    current = pd.DataFrame(
        {
            "age": rng.normal(55, 10, 500),
            "plan": rng.choice(np.array(["a", "b", None], dtype=object), 500),
        }
    )
    report = validate_frames(
        reference, current, DataGateSettings(reference=Path("ref.csv")), charts=True
    )
    record_findings(
        store,
        digest_bytes(b"current"),
        report,
        reference_id=digest_bytes(b"reference"),
        actor="sam",
    )
