"""The self-contained HTML data-quality report: inline CSS and SVG, no script, no CDN.

One file that opens anywhere (an air-gapped CI artifact viewer included): a summary, the
findings table (blocking first), the drift table of every compared column, and per column a
chart of the reference against the current distribution, drawn as inline SVG bars from the
same sketches the checks used (shared histogram bins for numbers, the most frequent categories
for text).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.data.findings import DataReport
    from conveyor.data.profile import ColumnSketch

__all__ = ["chart_data", "render_html"]

_BINS = 20
_TOP = 12
_W, _H = 360, 120


def chart_data(
    reference: dict[str, ColumnSketch], current: dict[str, ColumnSketch]
) -> dict[str, dict[str, Any]]:
    """Per shared column, what its chart shows: labels and both samples' shares."""
    import numpy as np

    from conveyor.data.drift import id_like
    from conveyor.data.stats import align_counts, binned_counts

    out: dict[str, dict[str, Any]] = {}
    for name, ref in reference.items():
        cur = current.get(name)
        if cur is None or ref.present == 0 or cur.present == 0 or id_like(ref):
            continue  # an id's distribution says nothing
        if (
            ref.values is not None
            and cur.values is not None
            and ref.ordered
            and cur.ordered
            and not ref.categorical_like
        ):
            lo, hi = min(ref.min, cur.min), max(ref.max, cur.max)
            edges = np.linspace(lo, hi, _BINS + 1)[1:-1] if hi > lo else np.array([lo])
            r = binned_counts(ref.values, edges)
            c = binned_counts(cur.values, edges)
            labels = [_label(lo, ref.kind), _label(hi, ref.kind)]
            kind = "numeric"
        else:
            kind = "categorical"
            rl, rc = ref.value_counts()
            cl, cc = cur.value_counts()
            if rl.dtype != cl.dtype:
                rl, cl = rl.astype(str), cl.astype(str)
            all_labels, r, c = align_counts(rl, rc, cl, cc)
            top = np.argsort(-(r + c), kind="stable")[:_TOP]
            labels = [str(all_labels[i]) for i in top]
            r, c = r[top], c[top]
        out[name] = {
            "kind": kind,
            "labels": labels,
            "reference": (r / max(ref.present, 1)).tolist(),
            "current": (c / max(cur.present, 1)).tolist(),
        }
    return out


def _label(x: float, kind: str) -> str:
    if kind == "datetime":  # sketches hold datetimes as seconds since the epoch
        import datetime as dt

        return dt.datetime.fromtimestamp(x, dt.UTC).strftime("%Y-%m-%d %H:%M")
    return f"{x:.4g}"


def _svg(chart: dict[str, Any]) -> str:
    ref, cur = chart["reference"], chart["current"]
    n = len(ref)
    top = max([*ref, *cur, 1e-12])
    slot = _W / max(n, 1)
    bar = max(slot / 2 - 1, 1)
    parts = [f'<svg width="{_W}" height="{_H + 16}" role="img">']
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        for j, (share, cls) in enumerate(((r, "r"), (c, "c"))):
            h = _H * share / top
            x = i * slot + j * bar
            parts.append(
                f'<rect class="{cls}" x="{x:.1f}" y="{_H - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}"><title>{share:.2%}</title></rect>'
            )
    labels = chart["labels"]
    if chart["kind"] == "numeric":
        parts.append(f'<text x="0" y="{_H + 12}">{html.escape(labels[0])}</text>')
        parts.append(
            f'<text x="{_W}" y="{_H + 12}" text-anchor="end">{html.escape(labels[1])}</text>'
        )
    else:
        for i, label in enumerate(labels):
            parts.append(f'<text x="{i * slot:.1f}" y="{_H + 12}">{html.escape(label[:8])}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;font-size:13px}th{background:#f4f4f4}.block{color:#b00020;font-weight:600}
.warn{color:#a15c00}.ok{color:#1b7f3b}rect.r{fill:#4c78a8}rect.c{fill:#f58518}
svg text{font-size:10px;fill:#555}.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid #eee;padding:8px}.legend span{display:inline-block;width:10px;
height:10px;margin:0 4px 0 12px}
"""


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return html.escape(str(x))


def render_html(report: DataReport, *, title: str = "Data quality report") -> str:
    """The report as one self-contained HTML page."""
    s = report.summary
    verdict = (
        '<p class="ok">PASSED: no blocking finding</p>'
        if report.passed
        else f'<p class="block">FAILED: {len(report.blocking)} blocking finding(s)</p>'
    )
    rows = "".join(
        f'<tr><td class="{"block" if f.blocking else "warn"}">'
        f"{'blocking' if f.blocking else 'warning'}</td><td>{_fmt(f.column)}</td>"
        f"<td>{_fmt(f.check)}</td><td>{_fmt(f.observed)}</td><td>{_fmt(f.threshold)}</td>"
        f"<td>{_fmt(f.message)}</td><td>{_fmt(f.details.get('count'))}</td>"
        f"<td>{_fmt(f.details.get('examples'))}</td></tr>"
        for f in report.findings
    )
    drift_rows = "".join(
        f"<tr><td>{_fmt(d['column'])}</td><td>{_fmt(d['test'])}</td>"
        f"<td>{_fmt(d['statistic'])}</td><td>{_fmt(d['threshold'])}</td>"
        f"<td>{_fmt(d.get('p_adjusted'))}</td><td>{_fmt(d.get('effect_name'))}="
        f"{_fmt(d.get('effect_size'))}</td>"
        f'<td class="{"warn" if d["drifted"] else "ok"}">'
        f"{'drift' if d['drifted'] else 'no drift'}</td></tr>"
        for d in report.drift
    )
    charts = "".join(
        f'<div class="chart"><b>{html.escape(name)}</b><br>{_svg(chart)}</div>'
        for name, chart in report.charts.items()
    )
    ref, cur = s.get("reference", {}), s.get("current", {})
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{verdict}"
        f"<p>Reference: {_fmt(ref.get('name'))} ({_fmt(ref.get('rows'))} rows). "
        f"Current: {_fmt(cur.get('name'))} ({_fmt(cur.get('rows'))} rows). "
        f"Drifted columns: {_fmt(s.get('drifted_columns'))} of "
        f"{_fmt(s.get('compared_columns'))}.</p>"
        "<h2>Findings</h2><table><tr><th>severity</th><th>column</th><th>check</th>"
        "<th>observed</th><th>threshold</th><th>message</th><th>count</th><th>examples</th></tr>"
        f"{rows}</table>"
        "<h2>Drift per column</h2><table><tr><th>column</th><th>test</th><th>statistic</th>"
        "<th>threshold</th><th>p (BH-adjusted)</th><th>effect size</th><th>verdict</th></tr>"
        f"{drift_rows}</table>"
        '<h2>Distributions</h2><p class="legend"><span style="background:#4c78a8"></span>'
        'reference<span style="background:#f58518"></span>current</p>'
        f'<div class="charts">{charts}</div></body></html>'
    )
