"""Row 8: point-in-time join of 10M label rows against 50M feature rows.

Anchor: pandas ``merge_asof`` (pandas 3, in bench/.venv-pandas). Conveyor side:
``conveyor.features.point_in_time_join`` (DuckDB ``ASOF LEFT JOIN``) on the same generated data
(``sides/conveyor_pit_join.py``). Quick mode scales down to 1M x 5M.
"""

from __future__ import annotations

from harness import Benchmark, Comparison, Goal, Metric, Side

from rows._common import SIDES, Context


def build(ctx: Context) -> list[Benchmark]:
    pandas = ctx.anchor("pandas")
    conveyor = ctx.conveyor()
    labels, features = (1_000_000, 5_000_000) if ctx.quick else (10_000_000, 50_000_000)
    sides = [
        Side(
            "conveyor",
            "conveyor",
            [conveyor.python, str(SIDES / "conveyor_pit_join.py"), str(labels), str(features), "7"],
            cwd=ctx.work("row8"),
            unavailable=conveyor.unavailable,
            probe=[conveyor.python, str(SIDES / "conveyor_pit_join.py"), "--probe"],
            timeout=1800,
        ),
        Side(
            "pandas merge_asof",
            "anchor",
            [pandas.python, str(SIDES / "pandas_asof.py"), str(labels), str(features), "7"],
            cwd=ctx.work("row8"),
            unavailable=pandas.unavailable,
            timeout=1800,
        ),
    ]
    notes = [
        f"{labels:,} labels x {features:,} feature rows, 100k entities, `by=entity`; "
        "timed: the join alone (data generated and sorted in the same process, untimed)."
    ]
    if ctx.quick:
        notes.append("quick mode: scaled down from 10M x 50M, one round.")
    return [
        Benchmark(
            id="8",
            title="point-in-time join",
            sides=sides,
            comparisons=[
                Comparison(
                    "8",
                    f"point-in-time join {labels // 10**6}M x {features // 10**6}M",
                    Metric("join_s", "s"),
                    "conveyor",
                    "pandas merge_asof",
                    Goal(">= 5x faster", min_ratio=5),
                )
            ],
            warmup=0,
            rounds=1 if ctx.quick else 3,
            notes=notes,
        )
    ]


__all__ = ["build"]
