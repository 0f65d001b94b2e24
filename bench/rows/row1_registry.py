"""Row 1: metadata writes and reads, against MLflow with a SQLite tracking store.

Per operation, measured inside each side's process (imports and interpreter start are row 6):
one ``log_metric`` call, one registration (a new model version plus an alias), one listing of
1,000 runs. Each round starts from the same copy of a database that already holds 1,000 runs.
"""

from __future__ import annotations

import shutil

from harness import Benchmark, Comparison, Goal, Metric, Side

from rows._common import SIDES, Context, run_checked, unlink

LIST_RUNS = 1000
GOAL = Goal(">= 20x faster", min_ratio=20)


def build(ctx: Context) -> list[Benchmark]:
    mlflow = ctx.anchor("mlflow")
    conveyor = ctx.conveyor()
    work = ctx.work("row1")
    n_metrics, n_register = (300, 5) if ctx.quick else (1000, 20)
    base_db, db = work / f"mlflow-base-{LIST_RUNS}.db", work / "mlflow.db"
    stamp = work / f"mlflow-base-{LIST_RUNS}.version"
    conveyor_home = work / "conveyor"

    def setup() -> None:
        # 1,000 runs take ~20 s to create through MLflow; keep them between invocations.
        if not (base_db.exists() and stamp.exists() and stamp.read_text() == mlflow.version):
            run_checked(
                [
                    mlflow.python,
                    str(SIDES / "mlflow_tracking.py"),
                    "prepare",
                    str(base_db),
                    str(LIST_RUNS),
                ],
                cwd=work,
            )
            stamp.write_text(mlflow.version)

    def fresh_db() -> None:
        unlink(db)
        shutil.copyfile(base_db, db)

    def fresh_conveyor() -> None:
        shutil.rmtree(conveyor_home, ignore_errors=True)

    sides = [
        Side(
            "conveyor",
            "conveyor",
            [
                conveyor.python,
                str(SIDES / "conveyor_tracking.py"),
                str(conveyor_home),
                str(LIST_RUNS),
                str(n_metrics),
                str(n_register),
            ],
            cwd=work,
            before=fresh_conveyor,
            unavailable=conveyor.unavailable,
            probe=[conveyor.python, str(SIDES / "conveyor_tracking.py"), "--probe"],
        ),
        Side(
            "mlflow",
            "anchor",
            [
                mlflow.python,
                str(SIDES / "mlflow_tracking.py"),
                "measure",
                str(db),
                str(n_metrics),
                str(n_register),
            ],
            cwd=work,
            before=fresh_db,
            unavailable=mlflow.unavailable,
        ),
    ]
    notes = [
        f"{n_metrics} log_metric calls and {n_register} registrations per round; "
        f"the listing covers {LIST_RUNS} runs (MLflow: `mlflow.search_runs`, a DataFrame)."
    ]
    return [
        Benchmark(
            id="1",
            title="metadata writes and reads",
            sides=sides,
            comparisons=[
                Comparison(
                    "1a",
                    "log one metric, one call",
                    Metric("log_metric_s", "s"),
                    "conveyor",
                    "mlflow",
                    GOAL,
                ),
                Comparison(
                    "1b",
                    "register a version + set alias",
                    Metric("register_s", "s"),
                    "conveyor",
                    "mlflow",
                    GOAL,
                ),
                Comparison(
                    "1c",
                    f"list {LIST_RUNS:,} runs",
                    Metric("list_runs_s", "s"),
                    "conveyor",
                    "mlflow",
                    GOAL,
                ),
            ],
            warmup=1,
            rounds=2 if ctx.quick else 5,
            setup=setup,
            solo_rounds=1 if ctx.quick else None,
            notes=notes,
        )
    ]


__all__ = ["build"]
