"""Row 7: lineage query "which models used feature X" over 100,000 runs and 1,000,000 edges.

No anchor: the limit is the database's own index scan. The Conveyor side lands with issue 7
(lineage); until then the row is listed as pending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness import Benchmark, Comparison, Goal, Metric, Side

if TYPE_CHECKING:
    from rows._common import Context


def build(ctx: Context) -> list[Benchmark]:
    conveyor = Side("conveyor", "conveyor", [], unavailable="pending: lands with issue 7")
    return [
        Benchmark(
            id="7",
            title="lineage query",
            sides=[conveyor],
            comparisons=[
                Comparison(
                    "7",
                    "which models used feature X (100k runs, 1M edges)",
                    Metric("query_s", "s"),
                    "conveyor",
                    "no anchor",
                    Goal("< 50 ms on SQLite and PostgreSQL", conveyor_max=0.05),
                )
            ],
            pending="lands with issue 7 (no anchor: the limit is the index scan)",
            warmup=0,
            rounds=0,
        )
    ]


__all__ = ["build"]
