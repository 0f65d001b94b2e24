"""The dashboard's SVG charts: exact values in data attributes, gaps, overflow, escaping."""

from __future__ import annotations

import datetime as dt
import re

from conveyor.ui._auth import CsrfKey
from conveyor.ui._charts import Series, line_chart, lineage_svg, split_bar

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_line_chart_marks_every_value_exactly_and_breaks_lines_at_gaps() -> None:
    values = [0.1, 0.30000000000000004, None, 0.2, 0.25]
    svg = line_chart([Series("a<b", [(_at(10 * i), v) for i, v in enumerate(values)])], title="t")
    marks = re.findall(r'data-at="([^"]+)" data-value="([^"]+)"', svg)
    assert [(dt.datetime.fromisoformat(a), float(v)) for a, v in marks] == [
        (_at(10 * i), v) for i, v in enumerate(values) if v is not None
    ]
    assert svg.count("<polyline") == 2  # one line each side of the gap
    assert "a&lt;b" in svg
    assert "<b>" not in svg


def test_line_chart_without_data_says_so() -> None:
    assert "no data" in line_chart([Series("x", [(_at(0), None)])], title="empty")


def test_line_chart_puts_the_highest_value_at_the_top() -> None:
    svg = line_chart([Series("x", [(_at(0), 0.0), (_at(5), 2.0)])], title="t", height=200)
    ys = [float(y) for y in re.findall(r'<circle cx="[^"]+" cy="([^"]+)"', svg)]
    assert ys[0] > ys[1]


def test_lineage_columns_follow_the_delivery_order_and_long_columns_are_cut() -> None:
    nodes = [("model:m/1", "model", "m v1"), ("run:r", "run", "train")]
    nodes += [(f"dataset:d{i}", "dataset", f"d{i}") for i in range(15)]
    edges = [("dataset:d0", "run:r", "input"), ("run:r", "model:m/1", "output")]
    svg = lineage_svg(nodes, edges, focus="model:m/1", max_per_column=12)
    columns = re.findall(r'<text class="column" x="(\d+)" y="14">(\w+)</text>', svg)
    assert [name for _, name in columns] == ["datasets", "runs", "models"]
    assert svg.count('<g class="node"') == 12 + 1  # 12 datasets shown, the run
    assert '<g class="node focus" data-node="model:m/1">' in svg
    assert "... and 3 more" in svg
    assert svg.count('class="edge"') == 2


def test_split_bar_shares() -> None:
    svg = split_bar([("stable v1", 0.75), ("canary v2", 0.25)])
    assert re.findall(r'data-label="([^"]+)" data-share="([^"]+)"', svg) == [
        ("stable v1", "0.75"),
        ("canary v2", "0.25"),
    ]


def test_csrf_tokens_belong_to_one_session_and_one_key() -> None:
    key = CsrfKey(b"k" * 32)
    assert key.token_for("a") == CsrfKey(b"k" * 32).token_for("a")
    assert key.token_for("a") != key.token_for("b")
    assert key.token_for("a") != CsrfKey(b"j" * 32).token_for("a")
