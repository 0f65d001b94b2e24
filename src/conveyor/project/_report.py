"""The gate report of one model version: what it was measured on, which checks it met, and why.

A promotion records every check it ran (``gate_result``), the evaluation it read (``evaluation``)
and the reviews it counted (``approval``); this module reads them back for one version and lays
them out for people: :func:`gate_report` gathers, :func:`render_markdown` writes the report a CI
job posts on a pull request, and :func:`render_html` (in ``_report_html``) the page with charts.

Gate results are grouped into **attempts**: the rows one promotion wrote in its one transaction
(same target stage, same timestamp, same policy digest), oldest first, so a version held twice
and promoted on the third try shows three attempts, each with its own numbers and verdict.

Nothing is recomputed here: every number is the stored one, so the report says what the gate
saw, not what a re-run would see today.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt

    from conveyor.project._context import Project
    from conveyor.registry import GateResult, ModelVersion, Review, StageChange, StoredEvaluation

__all__ = [
    "GateAttempt",
    "GateReport",
    "evidence_lines",
    "fmt",
    "gate_report",
    "render_markdown",
]


@dataclass(frozen=True)
class GateAttempt:
    """The results one promotion attempt recorded, in the order the checks ran."""

    stage: str
    at: dt.datetime
    policy_digest: str | None
    dataset_version: str | None
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every check of the attempt passed (the version moved)."""
        return all(r.passed for r in self.results)

    @property
    def outcome(self) -> str:
        """``passed``, ``waiting for review`` (only approvals missing, none rejecting) or
        ``failed``."""
        if self.passed:
            return "passed"
        failing = [r for r in self.results if not r.passed]
        if all(_is_approval(r) and not (r.evidence or {}).get("rejected_by") for r in failing):
            return "waiting for review"
        return "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "at": self.at.isoformat(),
            "policy_digest": self.policy_digest,
            "dataset_version": self.dataset_version,
            "outcome": self.outcome,
            "results": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class GateReport:
    """Everything recorded about one version's way through the gates.

    Attributes:
        version: The version, with its current stage.
        history: Its stage changes, oldest first.
        evaluations: The newest evaluation per dataset version and settings, oldest first.
        attempts: Its promotion attempts, oldest first.
        reviews: Its reviews, oldest first.
        production_version: The version of the model in production now, if any.
    """

    version: ModelVersion
    history: tuple[StageChange, ...]
    evaluations: tuple[StoredEvaluation, ...]
    attempts: tuple[GateAttempt, ...]
    reviews: tuple[Review, ...]
    production_version: int | None

    @property
    def latest_evaluation(self) -> StoredEvaluation | None:
        """The newest evaluation of the version, if it was ever evaluated."""
        return self.evaluations[-1] if self.evaluations else None

    def latest_results(self) -> list[GateResult]:
        """The newest result of each check (per stage), in the order the checks first ran."""
        newest: dict[tuple[str, str], GateResult] = {}
        for attempt in self.attempts:
            for r in attempt.results:
                newest[(r.stage, r.check)] = r
        return list(newest.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version.to_dict(),
            "production_version": self.production_version,
            "history": [c.to_dict() for c in self.history],
            "evaluations": [e.to_dict() for e in self.evaluations],
            "attempts": [a.to_dict() for a in self.attempts],
            "reviews": [r.to_dict() for r in self.reviews],
        }


def gate_report(project: Project, model: str, version: int) -> GateReport:
    """Gather the gate report of ``version`` of ``model`` from the project's metadata store.

    Raises:
        NotFoundError: no such model or version.
    """
    from conveyor.registry import (
        gate_results,
        get_version,
        list_evaluations,
        list_reviews,
        production_version,
        stage_history,
    )

    store = project.metadata
    current = get_version(store, model, version)
    history = [c for c in stage_history(store, model) if c.version == version]
    newest: dict[tuple[str, str | None], StoredEvaluation] = {}
    for e in list_evaluations(store, model, version):
        newest.pop((e.dataset_version, e.config_digest), None)
        newest[(e.dataset_version, e.config_digest)] = e
    with store.read() as conn:
        reviews = list_reviews(conn, model, version)
    production = production_version(store, model)
    return GateReport(
        version=current,
        history=tuple(history),
        evaluations=tuple(sorted(newest.values(), key=lambda e: e.id)),
        attempts=tuple(_attempts(gate_results(store, model, version))),
        reviews=tuple(reviews),
        production_version=None if production is None else production.version,
    )


