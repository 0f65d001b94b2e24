"""The gate report as one self-contained HTML page: inline CSS and SVG, no script, no CDN.

The same content as the markdown report, plus two charts per evaluation, drawn here as SVG so
the page opens anywhere (a CI artifact viewer, an air-gapped reviewer's laptop):

- the **reliability diagram**: per non-empty bin, the mean predicted probability against the
  observed fraction of positives, with the diagonal a calibrated model would follow and the
  bin counts as bars underneath;
- per sensitive attribute, the **fairness bars**: selection rate, true-positive rate and
  false-positive rate of every group side by side.

Every mark carries its exact value in ``data-*`` attributes (``repr`` of the stored float), so
a reader or a test can check the chart against the stored evaluation without parsing pixels.
All text goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from conveyor.project._report import evidence_lines, fmt

if TYPE_CHECKING:
    from conveyor.project._report import GateAttempt, GateReport
    from conveyor.registry import StoredEvaluation

__all__ = ["FAIRNESS_RATES", "render_html"]

#: The per-group rates the fairness chart draws, in bar order, with their legend names.
FAIRNESS_RATES = (("selection_rate", "selection rate"), ("tpr", "TPR"), ("fpr", "FPR"))
_COLOURS = {"selection_rate": "#4c78a8", "tpr": "#54a24b", "fpr": "#e45756"}

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:13px;vertical-align:top}th{background:#f4f4f4}
.pass{color:#1b7f3b;font-weight:600}.fail{color:#b00020;font-weight:600}
.wait{color:#a15c00;font-weight:600}code{font-size:12px}ul.evidence{font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{border:1px solid #eee;padding:8px}
svg text{font-size:10px;fill:#555}svg .axis{stroke:#888;stroke-width:1}
svg .diagonal{stroke:#aaa;stroke-dasharray:4 3}svg .curve{fill:none;stroke:#4c78a8;
stroke-width:1.5}svg circle.bin{fill:#4c78a8}svg rect.count{fill:#bbb}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def _e(value: Any) -> str:
    return html.escape(fmt(value))


def _attr(value: Any) -> str:
    """A value for a ``data-*`` attribute: the exact float, or the escaped text."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return html.escape(str(value))


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: GateReport) -> str:
    """The report as one self-contained HTML page."""
    v = report.version
    title = f"Gate report: {v.model} v{v.version}"
    production = (
        f" (production: v{report.production_version})"
        if report.production_version not in (None, v.version)
        else ""
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Stage <b>{html.escape(v.stage)}</b>{html.escape(production)}; registered by "
        f"{html.escape(v.created_by)} at {v.created_at:%Y-%m-%d %H:%M:%S}; bundle "
        f"<code>{html.escape(v.artifact_digest)}</code></p>",
        "<h2>Stage history</h2>",
        _table(
            ("at", "stage", "actor", "reason"),
            [
                (f"{c.at:%Y-%m-%d %H:%M:%S}", _e(c.stage), _e(c.actor), _e(c.reason))
                for c in report.history
            ],
        ),
    ]
    parts += [_evaluation(e) for e in report.evaluations]
    parts.append("<h2>Gate results</h2>")
    if not report.attempts:
        parts.append("<p>No promotion of this version has run a gate yet.</p>")
    parts += [_attempt(n, a) for n, a in enumerate(report.attempts, 1)]
    parts.append("<h2>Reviews</h2>")
    parts.append(
        _table(
            ("at", "stage", "user", "role", "decision", "comment"),
            [
                (
                    f"{r.at:%Y-%m-%d %H:%M:%S}",
                    _e(r.stage),
                    _e(r.user),
                    _e(r.role),
                    _e(r.decision),
                    _e(r.comment),
                )
                for r in report.reviews
            ],
        )
        if report.reviews
        else "<p>No reviews.</p>"
    )
    parts.append("</body></html>")
    return "".join(parts)


