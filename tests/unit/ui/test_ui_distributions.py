"""The Data page's reference vs current distributions: the SVG carries the recorded shares,
and the page draws the newest recorded check of each dataset."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from starlette.testclient import TestClient
from tests.unit.ui._ui_data import build_project

from conveyor.cli.ui import dashboard_app
from conveyor.data.gate import DatasetCheck, dataset_checks
from conveyor.ui._charts import distribution_chart
from conveyor.ui._pages import _distributions

if TYPE_CHECKING:
    from pathlib import Path


def _shares(svg: str, series: str) -> list[float]:
    return [
        float(s)
        for s in re.findall(
            rf'data-series="{series}" data-bin="\d+" data-label="[^"]*" '
            r'data-share="([^"]+)"',
            svg,
        )
    ]


def test_a_numeric_chart_overlays_both_histograms_with_their_exact_shares() -> None:
    chart = {
        "kind": "numeric",
        "labels": ["0", "10"],
        "reference": [0.25, 0.5, 0.25],
        "current": [0.1, 0.2, 0.7],
        "drifted": True,
        "test": "ks",
        "statistic": 0.45,
    }
    svg = distribution_chart("a<b", chart)
    assert 'data-column="a&lt;b" data-kind="numeric" data-drifted="true"' in svg
    assert _shares(svg, "reference") == [0.25, 0.5, 0.25]
    assert _shares(svg, "current") == [0.1, 0.2, 0.7]
    xs = re.findall(r'<rect x="([\d.]+)"[^>]*data-series="(\w+)" data-bin="1"', svg)
    assert xs[0][0] == xs[1][0]  # overlaid: both samples' bin at the same place
    assert "drifted: ks 0.45" in svg


def test_a_categorical_chart_pairs_bars_per_category() -> None:
    chart = {
        "kind": "categorical",
        "labels": ["basic", "pro"],
        "reference": [0.75, 0.25],
        "current": [0.5, 0.5],
    }
    svg = distribution_chart("plan", chart)
    assert 'data-kind="categorical" data-drifted="false"' in svg
    assert re.findall(r'data-series="reference" data-bin="\d" data-label="(\w+)"', svg) == [
        "basic",
        "pro",
    ]
    xs = re.findall(r'<rect x="([\d.]+)"[^>]*data-bin="0"', svg)
    assert len(xs) == 2
    assert xs[0] != xs[1]  # side by side
    assert "no data" in distribution_chart("x", {"kind": "numeric", "reference": [], "current": []})


def test_only_the_newest_check_of_each_dataset_is_drawn() -> None:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    chart = {"kind": "categorical", "labels": ["a"], "reference": [1.0], "current": [1.0]}

    def check(version: str, name: str | None, charts: bool) -> DatasetCheck:
        return DatasetCheck(version, None, True, at, {}, (), name, {"c": chart} if charts else {})

    drawn = _distributions(
        [
            check("d3", "feb", True),
            check("d2", "feb", True),
            check("d1", None, False),
            check("d0", None, True),
        ]
    )
    assert [d["check"].dataset_version for d in drawn] == ["d3", "d0"]


def test_the_data_page_draws_the_recorded_distributions(tmp_path: Path) -> None:
    built = build_project(tmp_path)
    try:
        with built.project.metadata.read() as conn:
            recorded = dataset_checks(conn)[0]
        assert set(recorded.charts) == {"age", "plan"}
        client = TestClient(dashboard_app(built.project, "127.0.0.1"), base_url="http://127.0.0.1")
        client.headers["authorization"] = f"Bearer {built.tokens['viewer']}"
        with client:
            html = client.get("/ui/data").text
        section = html[html.index('<section class="distributions"') :]
        section = section[: section.index("</section>")]
        age = section[section.index('data-column="age"') :]
        age = age[: age.index("</svg>")]
        assert _shares(age, "reference") == recorded.charts["age"]["reference"]
        assert _shares(age, "current") == recorded.charts["age"]["current"]
        assert 'data-column="plan" data-kind="categorical"' in section
    finally:
        built.project.close()
