"""Row 1, Conveyor side: per-operation cost of metric logging, registration and run listing.

    conveyor_tracking.py HOME LIST_RUNS N_METRICS N_REGISTER
    conveyor_tracking.py --probe      # exit 3 with the reason when the API is missing

The walking skeleton has no scripting API for these yet, so this side reports itself
unavailable until one exists. It expects, in the scripting facade ``conveyor.api``:

- ``log_metric(run_id, key, value, step)``  (one call, one durable write)
- ``register_model_version(model, artifact_digest, run_id) -> version`` and
  ``set_alias(model, alias, version)`` (or a stage change)
- ``list_runs(limit=1000) -> list``

When the real names differ, adapt ``_api()`` below; the JSON printed must keep the keys
``log_metric_s``, ``register_s`` and ``list_runs_s`` (seconds per operation), which the harness
compares with MLflow's.
"""

from __future__ import annotations

import json
import sys

EXIT_UNAVAILABLE = 3
NEEDED = ("log_metric", "register_model_version", "set_alias", "list_runs")


def _unavailable(reason: str) -> None:
    print(json.dumps({"unavailable": reason}))
    sys.exit(EXIT_UNAVAILABLE)


def _api() -> object:
    try:
        import conveyor.api as api
    except ImportError as exc:
        _unavailable(
            "pending: conveyor has no metrics/registry scripting API yet "
            f"({exc}; see bench/sides/conveyor_tracking.py)"
        )
    missing = [n for n in NEEDED if not hasattr(api, n)]
    if missing:
        _unavailable("pending: conveyor.api lacks " + ", ".join(missing))
    return api


def main() -> None:
    _api()
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps({"ok": True}))
        return
    # Written once the API exists: same work as sides/mlflow_tracking.py `measure`.
    _unavailable("conveyor side of row 1 not written yet for the API that now exists")


if __name__ == "__main__":
    main()