def _attempts(results: list[GateResult]) -> list[GateAttempt]:
    """Consecutive results of one transaction form an attempt; a check that repeats starts a
    new one even if the clock did not move between two transactions."""
    groups: list[list[GateResult]] = []
    for r in results:
        last = groups[-1] if groups else None
        if (
            last is not None
            and (last[0].stage, last[0].at, last[0].policy_digest)
            == (r.stage, r.at, r.policy_digest)
            and all(prev.check != r.check for prev in last)
        ):
            last.append(r)
        else:
            groups.append([r])
    return [
        GateAttempt(
            stage=g[0].stage,
            at=g[0].at,
            policy_digest=g[0].policy_digest,
            dataset_version=g[0].dataset_version,
            results=tuple(g),
        )
        for g in groups
    ]


def _is_approval(result: GateResult) -> bool:
    evidence = result.evidence or {}
    return "approved_by" in evidence and "required" in evidence


# ----------------------------------------------------------------------------- shared text


def fmt(value: Any, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits, ``-`` for a missing value."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _short(digest: str | None) -> str:
    return "-" if not digest else digest[:19]


def evidence_lines(result: GateResult) -> list[str]:
    """What the evidence of a result says, one plain-text sentence per line."""
    ev = result.evidence or {}
    lines: list[str] = []
    for describe in _DESCRIBERS:
        lines += describe(result, ev)
    return lines


def _comparison(result: GateResult, ev: dict[str, Any]) -> list[str]:
    if "ci_low" not in ev or "ci_high" not in ev:
        return []
    extra = f", p={fmt(ev.get('p_value'))}" if ev.get("p_value") is not None else ""
    if ev.get("n_resamples") is not None:
        extra += f", {ev['n_resamples']} resamples"
    return [
        f"{ev.get('metric', '')} {fmt(ev.get('candidate'), 6)} vs production "
        f"v{ev.get('production_version', '?')} {fmt(ev.get('baseline'), 6)}: difference "
        f"{ev.get('difference', 0.0):+.4g}, {fmt((ev.get('confidence') or 0.0) * 100)}% CI "
        f"[{ev['ci_low']:+.4g}, {ev['ci_high']:+.4g}] ({ev.get('method', '?')}, "
        f"n={ev.get('n', '?')}{extra})"
    ]


def _inference(result: GateResult, ev: dict[str, Any]) -> list[str]:
    if "budget" not in ev or "p99_ms" not in ev:
        return []
    codes = ", ".join(f"{k}: {v}" for k, v in sorted((ev.get("status_codes") or {}).items()))
    return [
        f"inference test: {ev.get('requests')} requests at concurrency {ev.get('concurrency')}: "
        f"p50 {fmt(ev.get('p50_ms'))} ms, p90 {fmt(ev.get('p90_ms'))} ms, p99 "
        f"{fmt(ev.get('p99_ms'))} ms, {fmt(ev.get('throughput_rps'))} req/s, peak memory "
        f"{fmt(ev.get('peak_memory_mb'))} MB, {ev.get('errors')} error(s); status codes {codes}"
    ]


def _data_findings(result: GateResult, ev: dict[str, Any]) -> list[str]:
    if "findings" not in ev:
        return []
    findings = list(ev["findings"])
    lines = [
        f"data checks on dataset {_short(ev.get('dataset_version'))} against reference "
        f"{_short(ev.get('reference_version'))}: {len(findings)} finding(s)"
    ]
    for f in findings[:10]:
        kind = "blocking" if f.get("blocking") else "warning"
        column = f" [{f['column']}]" if f.get("column") else ""
        lines.append(f"{kind}: {f.get('check')}{column}: {f.get('message')}")
    if len(findings) > 10:
        lines.append(f"... and {len(findings) - 10} more finding(s)")
    return lines


def _approvals(result: GateResult, ev: dict[str, Any]) -> list[str]:
    if not _is_approval(result):
        return []
    roles = f" from role {' or '.join(ev['roles'])}" if ev.get("roles") else ""
    rejected = ", ".join(
        r["user"] + (f" ({r['comment']})" if r.get("comment") else "")
        for r in ev.get("rejected_by") or []
    )
    return [
        f"approvals: {ev['required']} required{roles}; approved by "
        f"{', '.join(ev['approved_by']) or 'nobody'}; rejected by {rejected or 'nobody'}; "
        f"the author ({ev.get('author')}) does not count"
    ]


def _run(result: GateResult, ev: dict[str, Any]) -> list[str]:
    if "run_id" not in ev or "steps" not in ev:
        return []
    return [
        f"run {ev['run_id']} (pipeline run {ev.get('pipeline_run_id')}): "
        f"{ev['steps']} step(s), {ev.get('inputs')} input(s) recorded"
    ]


def _fairness(result: GateResult, ev: dict[str, Any]) -> list[str]:
    lines = []
    for attribute, body in sorted((ev.get("fairness") or {}).items()):
        small = body.get("small_groups")
        lines.append(
            f"fairness over {attribute}: demographic parity difference "
            f"{fmt(body.get('demographic_parity_difference'))}, ratio "
            f"{fmt(body.get('demographic_parity_ratio'))}; equalized odds difference "
            f"{fmt(body.get('equalized_odds_difference'))}, ratio "
            f"{fmt(body.get('equalized_odds_ratio'))}"
            + (f"; small groups left out: {', '.join(small)}" if small else "")
        )
    return lines


def _groups(result: GateResult, ev: dict[str, Any]) -> list[str]:
    groups = ev.get("groups")
    if not isinstance(groups, dict):
        return []
    metric = result.check.split()[0].split(".", 2)[-1]
    values = [
        f"{g} {fmt(v.get(metric))} (n={v.get('count')}{', small' if v.get('small') else ''})"
        for g, v in groups.items()
        if isinstance(v, dict)
    ]
    return [f"{metric} per group: " + ", ".join(values)]


def _curve(result: GateResult, ev: dict[str, Any]) -> list[str]:
    if "reliability_curve" not in ev:
        return []
    bins = (ev["reliability_curve"] or {}).get("bins") or []
    filled = sum(1 for b in bins if b.get("count"))
    return [f"reliability curve: {filled} non-empty bin(s) of {len(bins)}"]


def _measured(result: GateResult, ev: dict[str, Any]) -> list[str]:
    if "evaluation_id" not in ev:
        return []
    return [
        f"measured by evaluation #{ev['evaluation_id']} on dataset "
        f"{_short(ev.get('dataset_version'))}"
    ]


_DESCRIBERS = (
    _comparison,
    _inference,
    _data_findings,
    _approvals,
    _run,
    _fairness,
    _groups,
    _curve,
    _measured,
)


# ----------------------------------------------------------------------------- markdown


def _cell(value: Any) -> str:
    return fmt(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _row(*cells: Any) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    return [_row(*header), "|" + "---|" * len(header), *(_row(*r) for r in rows)]


def _verdict(passed: bool) -> str:
    return "pass" if passed else "FAIL"


def render_markdown(report: GateReport) -> str:
    """The report as GitHub-flavoured markdown: tables, no HTML."""
    v = report.version
    out = [
        f"# Gate report: {v.model} v{v.version}",
        "",
        f"- stage: **{v.stage}**"
        + (
            f" (production: v{report.production_version})"
            if report.production_version not in (None, v.version)
            else ""
        ),
        f"- registered by {v.created_by} at {v.created_at:%Y-%m-%d %H:%M:%S}",
        f"- bundle: `{v.artifact_digest}`",
        "",
        "## Stage history",
        "",
        *_table(
            ("at", "stage", "actor", "reason"),
            [(f"{c.at:%Y-%m-%d %H:%M:%S}", c.stage, c.actor, c.reason) for c in report.history],
        ),
    ]
    for evaluation in report.evaluations:
        out += ["", *_evaluation_markdown(evaluation)]
    out += ["", "## Gate results", ""]
    if not report.attempts:
        out.append("No promotion of this version has run a gate yet.")
    for n, attempt in enumerate(report.attempts, 1):
        out += ([""] if n > 1 else []) + _attempt_markdown(n, attempt)
    out += ["", "## Reviews", ""]
    if report.reviews:
        out += _table(
            ("at", "stage", "user", "role", "decision", "comment"),
            [
                (f"{r.at:%Y-%m-%d %H:%M:%S}", r.stage, r.user, r.role, r.decision, r.comment)
                for r in report.reviews
            ],
        )
    else:
        out.append("No reviews.")
    return "\n".join(out) + "\n"


def _attempt_markdown(n: int, attempt: GateAttempt) -> list[str]:
    failed = sum(1 for r in attempt.results if not r.passed)
    verdict = {
        "passed": "PASSED",
        "waiting for review": "WAITING FOR REVIEW",
        "failed": f"FAILED ({failed} check(s))",
    }[attempt.outcome]
    out = [
        f"### Attempt {n}: to {attempt.stage} at {attempt.at:%Y-%m-%d %H:%M:%S}: {verdict}",
        "",
        f"policy `{_short(attempt.policy_digest)}`, dataset `{_short(attempt.dataset_version)}`",
        "",
        *_table(
            ("check", "result", "observed", "threshold", "why"),
            [
                (r.check, _verdict(r.passed), r.observed, r.threshold, r.detail)
                for r in attempt.results
            ],
        ),
    ]
    shown: list[tuple[str, dict[str, Any]]] = []
    for r in attempt.results:
        if not r.evidence:
            continue
        same = next((check for check, ev in shown if ev == r.evidence), None)
        lines = [f"same measurement as `{same}`"] if same else evidence_lines(r)
        shown.append((r.check, r.evidence))
        if lines:
            out += ["", f"Evidence for `{r.check}`:", "", *(f"- {line}" for line in lines)]
    return out


def _evaluation_markdown(e: StoredEvaluation) -> list[str]:
    report = e.report
    settings = report.get("settings") or {}
    out = [
        f"## Evaluation #{e.id}",
        "",
        f"dataset version `{e.dataset_version}`, {report.get('n', '?')} rows, "
        f"{report.get('task', '?')}, threshold {fmt(settings.get('threshold'))}, "
        f"at {e.created_at:%Y-%m-%d %H:%M:%S}",
        "",
        *_table(("metric", "value"), [(k, e.metrics[k]) for k in sorted(e.metrics)]),
    ]
    bins = (report.get("calibration") or {}).get("bins") or []
    if bins:
        out += [
            "",
            "### Reliability curve",
            "",
            *_table(
                ("bin", "count", "mean predicted", "fraction positive", "gap"),
                [
                    (
                        f"{fmt(b['lower'], 3)}-{fmt(b['upper'], 3)}",
                        b["count"],
                        b["mean_predicted"],
                        b["fraction_positive"],
                        None
                        if b["mean_predicted"] is None or b["fraction_positive"] is None
                        else b["fraction_positive"] - b["mean_predicted"],
                    )
                    for b in bins
                ],
            ),
        ]
    for attribute, body in sorted((report.get("fairness") or {}).items()):
        out += [
            "",
            f"### Fairness over {attribute}",
            "",
            f"demographic parity difference {fmt(body.get('demographic_parity_difference'))}, "
            f"ratio {fmt(body.get('demographic_parity_ratio'))}; equalized odds difference "
            f"{fmt(body.get('equalized_odds_difference'))}, ratio "
            f"{fmt(body.get('equalized_odds_ratio'))} (groups under "
            f"{body.get('min_group_size')} rows are left out)",
            "",
            *_table(
                ("group", "count", "selection rate", "TPR", "FPR", "accuracy", "small"),
                [
                    (
                        g,
                        v.get("count"),
                        v.get("selection_rate"),
                        v.get("tpr"),
                        v.get("fpr"),
                        v.get("accuracy"),
                        "yes" if v.get("small") else "",
                    )
                    for g, v in (body.get("groups") or {}).items()
                ],
            ),
        ]
    for column, groups in sorted((report.get("slices") or {}).items()):
        names = sorted(
            {k for v in groups.values() for k in v if k not in ("count", "small")}
            if groups
            else set()
        )
        out += [
            "",
            f"### Slices by {column}",
            "",
            *_table(
                ("group", "count", *names),
                [(g, v.get("count"), *(v.get(k) for k in names)) for g, v in groups.items()],
            ),
        ]
    return out
