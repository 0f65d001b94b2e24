"""Row 6: ``conveyor --help`` against ``mlflow --help`` and ``dvc --help``: the cost of starting
the CLI, which every command pays."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness import Benchmark, Comparison, Goal, Metric, Side

if TYPE_CHECKING:
    from rows._common import Context


def build(ctx: Context) -> list[Benchmark]:
    conveyor, mlflow, dvc = ctx.conveyor(), ctx.anchor("mlflow"), ctx.anchor("dvc")
    work = ctx.work("row6")
    sides = [
        Side(
            "conveyor --help",
            "conveyor",
            [conveyor.bin("conveyor"), "--help"],
            cwd=work,
            unavailable=conveyor.unavailable,
            json_output=False,
        ),
        Side(
            "mlflow --help",
            "anchor",
            [mlflow.bin("mlflow"), "--help"],
            cwd=work,
            unavailable=mlflow.unavailable,
            json_output=False,
        ),
        Side(
            "dvc --help",
            "anchor",
            [dvc.bin("dvc"), "--help"],
            cwd=work,
            unavailable=dvc.unavailable,
            json_output=False,
        ),
    ]
    wall, goal = Metric("wall_s", "s"), Goal("< 0.2 s", conveyor_max=0.2)
    return [
        Benchmark(
            id="6",
            title="CLI start",
            sides=sides,
            comparisons=[
                Comparison("6a", "`--help`", wall, "conveyor --help", "mlflow --help", goal),
                Comparison("6b", "`--help`", wall, "conveyor --help", "dvc --help", goal),
            ],
            warmup=1,
            rounds=4 if ctx.quick else 10,
        )
    ]


__all__ = ["build"]