def _attempt(n: int, attempt: GateAttempt) -> str:
    css = {"passed": "pass", "waiting for review": "wait", "failed": "fail"}[attempt.outcome]
    rows = [
        (
            f"<code>{_e(r.check)}</code>",
            f'<span class="{"pass" if r.passed else "fail"}">{"pass" if r.passed else "FAIL"}'
            "</span>",
            _e(r.observed),
            _e(r.threshold),
            _e(r.detail),
        )
        for r in attempt.results
    ]
    evidence = []
    shown: list[tuple[str, dict[str, Any]]] = []
    for r in attempt.results:
        if not r.evidence:
            continue
        same = next((check for check, ev in shown if ev == r.evidence), None)
        lines = [f"same measurement as {same}"] if same else evidence_lines(r)
        shown.append((r.check, r.evidence))
        if lines:
            items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
            evidence.append(
                f"<p>Evidence for <code>{html.escape(r.check)}</code>:</p>"
                f'<ul class="evidence">{items}</ul>'
            )
    return (
        f"<h3>Attempt {n}: to {html.escape(attempt.stage)} at {attempt.at:%Y-%m-%d %H:%M:%S}: "
        f'<span class="{css}">{html.escape(attempt.outcome.upper())}</span></h3>'
        f"<p>policy <code>{_e(attempt.policy_digest)}</code>, dataset "
        f"<code>{_e(attempt.dataset_version)}</code></p>"
        + _table(("check", "result", "observed", "threshold", "why"), rows)
        + "".join(evidence)
    )


def _evaluation(e: StoredEvaluation) -> str:
    report = e.report
    settings = report.get("settings") or {}
    parts = [
        f"<h2>Evaluation #{e.id}</h2>",
        f"<p>dataset version <code>{html.escape(e.dataset_version)}</code>, "
        f"{_e(report.get('n'))} rows, {_e(report.get('task'))}, threshold "
        f"{_e(settings.get('threshold'))}, at {e.created_at:%Y-%m-%d %H:%M:%S}</p>",
        _table(
            ("metric", "value"),
            [(html.escape(k), _e(e.metrics[k])) for k in sorted(e.metrics)],
        ),
    ]
    charts: list[str] = []
    bins = (report.get("calibration") or {}).get("bins") or []
    if bins:
        charts.append(
            '<div class="chart"><b>Reliability diagram</b><br>'
            + reliability_svg(bins)
            + "<br><small>mean predicted (x) vs fraction positive (y); bars: rows per bin"
            "</small></div>"
        )
    for attribute, body in sorted((report.get("fairness") or {}).items()):
        charts.append(
            f'<div class="chart"><b>Fairness over {html.escape(attribute)}</b><br>'
            + fairness_svg(attribute, body.get("groups") or {})
            + "</div>"
        )
    if charts:
        legend = "".join(
            f'<span style="background:{_COLOURS[key]}"></span>{html.escape(name)}'
            for key, name in FAIRNESS_RATES
        )
        parts.append(f'<div class="charts">{"".join(charts)}</div>')
        if report.get("fairness"):
            parts.append(f'<p class="legend">fairness bars:{legend}</p>')
    for attribute, body in sorted((report.get("fairness") or {}).items()):
        parts.append(f"<h3>Fairness over {html.escape(attribute)}</h3>")
        parts.append(
            _table(
                ("group", "count", "selection rate", "TPR", "FPR", "accuracy", "small"),
                [
                    (
                        html.escape(g),
                        _e(v.get("count")),
                        _e(v.get("selection_rate")),
                        _e(v.get("tpr")),
                        _e(v.get("fpr")),
                        _e(v.get("accuracy")),
                        "yes" if v.get("small") else "",
                    )
                    for g, v in (body.get("groups") or {}).items()
                ],
            )
        )
    return "".join(parts)


# ----------------------------------------------------------------------------- charts

_PLOT = 240  # side of the reliability plot, in px
_PAD = 30
_COUNTS = 50  # height of the bin-count bars under it


