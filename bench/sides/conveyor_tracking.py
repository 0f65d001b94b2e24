"""Row 1, Conveyor side: per-operation cost of metric logging, registration and run listing.

    conveyor_tracking.py prepare DB RUNS     # untimed: pipeline "list" holding RUNS ended runs
    conveyor_tracking.py measure DB N K      # N log_metric calls, K registrations, list the runs
    conveyor_tracking.py --probe             # exit 3 with the reason when the API is missing

The same work as ``mlflow_tracking.py``, through the scripting API users call
(``conveyor.start_run``, ``conveyor.list_runs``) and the registry:

- ``prepare``: RUNS runs in pipeline "list" (MLflow: experiment "list"), each with params
  ``lr`` and ``seed`` and metrics ``auc`` and ``loss``, ended.
- ``measure``: in a run of pipeline "work", N ``run.log_metric("loss", ..., step=i)`` calls; the
  time covers the calls *and* writing them (``run.flush()``), since each of MLflow's calls has
  committed its value when it returns; ending the run is outside the time for both. Then K
  registrations, each ``register_version`` of a new bundle digest plus ``promote`` to
  "candidate" with no checks (a stage is Conveyor's equivalent of MLflow's alias; both are two
  calls and two commits). Then ``list_runs(pipeline="list")``, once to warm up and three times
  timed, as the anchor does with ``mlflow.search_runs``: each run with its params and the
  latest value of each metric.

Prints one JSON line with seconds per operation: ``log_metric_s``, ``register_s`` (median),
``list_runs_s`` (median). Interpreter start and imports are row 6's business.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

EXIT_UNAVAILABLE = 3
ACTOR = "bench"


def _unavailable(reason: str) -> None:
    print(json.dumps({"unavailable": reason}))
    sys.exit(EXIT_UNAVAILABLE)


def _open(db: Path) -> MetadataStore:
    from conveyor.store.metadata import MetadataStore

    return MetadataStore.open(f"sqlite:///{db}")


def prepare(db: Path, runs: int) -> None:
    import conveyor

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = _open(db)
    for i in range(runs):
        params = {"lr": 0.01 * (i % 10 + 1), "seed": i}
        with conveyor.start_run(store, pipeline="list", params=params, actor=ACTOR) as run:
            run.log_metrics({"auc": 0.5 + i / (4 * runs), "loss": 1.0 - i / (2 * runs)}, step=0)
    # Everything into the database file itself, so that copying that one file copies it all.
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    print(json.dumps({"runs": runs}))


def measure(db: Path, n_metrics: int, n_register: int) -> None:
    import conveyor
    from conveyor.core.digest import digest_bytes
    from conveyor.registry import Policy, promote, register_version

    store = _open(db)
    if not conveyor.list_runs(store, pipeline="list", limit=1):
        sys.exit(f"{db}: run `prepare` first")

    with conveyor.start_run(store, pipeline="work", actor=ACTOR) as run:
        t0 = time.perf_counter()
        for i in range(n_metrics):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
        run.flush()
        log_metric_s = (time.perf_counter() - t0) / n_metrics

    name = f"bench-model-{run.id[-8:]}"
    digests = [digest_bytes(f"{run.id}/bundle-{i}".encode()) for i in range(n_register)]
    no_checks = Policy(note="the benchmark promotes without checks")
    reg = []
    for digest in digests:
        t0 = time.perf_counter()
        version, _created = register_version(
            store, model=name, artifact_digest=digest, metrics={}, run_id=run.id, actor=ACTOR
        )
        promote(
            store,
            model=name,
            version=version.version,
            to="candidate",
            policy=no_checks,
            actor=ACTOR,
        )
        reg.append(time.perf_counter() - t0)

    conveyor.list_runs(store, pipeline="list", limit=1000)  # warm, as the anchor does
    lists = []
    for _ in range(3):
        t0 = time.perf_counter()
        listed = conveyor.list_runs(store, pipeline="list", limit=1000)
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


def main() -> None:
    try:
        import conveyor
        import conveyor.registry  # probing that it imports
    except ImportError as exc:
        _unavailable(f"conveyor is not importable: {exc}")
    if not hasattr(conveyor, "start_run"):
        _unavailable("pending: conveyor has no tracking API (conveyor.start_run)")
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "--probe":
        print(json.dumps({"ok": True}))
    elif cmd == "prepare":
        prepare(Path(sys.argv[2]).resolve(), int(sys.argv[3]))
    elif cmd == "measure":
        measure(Path(sys.argv[2]).resolve(), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {cmd!r}; use prepare, measure or --probe")


if __name__ == "__main__":
    main()
