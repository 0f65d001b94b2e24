"""Row 1: metadata writes and reads, against MLflow with a SQLite tracking store.

Per operation, measured inside each side's process (imports and interpreter start are row 6):
one ``log_metric`` call, one registration (a new model version plus an alias), one listing of
1,000 runs. Each round starts from the same copy of a database that already holds 1,000 runs.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from harness import REPO, Benchmark, Comparison, Goal, Metric, Side

from rows._common import SIDES, Context, run_checked, unlink

LIST_RUNS = 1000
MIGRATIONS = REPO / "src" / "conveyor" / "store" / "metadata" / "migrations" / "versions"
GOAL = Goal(">= 20x faster", min_ratio=20)


def build(ctx: Context) -> list[Benchmark]:
    mlflow = ctx.anchor("mlflow")
    conveyor = ctx.conveyor()
    work = ctx.work("row1")
    n_metrics, n_register = (300, 5) if ctx.quick else (1000, 20)
    base_db, db = work / f"mlflow-base-{LIST_RUNS}.db", work / "mlflow.db"
    stamp = work / f"mlflow-base-{LIST_RUNS}.version"
    conveyor_base, conveyor_db = work / f"conveyor-base-{LIST_RUNS}.db", work / "conveyor.db"
    conveyor_stamp = work / f"conveyor-base-{LIST_RUNS}.version"

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
        # The same for Conveyor, remade when its side script or its schema changes (a store of
        # an older schema would be migrated when opened, but keep rows shaped the old way).
        stamped = [SIDES / "conveyor_tracking.py", *sorted(MIGRATIONS.glob("[0-9]*.py"))]
        digest = hashlib.sha256(b"".join(path.read_bytes() for path in stamped)).hexdigest()
        version = f"{conveyor.version} {digest[:16]}"
        if conveyor.unavailable is None and not (
            conveyor_base.exists()
            and conveyor_stamp.exists()
            and conveyor_stamp.read_text() == version
        ):
            run_checked(
                [
                    conveyor.python,
                    str(SIDES / "conveyor_tracking.py"),
                    "prepare",
                    str(conveyor_base),
                    str(LIST_RUNS),
                ],
                cwd=work,
            )
            conveyor_stamp.write_text(version)

    def fresh_db() -> None:
        unlink(db)
        shutil.copyfile(base_db, db)

    def fresh_conveyor() -> None:
        for suffix in ("", "-wal", "-shm"):
            unlink(Path(f"{conveyor_db}{suffix}"))
        shutil.copyfile(conveyor_base, conveyor_db)

    sides = [
        Side(
            "conveyor",
            "conveyor",
            [
                conveyor.python,
                str(SIDES / "conveyor_tracking.py"),
                "measure",
                str(conveyor_db),
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
        f"the listing covers {LIST_RUNS} runs with their params and latest metrics (MLflow: "
        "`mlflow.search_runs`, a DataFrame; Conveyor: `conveyor.list_runs`, records). "
        "Conveyor's metric time includes writing the values (`run.flush()`); a registration "
        "is `register_version` + `promote` to candidate (MLflow: a version + an alias)."
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
