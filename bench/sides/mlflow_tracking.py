"""Row 1, anchor side: MLflow with a SQLite tracking store.

    mlflow_tracking.py prepare DB RUNS     # untimed: an experiment "list" holding RUNS runs
    mlflow_tracking.py measure DB N K      # N log_metric calls, K registrations, list the runs

``measure`` prints one JSON line: seconds per ``log_metric`` call, per registration (a new model
version plus an alias on it), and per listing of the "list" experiment's runs with
``mlflow.search_runs`` (a DataFrame, as users get it). Interpreter start and ``import mlflow`` are
not in these numbers (they are row 6's business).
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from pathlib import Path


def _quiet() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def prepare(db: Path, runs: int) -> None:
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    _quiet()
    db.unlink(missing_ok=True)
    uri = f"sqlite:///{db}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.create_experiment("list", artifact_location=str(db.parent / "artifacts"))
    client.create_experiment("work", artifact_location=str(db.parent / "artifacts"))
    now = int(time.time() * 1000)
    for i in range(runs):
        run = client.create_run(exp, run_name=f"run-{i:04d}")
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric("auc", 0.5 + i / (4 * runs), now, 0),
                Metric("loss", 1.0 - i / (2 * runs), now, 0),
            ],
            params=[Param("lr", str(0.01 * (i % 10 + 1))), Param("seed", str(i))],
        )
        client.set_terminated(run.info.run_id)
    print(json.dumps({"runs": runs}))


def measure(db: Path, n_metrics: int, n_register: int) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    _quiet()
    uri = f"sqlite:///{db}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    work = client.get_experiment_by_name("work")
    listing = client.get_experiment_by_name("list")
    if work is None or listing is None:
        sys.exit(f"{db}: run `prepare` first")
    mlflow.set_experiment(experiment_id=work.experiment_id)

    with mlflow.start_run() as run:
        t0 = time.perf_counter()
        for i in range(n_metrics):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        log_metric_s = (time.perf_counter() - t0) / n_metrics

    name = f"bench-model-{run.info.run_id[:8]}"
    client.create_registered_model(name)
    source = f"{run.info.artifact_uri}/model"
    reg = []
    for _ in range(n_register):
        t0 = time.perf_counter()
        mv = client.create_model_version(name, source=source, run_id=run.info.run_id)
        client.set_registered_model_alias(name, "champion", mv.version)
        reg.append(time.perf_counter() - t0)

    mlflow.search_runs(experiment_ids=[listing.experiment_id], max_results=1000)  # warm
    lists = []
    for _ in range(3):
        t0 = time.perf_counter()
        df = mlflow.search_runs(experiment_ids=[listing.experiment_id], max_results=1000)
        lists.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "log_metric_s": log_metric_s,
                "register_s": statistics.median(reg),
                "list_runs_s": statistics.median(lists),
                "listed": len(df),
            }
        )
    )


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prepare":
        prepare(Path(sys.argv[2]).resolve(), int(sys.argv[3]))
    elif cmd == "measure":
        measure(Path(sys.argv[2]).resolve(), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {cmd!r}")
