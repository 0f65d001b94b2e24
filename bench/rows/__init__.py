"""The rows of issue 3's table, one module each; ``build(ctx)`` returns the row's benchmarks."""

from __future__ import annotations

from rows import (
    row1_registry,
    row2_ingest,
    row3_noop_pipeline,
    row4_drift,
    row5_serving,
    row6_help,
    row7_lineage,
    row8_pit_join,
)

ALL = [
    row1_registry,
    row2_ingest,
    row3_noop_pipeline,
    row4_drift,
    row5_serving,
    row6_help,
    row7_lineage,
    row8_pit_join,
]

__all__ = ["ALL"]
