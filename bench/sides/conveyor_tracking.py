"""Row 1, Conveyor side: per-operation cost of metric logging, registration and run listing.

    conveyor_tracking.py HOME LIST_RUNS N_METRICS N_REGISTER
    conveyor_tracking.py --probe      # exit 3 with the reason when the API is missing

The same work as ``mlflow_tracking.py measure``: N ``log_metric`` calls to one run (timed up to
and including the end of the run, which writes the last batch), K registrations of a new version
with a stage change (Conveyor's equivalent of MLflow's alias), and listing LIST_RUNS runs with
their params and latest metrics. A store with LIST_RUNS runs is prepared first, untimed.
Interpreter start and imports are not in these numbers (row 6's business).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

EXIT_UNAVAILABLE = 3


def _unavailable(reason: str) -> None:
    print(json.dumps({"unavailable": reason}))
    sys.exit(EXIT_UNAVAILABLE)


def main() -> None:
    try:
        from conveyor.core.digest import digest_bytes
        from conveyor.registry import Policy, promote, register_version
        from conveyor.store.metadata import MetadataStore
        from conveyor.tracking import list_runs, start_run
    except ImportError as exc:
        _unavailable(f"conveyor's tracking API is not importable: {exc}")
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps({"ok": True}))
        return
    home, list_n, n_metrics, n_register = (
        Path(sys.argv[1]),
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    home.mkdir(parents=True, exist_ok=True)
    store = MetadataStore.open(f"sqlite:///{home / 'metadata.db'}")
    actor = "bench"

    for i in range(list_n):  # untimed: what there is to list
        with start_run(
            store, actor=actor, pipeline="list", params={"lr": 0.01 * (i % 10 + 1), "seed": i}
        ) as run:
            run.log_metrics({"auc": 0.5 + i / (4 * list_n), "loss": 1.0 - i / (2 * list_n)})

    t0 = time.perf_counter()
    with start_run(store, actor=actor, pipeline="work") as run:
        for i in range(n_metrics):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
    log_metric_s = (time.perf_counter() - t0) / n_metrics

    no_checks = Policy()
    reg = []
    for _ in range(n_register):
        t0 = time.perf_counter()
        version, _created = register_version(
            store,
            model="bench-model",
            artifact_digest=digest_bytes(os.urandom(16)),
            metrics={},
            run_id=run.id,
            actor=actor,
        )
        promote(
            store,
            model="bench-model",
            version=version.version,
            to="candidate",
            policy=no_checks,
            actor=actor,
        )
        reg.append(time.perf_counter() - t0)

    list_runs(store, pipeline="list", limit=1000)  # warm, as the anchor does
    lists = []
    for _ in range(3):
        t0 = time.perf_counter()
        listed = list_runs(store, pipeline="list", limit=1000)
        lists.append(time.perf_counter() - t0)
    store.close()
    print(
        json.dumps(
            {
                "log_metric_s": log_metric_s,
                "register_s": statistics.median(reg),
                "list_runs_s": statistics.median(lists),
                "listed": len(listed),
            }
        )
    )


if __name__ == "__main__":
    main()
