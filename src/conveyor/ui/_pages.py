"""What each page shows, gathered from the services: plain values, no HTML.

One function per page; each reads the metadata store (in the worker thread the route runs it
in) and returns a mapping the page's template lays out. Nothing is recomputed that a service
stored: gate verdicts, analyses and drift statistics are the recorded ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.clock import utcnow
from conveyor.core.errors import NotFoundError
from conveyor.data.gate import DatasetCheck, dataset_checks
from conveyor.deploy.state import ServedWindow, serving_windows
from conveyor.registry.queries import last_attempts, production_since
from conveyor.store.metadata.audit import query_events
from conveyor.ui._charts import Series, distribution_chart, line_chart, lineage_svg, split_bar

if TYPE_CHECKING:
    from conveyor.deploy import Rollout
    from conveyor.project import Project

__all__ = [
    "PAGE_SIZE",
    "AuditFilter",
    "ChainVerdicts",
    "audit_page",
    "data_page",
    "deployments_page",
    "model_page",
    "models_page",
    "monitoring_page",
    "version_page",
]

#: Versions (and audit events) per page: a model with 1,000 versions is 20 pages.
PAGE_SIZE = 50
#: How far back the time-series charts reach.
CHART_SPAN = dt.timedelta(days=7)


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page shows: prefixes of action and target, an exact actor, and events
    before ``before`` (a ``seq``: the page after the one ending there)."""

    action: str = ""
    target: str = ""
    actor: str = ""
    before: int | None = None


def models_page(project: Project) -> dict[str, Any]:
    """Every model: versions per stage, production and since when, the latest gate attempt."""
    from conveyor.registry import list_models

    rows = []
    models = list_models(project.metadata)
    with project.metadata.read() as conn:
        for m in models:
            since = (
                production_since(conn, m.name, m.production_version)
                if m.production_version is not None
                else None
            )
            latest = (
                last_attempts(conn, m.name, [m.latest_version]).get(m.latest_version)
                if m.latest_version is not None
                else None
            )
            rows.append({"model": m, "production_since": since, "last_attempt": latest})
    return {"models": rows}