def reliability_svg(bins: list[dict[str, Any]]) -> str:
    """The reliability diagram of a stored curve's bins (``ReliabilityCurve.to_dict()``)."""
    x0, y0 = _PAD, _PAD // 2
    width, height = x0 + _PLOT + 10, y0 + _PLOT + _COUNTS + 34

    def px(x: float) -> float:
        return x0 + x * _PLOT

    def py(y: float) -> float:
        return y0 + (1.0 - y) * _PLOT

    parts = [
        f'<svg class="reliability" width="{width}" height="{height}" role="img" '
        'xmlns="http://www.w3.org/2000/svg"><title>reliability diagram</title>',
        f'<rect class="axis" x="{x0}" y="{y0}" width="{_PLOT}" height="{_PLOT}" fill="none"/>',
        f'<line class="diagonal" x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" '
        f'y2="{py(1):.1f}"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{px(tick):.1f}" y="{y0 + _PLOT + 12}">{tick:g}</text>')
        parts.append(f'<text x="2" y="{py(tick) + 3:.1f}">{tick:g}</text>')
    filled = [b for b in bins if b.get("count") and b.get("mean_predicted") is not None]
    if filled:
        points = " ".join(
            f"{px(b['mean_predicted']):.1f},{py(b['fraction_positive']):.1f}" for b in filled
        )
        parts.append(f'<polyline class="curve" points="{points}"/>')
    for b in filled:
        m, f, c = b["mean_predicted"], b["fraction_positive"], b["count"]
        parts.append(
            f'<circle class="bin" cx="{px(m):.1f}" cy="{py(f):.1f}" r="3.5" '
            f'data-mean-predicted="{_attr(float(m))}" data-fraction-positive="{_attr(float(f))}" '
            f'data-count="{int(c)}"><title>{fmt(b["lower"], 3)}-{fmt(b["upper"], 3)}: '
            f"mean predicted {fmt(m)}, fraction positive {fmt(f)}, {int(c)} rows</title></circle>"
        )
    top = max([int(b.get("count") or 0) for b in bins] + [1])
    base = y0 + _PLOT + 20 + _COUNTS
    for b in bins:
        lo, hi, c = float(b["lower"]), float(b["upper"]), int(b.get("count") or 0)
        h = _COUNTS * c / top
        parts.append(
            f'<rect class="count" x="{px(lo) + 0.5:.1f}" y="{base - h:.1f}" '
            f'width="{max((hi - lo) * _PLOT - 1, 0.5):.1f}" height="{h:.1f}" data-count="{c}">'
            f"<title>{fmt(lo, 3)}-{fmt(hi, 3)}: {c} rows</title></rect>"
        )
    parts.append(f'<text x="{x0}" y="{base + 12}">rows per bin (max {top})</text>')
    parts.append("</svg>")
    return "".join(parts)


_BAR = 14
_GAP = 14
_BARS_H = 160


def fairness_svg(attribute: str, groups: dict[str, dict[str, Any]]) -> str:
    """Bars of selection rate, TPR and FPR for each group of ``attribute``; an undefined rate
    (a group without positives or negatives) is marked ``n/a``, never drawn as 0."""
    x0, y0 = _PAD, 10
    slot = _BAR * len(FAIRNESS_RATES) + _GAP
    width = x0 + max(len(groups), 1) * slot + 10
    height = y0 + _BARS_H + 34

    def py(y: float) -> float:
        return y0 + (1.0 - y) * _BARS_H

    parts = [
        f'<svg class="fairness" data-attribute="{_attr(attribute)}" width="{width}" '
        f'height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">'
        f"<title>fairness over {html.escape(attribute)}</title>",
        f'<line class="axis" x1="{x0}" y1="{py(0):.1f}" x2="{width - 5}" y2="{py(0):.1f}"/>',
        f'<line class="axis" x1="{x0}" y1="{py(0):.1f}" x2="{x0}" y2="{py(1):.1f}"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        parts.append(f'<text x="2" y="{py(tick) + 3:.1f}">{tick:g}</text>')
    for i, (name, values) in enumerate(groups.items()):
        gx = x0 + 4 + i * slot
        small = " (small)" if values.get("small") else ""
        parts.append(f'<g class="group" data-group="{_attr(name)}">')
        for j, (key, label) in enumerate(FAIRNESS_RATES):
            value = values.get(key)
            x = gx + j * _BAR
            if value is None:
                parts.append(
                    f'<text class="na" x="{x:.1f}" y="{py(0) - 2:.1f}" data-metric="{key}">'
                    "n/a</text>"
                )
                continue
            h = _BARS_H * float(value)
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{py(0) - h:.1f}" width="{_BAR - 2}" '
                f'height="{h:.1f}" fill="{_COLOURS[key]}" data-metric="{key}" '
                f'data-value="{_attr(float(value))}"><title>{html.escape(name)}{small}: '
                f"{label} {fmt(value)}</title></rect>"
            )
        parts.append(
            f'<text x="{gx:.1f}" y="{py(0) + 12:.1f}">{html.escape(name[:12])}{small}</text>'
        )
        parts.append(
            f'<text x="{gx:.1f}" y="{py(0) + 24:.1f}">n={_e(values.get("count"))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
