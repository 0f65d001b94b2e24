"""Row 4: validate and compute drift on 1,000,000 rows x 22 columns (20 numeric, 2 categorical).

Anchor: Evidently's DataDriftPreset report. Conveyor: ``conveyor.data.validate_frames`` (schema
inference and validation, quality checks, drift with Evidently's choice of tests) on the same
frames. Quick mode scales the rows down (see notes).
"""

from __future__ import annotations

from harness import Benchmark, Comparison, Goal, Metric, Side

from rows._common import SIDES, Context

FULL_ROWS = 1_000_000
QUICK_ROWS = 50_000


def build(ctx: Context) -> list[Benchmark]:
    evidently = ctx.anchor("evidently")
    conveyor = ctx.conveyor()
    rows = QUICK_ROWS if ctx.quick else FULL_ROWS
    sides = [
        Side(
            "conveyor",
            "conveyor",
            [conveyor.python, str(SIDES / "conveyor_drift.py"), str(rows), "42"],
            cwd=ctx.work("row4"),
            unavailable=conveyor.unavailable,
            timeout=1800,
        ),
        Side(
            "evidently",
            "anchor",
            [evidently.python, str(SIDES / "evidently_drift.py"), str(rows), "42"],
            cwd=ctx.work("row4"),
            unavailable=evidently.unavailable,
            timeout=1800,
        ),
    ]
    notes = [
        f"reference and current data both {rows:,} rows x 22; timed: report run + "
        "result as dict (no HTML); memory: peak RSS minus RSS with the data loaded.",
        "Conveyor does more than the anchor: schema inference and validation, quality checks "
        "(missing values, duplicate rows, constant columns, outliers, volume) besides drift.",
        "4c: memory beyond the data divided by the data's in-memory size (both frames); "
        "<= 1.0 means peak <= 2x the data.",
    ]
    if ctx.quick:
        notes.append(f"quick mode: {rows:,} rows instead of {FULL_ROWS:,}, one round.")
    return [
        Benchmark(
            id="4",
            title="drift report",
            sides=sides,
            comparisons=[
                Comparison(
                    "4a",
                    f"drift on {rows:,} x 22",
                    Metric("drift_s", "s"),
                    "conveyor",
                    "evidently",
                    Goal(">= 10x faster", min_ratio=10),
                ),
                Comparison(
                    "4b",
                    "memory beyond the data",
                    Metric("extra_rss_mb", "MB"),
                    "conveyor",
                    "evidently",
                    Goal("peak <= 2x the data's size"),
                ),
                Comparison(
                    "4c",
                    "memory beyond the data / data size",
                    Metric("extra_over_data", "x"),
                    "conveyor",
                    "evidently",
                    Goal("<= 1.0 (peak <= 2x the data)", conveyor_max=1.0),
                ),
            ],
            warmup=0,
            rounds=1 if ctx.quick else 3,
            notes=notes,
        )
    ]


__all__ = ["build"]