def model_page(project: Project, name: str, page: int) -> dict[str, Any]:
    """One model's versions, newest first, ``PAGE_SIZE`` a page, with their latest attempt.

    Raises:
        NotFoundError: no model of that name.
    """
    from conveyor.deploy.state import active_rollout
    from conveyor.registry import list_versions

    versions = list_versions(project.metadata, name)[::-1]
    pages = max(1, -(-len(versions) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    shown = versions[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    with project.metadata.read() as conn:
        attempts = last_attempts(conn, name, [v.version for v in shown])
        production = next((v for v in versions if v.stage == "production"), None)
        since = production_since(conn, name, production.version) if production else None
        rollout = active_rollout(conn, name)
    return {
        "name": name,
        "versions": [{"version": v, "last_attempt": attempts.get(v.version)} for v in shown],
        "total": len(versions),
        "page": page,
        "pages": pages,
        "production": production,
        "production_since": since,
        "rollout": rollout,
    }


def version_page(project: Project, name: str, version: int) -> dict[str, Any]:
    """One version: metrics against production with confidence intervals, gate attempts with
    evidence, fairness and reliability charts, its changelog entry, lineage and reviews.

    Raises:
        NotFoundError: no such model or version.
    """
    from conveyor.project import gate_report
    from conveyor.project._report import evidence_lines
    from conveyor.project._report_html import fairness_svg, reliability_svg
    from conveyor.registry import get_version

    report = gate_report(project, name, version)
    production = (
        get_version(project.metadata, name, report.production_version)
        if report.production_version not in (None, version)
        else None
    )
    comparisons = _comparisons(report.latest_results())
    evaluation = report.latest_evaluation
    charts: list[tuple[str, str]] = []
    if evaluation is not None:
        bins = (evaluation.report.get("calibration") or {}).get("bins") or []
        if bins:
            charts.append(("Reliability curve", reliability_svg(bins)))
        for attribute, body in sorted((evaluation.report.get("fairness") or {}).items()):
            charts.append(
                (f"Fairness over {attribute}", fairness_svg(attribute, body.get("groups") or {}))
            )
    attempts = [
        {
            "attempt": a,
            "evidence": [(r.check, evidence_lines(r)) for r in a.results if r.evidence],
        }
        for a in report.attempts
    ]
    return {
        "report": report,
        "production": production,
        "metrics": _metric_rows(report.version.metrics, production.metrics if production else {}),
        "comparisons": comparisons,
        "charts": charts,
        "attempts": attempts,
        "changelog": _changelog_entry(project, name, version),
        "lineage": _lineage(project, name, version),
        "reviewable_for": _REVIEWABLE.get(report.version.stage),
    }


_REVIEWABLE = {"experimental": "candidate", "candidate": "production"}


def _metric_rows(mine: dict[str, float], theirs: dict[str, float]) -> list[dict[str, Any]]:
    return [
        {
            "metric": k,
            "value": mine.get(k),
            "production": theirs.get(k),
            "difference": (
                mine[k] - theirs[k]
                if isinstance(mine.get(k), int | float) and isinstance(theirs.get(k), int | float)
                else None
            ),
        }
        for k in sorted(set(mine) | set(theirs))
    ]


def _comparisons(results: list[Any]) -> list[dict[str, Any]]:
    """The gate checks that compared with production: difference and its confidence interval."""
    found = []
    for r in results:
        ev = r.evidence or {}
        if "ci_low" in ev and "ci_high" in ev:
            found.append(
                {
                    "check": r.check,
                    "passed": r.passed,
                    "metric": ev.get("metric"),
                    "candidate": ev.get("candidate"),
                    "baseline": ev.get("baseline"),
                    "production_version": ev.get("production_version"),
                    "difference": ev.get("difference"),
                    "ci_low": ev["ci_low"],
                    "ci_high": ev["ci_high"],
                    "confidence": ev.get("confidence"),
                    "method": ev.get("method"),
                    "n": ev.get("n"),
                }
            )
    return found


def _changelog_entry(project: Project, name: str, version: int) -> str:
    """This version's chapter of ``conveyor changelog`` (against the version before it)."""
    from conveyor.lineage.changelog import Entry, render_markdown
    from conveyor.lineage.graph import describe, diff_versions, upstream
    from conveyor.registry import gate_results, get_version, list_reviews, stage_history

    store = project.metadata
    current = get_version(store, name, version)
    try:
        reached = [n.id for n in upstream(store, f"model:{name}/{version}", details=False).nodes]
    except NotFoundError:  # registered without a run: no lineage
        reached = []
    with store.read() as conn:
        labels = describe(conn, [n for n in reached if n.startswith("dataset:")])
        reviews = list_reviews(conn, name, version)
    previous = None
    for v in range(version - 1, 0, -1):
        try:
            previous = diff_versions(store, name, v, version)
            break
        except NotFoundError:
            continue
    entry = Entry(
        version=current,
        datasets=sorted(
            f"{labels[n].label} ({n})" if n in labels else n
            for n in reached
            if n.startswith("dataset:")
        ),
        diff=previous,
        gates=gate_results(store, name, version),
        reviews=reviews,
        stages=[s for s in stage_history(store, name) if s.version == version],
        features=sorted(n for n in reached if n.startswith("feature:")),
    )
    text = render_markdown(name, [entry])
    return text.split("\n", 3)[-1].strip()  # without the title and "generated at" lines


def _lineage(project: Project, name: str, version: int) -> str | None:
    """The lineage graph around the version as SVG: what made it, what was made from it, and
    the rollouts that deployed it; None when it has no lineage."""
    from conveyor.deploy.state import list_rollouts
    from conveyor.lineage.graph import downstream, upstream

    start = f"model:{name}/{version}"
    try:
        up = upstream(project.metadata, start)
        down = downstream(project.metadata, start)
    except NotFoundError:
        return None
    nodes: dict[str, tuple[str, str, str]] = {}
    for n in (*up.nodes, *down.nodes):
        nodes.setdefault(n.id, (n.id, n.kind, n.label))
    edges = list(dict.fromkeys((*up.edges, *down.edges)))
    with project.metadata.read() as conn:
        rollouts = list_rollouts(conn, model=name, limit=200)
    for r in rollouts:
        if version in (r.candidate_version, r.stable_version):
            node_id = f"deployment:{r.id}"
            role = "candidate" if r.candidate_version == version else "stable"
            nodes[node_id] = (node_id, "deployment", f"#{r.id} {r.strategy} {r.phase} ({role})")
            edges.append((start, node_id, "deployed"))
    return lineage_svg(list(nodes.values()), edges, focus=start)


def deployments_page(project: Project) -> dict[str, Any]:
    """Rollouts (active first, then the newest ended), each with its traffic split, canary vs
    stable error rate and latency over time, analyses per step and shadow agreement."""
    from conveyor.deploy import read_routing
    from conveyor.deploy.state import list_rollouts

    routing = read_routing(project.metadata)
    with project.metadata.read() as conn:
        rollouts = list_rollouts(conn, limit=20)
        shown = [r for r in rollouts if r.active] + [r for r in rollouts if not r.active][:5]
        windows = {
            r.id: serving_windows(conn, r.model, since=r.created_at - dt.timedelta(minutes=5))
            for r in shown
        }
        history = {r.id: _step_history(conn, r) for r in shown}
    return {
        "rollouts": [
            {**_rollout_view(r, routing.get(r.model), windows[r.id]), "history": history[r.id]}
            for r in shown
        ]
    }


def _step_history(conn: Any, rollout: Rollout) -> list[dict[str, Any]]:
    """The rollout's recorded events from the audit trail, oldest first: every step it
    advanced past with the verdict of the analysis that moved it, and how it ended."""
    import json

    events = query_events(conn, action="rollout.", target=f"model:{rollout.model}", limit=500)
    found = []
    for e in reversed(events):
        payload = json.loads(e.payload)
        if payload.get("rollout") != rollout.id:
            continue
        analysis = payload.get("analysis") or {}
        found.append(
            {
                "at": e.at,
                "action": e.action.removeprefix("rollout."),
                "actor": e.actor,
                "step": payload.get("step"),
                "verdict": analysis.get("verdict") if isinstance(analysis, dict) else None,
                # The controller's reasons often name the actor already ("aborted by dora: ...").
                "reason": (payload.get("reason") or "").removeprefix(
                    f"{e.action.removeprefix('rollout.')} by {e.actor}: "
                ),
            }
        )
    return found


_AFTER_END = dt.timedelta(minutes=5)


def _rollout_view(rollout: Rollout, routing: Any, windows: list[ServedWindow]) -> dict[str, Any]:
    from conveyor.deploy.telemetry import WindowSummary

    merged: dict[tuple[int, str], dict[dt.datetime, list[dict[str, Any]]]] = {}
    for w in windows:
        # A few minutes past the end still belong: they show how serving settled after it.
        if rollout.ended_at is not None and w.started_at > rollout.ended_at + _AFTER_END:
            continue
        merged.setdefault((w.version, w.role), {}).setdefault(w.ended_at, []).append(w.summary)
    errors, latency, agreement = [], [], []
    for (version, role), by_time in sorted(merged.items()):
        side = "stable" if version == rollout.stable_version else "candidate"
        label = f"{side} v{version}" + (f" ({role})" if role != "live" else "")
        points = [
            (at, WindowSummary.merge([WindowSummary.from_json(s) for s in summaries]))
            for at, summaries in sorted(by_time.items())
        ]
        errors.append(Series(label, [(at, s.error_rate) for at, s in points]))
        latency.append(
            Series(
                label,
                [
                    (at, None if (p := s.latency_quantile(0.99)) is None else p * 1e3)
                    for at, s in points
                ],
            )
        )
        if any(s.shadow_comparisons for _, s in points):
            agreement.append(
                Series(
                    label,
                    [
                        (at, s.shadow_agreements / s.shadow_comparisons)
                        for at, s in points
                        if s.shadow_comparisons
                    ],
                )
            )
    split = []
    if routing is not None:
        # The routing's weight is a percentage; the bar takes shares.
        canary = routing.canary_weight / 100 if routing.canary_version is not None else 0.0
        split = [(f"stable v{rollout.stable_version}", 1.0 - canary)]
        if canary:
            split.append((f"canary v{routing.canary_version}", canary))
    steps: dict[str, list[dict[str, Any]]] = {}
    for a in rollout.analyses:
        steps.setdefault(str(a.get("step")), []).append(a)
    shadow = next((a["shadow"] for a in reversed(rollout.analyses) if a.get("shadow")), None)
    return {
        "rollout": rollout,
        "routing": routing,
        "split_svg": split_bar(split) if split else None,
        "shadow_sample": routing.shadow_sample if routing is not None else 0.0,
        "error_chart": line_chart(
            errors, title="error rate (server errors / requests)", fmt=lambda v: f"{v:.2%}"
        ),
        "latency_chart": line_chart(latency, title="p99 latency", unit=" ms"),
        "agreement_chart": (
            line_chart(agreement, title="shadow agreement", fmt=lambda v: f"{v:.1%}")
            if agreement
            else None
        ),
        "analyses": steps,
        "shadow": shadow,
    }


def data_page(project: Project) -> dict[str, Any]:
    """Data-quality reports (the newest validations with their findings), the reference vs
    current distribution per column of each dataset's newest check, and, per monitored model,
    the drift statistic of every column over time."""
    from conveyor.monitoring.windows import read_windows
    from conveyor.registry import list_models

    since = utcnow() - CHART_SPAN
    drift = []
    models = list_models(project.metadata)
    with project.metadata.read() as conn:
        checks = dataset_checks(conn)
        for m in models:
            windows = read_windows(conn, m.name, since=since)
            columns = sorted(
                {k for w in windows for k in w.metrics if k.startswith("drift.column.")}
            )
            if not columns:
                continue
            series = [
                Series(
                    c.removeprefix("drift.column."),
                    [(w.end, _number(w.metrics.get(c))) for w in windows],
                )
                for c in columns
            ]
            latest = windows[-1].metrics
            drift.append(
                {
                    "model": m.name,
                    "chart": line_chart(series, title=f"{m.name}: drift statistic per column"),
                    "windows": len(windows),
                    "drifted": list(latest.get("drift.drifted") or []),
                    "share": _number(latest.get("drift.share_drifted")),
                }
            )
    return {"checks": checks, "drift": drift, "distributions": _distributions(checks)}


def _distributions(checks: list[DatasetCheck]) -> list[dict[str, Any]]:
    """Per dataset (by name, else version), its newest check's recorded distributions."""
    seen: set[str] = set()
    out = []
    for c in checks:  # newest first
        if c.dataset in seen or not c.charts:
            continue
        seen.add(c.dataset)
        out.append(
            {
                "check": c,
                "charts": [distribution_chart(name, chart) for name, chart in c.charts.items()],
            }
        )
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def monitoring_page(project: Project) -> dict[str, Any]:
    """Alerts by state (firing, pending, resolved) and incidents with their timeline."""
    from conveyor.monitoring import list_incidents, timeline
    from conveyor.monitoring.alerts import list_alerts

    with project.metadata.read() as conn:
        alerts = list_alerts(conn)
    by_state: dict[str, list[Any]] = {"firing": [], "pending": [], "resolved": []}
    for a in alerts:
        by_state.setdefault(a.state, []).append(a)
    incidents = []
    timelines: dict[str, list[Any]] = {}
    for incident in list_incidents(project.metadata)[:20]:
        events: list[Any] = []
        if incident.model:
            if incident.model not in timelines:
                timelines[incident.model] = timeline(project.metadata, incident.model)
            start = incident.opened_at - dt.timedelta(hours=1)
            end = (incident.resolved_at or utcnow()) + dt.timedelta(minutes=10)
            events = [e for e in timelines[incident.model] if start <= e.at <= end][-30:]
        incidents.append({"incident": incident, "timeline": events})
    return {"alerts": by_state, "incidents": incidents}


def audit_page(
    project: Project, where: AuditFilter, chain: ChainVerdicts | None = None
) -> dict[str, Any]:
    """A page of the audit log (newest first) under ``where``, and the chain's verification."""
    with project.metadata.read() as conn:
        events = query_events(
            conn,
            action=where.action,
            target=where.target,
            actor=where.actor,
            before=where.before,
            limit=PAGE_SIZE,
        )
    report, verified_at = (chain or ChainVerdicts(dt.timedelta(0))).verdict(project)
    return {
        "events": events,
        "filter": where,
        "next_before": events[-1].seq if len(events) == PAGE_SIZE else None,
        "chain": report,
        "verified_at": verified_at,
    }


class ChainVerdicts:
    """The audit chain's verification, reused for ``ttl`` while the chain's head is unchanged.

    Verifying reads every event (about 30 µs each on SQLite), so a store with 100,000 events
    takes seconds: too slow for every visit of the audit page. An appended event changes the
    head and forces a new verification at once; an edit of an old event is found by the next
    verification, at most ``ttl`` later (``conveyor audit verify`` always verifies afresh).
    """

    def __init__(self, ttl: dt.timedelta = dt.timedelta(seconds=60)) -> None:
        import threading

        self.ttl = ttl
        self._lock = threading.Lock()
        self._last: tuple[tuple[int, str], dt.datetime, Any] | None = None

    def verdict(self, project: Project) -> tuple[Any, dt.datetime]:
        """(the chain report, when it was made)."""
        from conveyor.project import verify_audit
        from conveyor.store.metadata.audit import chain_head

        with self._lock:
            with project.metadata.read() as conn:
                head = chain_head(conn)
            now = utcnow()
            if self._last is not None and self._last[0] == head and now - self._last[1] < self.ttl:
                return self._last[2], self._last[1]
            report = verify_audit(project)
            self._last = (head, now, report)
            return report, now
