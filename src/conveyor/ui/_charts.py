"""Charts drawn on the server as inline SVG: time series, the lineage graph, a traffic split,
a column's reference against current distribution.

No script and no chart library: a page is one HTML document that renders offline, in any
browser, and prints. Like the gate report's charts (:mod:`conveyor.project._report_html`, whose
reliability and fairness charts the version page reuses), every mark carries its exact value in
``data-*`` attributes, so tests check a chart against the stored numbers without reading pixels.
All text is escaped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = ["PALETTE", "Series", "distribution_chart", "line_chart", "lineage_svg", "split_bar"]

PALETTE = ("#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2", "#72b7b2", "#9d755d")


@dataclass(frozen=True)
class Series:
    """One line: its name and its points (``None`` values leave a gap)."""

    name: str
    points: Sequence[tuple[dt.datetime, float | None]]


def _esc(text: object) -> str:
    return html.escape(str(text))


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    width: int = 560,
    height: int = 200,
    fmt: Callable[[float], str] = lambda v: f"{v:.3g}",
) -> str:
    """Lines over time on shared axes (the y axis starts at 0 unless a value is negative)."""
    pad_l, pad_r, pad_t, pad_b = 48, 12, 22, 34
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    times = [t for s in series for t, v in s.points if v is not None]
    values = [v for s in series for _, v in s.points if v is not None]
    parts = [
        f'<svg class="line-chart" width="{width}" height="{height + 16 * len(series)}" '
        f'role="img" xmlns="http://www.w3.org/2000/svg" data-title="{_esc(title)}">'
        f"<title>{_esc(title)}</title>"
        f'<text class="chart-title" x="{pad_l}" y="14">{_esc(title)}</text>',
        f'<rect class="axis" x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" '
        'fill="none"/>',
    ]
    if not values:
        parts.append(f'<text x="{pad_l + 8}" y="{pad_t + plot_h / 2:.0f}">no data</text></svg>')
        return "".join(parts)
    t0, t1 = min(times), max(times)
    span = (t1 - t0).total_seconds() or 1.0
    low, high = min(0.0, *values), max(values)
    if high == low:
        high = low + (abs(low) or 1.0)

    def px(t: dt.datetime) -> float:
        return pad_l + (t - t0).total_seconds() / span * plot_w

    def py(v: float) -> float:
        return pad_t + (1.0 - (v - low) / (high - low)) * plot_h

    for tick in (low, (low + high) / 2, high):
        parts.append(
            f'<text x="2" y="{py(tick) + 3:.1f}">{_esc(fmt(tick))}{_esc(unit)}</text>'
            f'<line class="grid" x1="{pad_l}" x2="{pad_l + plot_w}" y1="{py(tick):.1f}" '
            f'y2="{py(tick):.1f}"/>'
        )
    parts.append(
        f'<text x="{pad_l}" y="{pad_t + plot_h + 14}">{t0:%H:%M:%S}</text>'
        f'<text x="{pad_l + plot_w - 48}" y="{pad_t + plot_h + 14}">{t1:%H:%M:%S}</text>'
    )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<g class="series" data-series="{_esc(s.name)}">')
        run: list[str] = []
        for t, v in [*s.points, (t1, None)]:
            if v is None:
                if len(run) > 1:
                    parts.append(
                        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                        f'points="{" ".join(run)}"/>'
                    )
                run = []
                continue
            run.append(f"{px(t):.1f},{py(v):.1f}")
        for t, v in s.points:
            if v is None:
                continue
            parts.append(
                f'<circle cx="{px(t):.1f}" cy="{py(v):.1f}" r="2.5" fill="{colour}" '
                f'data-at="{t.isoformat()}" data-value="{v!r}"><title>{_esc(s.name)} '
                f"{t:%H:%M:%S}: {_esc(fmt(v))}{_esc(unit)}</title></circle>"
            )
        parts.append("</g>")
        ly = height + 16 * i + 4
        parts.append(
            f'<rect x="{pad_l}" y="{ly}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{pad_l + 14}" y="{ly + 9}">{_esc(s.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


#: Left-to-right order of the lineage graph's columns.
_KIND_ORDER = ("dataset", "feature", "run", "artifact", "model", "evaluation", "deployment")
_BOX_W, _BOX_H, _COL, _ROW = 150, 34, 190, 46


def lineage_svg(
    nodes: Sequence[tuple[str, str, str]],
    edges: Sequence[tuple[str, str, str]],
    *,
    focus: str | None = None,
    max_per_column: int = 12,
) -> str:
    """The graph as columns by kind (datasets -> features -> runs -> model -> evaluations ->
    deployments); ``nodes`` are ``(id, kind, label)``, ``edges`` ``(src, dst, relation)``.

    A column holding more than ``max_per_column`` nodes shows that many and says how many more.
    """
    columns: dict[str, list[tuple[str, str]]] = {}
    for node_id, kind, label in nodes:
        columns.setdefault(kind, []).append((node_id, label))
    kinds = [k for k in _KIND_ORDER if k in columns] + sorted(set(columns) - set(_KIND_ORDER))
    where: dict[str, tuple[float, float]] = {}
    hidden: dict[str, int] = {}
    tallest = 1
    for c, kind in enumerate(kinds):
        shown = columns[kind][:max_per_column]
        hidden[kind] = len(columns[kind]) - len(shown)
        tallest = max(tallest, len(shown) + (1 if hidden[kind] else 0))
        for r, (node_id, _) in enumerate(shown):
            where[node_id] = (10 + c * _COL, 26 + r * _ROW)
    width = 10 + max(len(kinds), 1) * _COL
    height = 36 + tallest * _ROW
    parts = [
        f'<svg class="lineage" width="{width}" height="{height}" role="img" '
        'xmlns="http://www.w3.org/2000/svg"><title>lineage graph</title>'
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#888"/></marker></defs>'
    ]
    for c, kind in enumerate(kinds):
        parts.append(f'<text class="column" x="{10 + c * _COL}" y="14">{_esc(kind)}s</text>')
    for src, dst, relation in edges:
        if src not in where or dst not in where:
            continue
        (x1, y1), (x2, y2) = where[src], where[dst]
        parts.append(
            f'<line class="edge" x1="{x1 + _BOX_W:.0f}" y1="{y1 + _BOX_H / 2:.0f}" '
            f'x2="{x2:.0f}" y2="{y2 + _BOX_H / 2:.0f}" marker-end="url(#arrow)" '
            f'data-src="{_esc(src)}" data-dst="{_esc(dst)}"><title>{_esc(relation)}</title></line>'
        )
    for c, kind in enumerate(kinds):
        for node_id, label in columns[kind][:max_per_column]:
            x, y = where[node_id]
            css = "node focus" if node_id == focus else "node"
            text = label or node_id.partition(":")[2]
            parts.append(
                f'<g class="{css}" data-node="{_esc(node_id)}"><rect x="{x:.0f}" y="{y:.0f}" '
                f'width="{_BOX_W}" height="{_BOX_H}" rx="4"/><text x="{x + 6:.0f}" '
                f'y="{y + 14:.0f}">{_esc(text[:24])}</text><text class="ref" x="{x + 6:.0f}" '
                f'y="{y + 27:.0f}">{_esc(node_id[:26])}</text><title>{_esc(node_id)}: '
                f"{_esc(label)}</title></g>"
            )
        if hidden[kind]:
            y = 26 + min(len(columns[kind]), max_per_column) * _ROW + 14
            parts.append(
                f'<text class="more" x="{10 + c * _COL}" y="{y}">... and {hidden[kind]} more</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def split_bar(parts: Sequence[tuple[str, float]], *, width: int = 420) -> str:
    """A stacked bar of traffic shares (``(label, share in 0..1)``, summing to at most 1)."""
    out = [
        f'<svg class="split" width="{width}" height="30" role="img" '
        'xmlns="http://www.w3.org/2000/svg"><title>traffic split</title>'
    ]
    x = 0.0
    for i, (label, share) in enumerate(parts):
        w = max(share, 0.0) * width
        out.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="22" '
            f'fill="{PALETTE[i % len(PALETTE)]}" data-label="{_esc(label)}" data-share="{share!r}">'
            f"<title>{_esc(label)}: {share * 100:.4g}%</title></rect>"
        )
        if w > 60:
            out.append(
                f'<text class="on-bar" x="{x + 4:.1f}" y="15">{_esc(label)} '
                f"{share * 100:.4g}%</text>"
            )
        x += w
    out.append("</svg>")
    return "".join(out)


def _share(value: object) -> float:
    # Stored JSON turns NaN into null; a share is never NaN, so null only comes from damage.
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def distribution_chart(
    column: str, chart: Mapping[str, Any], *, width: int = 380, height: int = 150
) -> str:
    """A column's reference and current distributions, as a data check recorded them
    (``conveyor.data.gate.stored_charts``): overlaid histograms on shared bins for a numeric
    column, paired bars per category for a categorical one. Heights are shares of each
    dataset's non-missing values, so datasets of different sizes compare."""
    pad_l, pad_r, pad_t, pad_b = 40, 8, 22, 34
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    numeric = chart.get("kind") != "categorical"
    ref = [_share(v) for v in chart.get("reference") or []]
    cur = [_share(v) for v in chart.get("current") or []]
    labels = [str(x) for x in chart.get("labels") or []]
    n = min(len(ref), len(cur))
    drifted = bool(chart.get("drifted"))
    title = column
    if drifted:
        title += f" (drifted: {chart.get('test')} {_share(chart.get('statistic')):.3g})"
    parts = [
        f'<svg class="distribution" width="{width}" height="{height + 16}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" data-column="{_esc(column)}" '
        f'data-kind="{"numeric" if numeric else "categorical"}" '
        f'data-drifted="{str(drifted).lower()}"><title>{_esc(title)}</title>'
        f'<text class="chart-title" x="{pad_l}" y="14">{_esc(title)}</text>'
        f'<rect class="axis" x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" '
        'fill="none"/>'
    ]
    if n == 0:
        parts.append(f'<text x="{pad_l + 8}" y="{pad_t + plot_h / 2:.0f}">no data</text></svg>')
        return "".join(parts)
    top = max(*ref[:n], *cur[:n], 1e-12)
    slot = plot_w / n
    bar = slot if numeric else max(slot / 2 - 1, 1.0)
    for tick in (0.0, top):
        y = pad_t + (1.0 - tick / top) * plot_h
        parts.append(f'<text x="2" y="{y + 3:.1f}">{tick * 100:.3g}%</text>')
    for i in range(n):
        label = labels[i] if not numeric and i < len(labels) else ""
        for j, (series, share) in enumerate((("reference", ref[i]), ("current", cur[i]))):
            h = plot_h * share / top
            x = pad_l + i * slot + (0 if numeric else j * bar)
            colour = PALETTE[0] if series == "reference" else PALETTE[3]
            opacity = ' fill-opacity="0.55"' if numeric else ""
            named = f"{_esc(label)}: " if label else f"bin {i + 1}: "
            parts.append(
                f'<rect x="{x:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"{opacity} data-series="{series}" '
                f'data-bin="{i}" data-label="{_esc(label)}" data-share="{share!r}">'
                f"<title>{series} {named}{share * 100:.3g}%</title></rect>"
            )
        if label:
            parts.append(
                f'<text x="{pad_l + i * slot:.1f}" y="{pad_t + plot_h + 12}">'
                f"{_esc(label[: max(int(slot / 6), 1)])}</text>"
            )
    if numeric and len(labels) >= 2:
        parts.append(
            f'<text x="{pad_l}" y="{pad_t + plot_h + 12}">{_esc(labels[0])}</text>'
            f'<text x="{pad_l + plot_w}" y="{pad_t + plot_h + 12}" text-anchor="end">'
            f"{_esc(labels[-1])}</text>"
        )
    for k, (series, colour) in enumerate((("reference", PALETTE[0]), ("current", PALETTE[3]))):
        lx = pad_l + 90 * k
        parts.append(
            f'<rect x="{lx}" y="{height + 2}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{height + 11}">{series}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
