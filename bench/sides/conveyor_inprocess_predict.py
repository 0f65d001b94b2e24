"""Row 5, the floor under the server: one single-row prediction in process, no HTTP.

    conveyor_inprocess_predict.py MODEL_DIR PROJECT_DIR [--calls 2000]

Runs under Conveyor's venv, after ``conveyor_serving_project.py`` made PROJECT_DIR. Loads the
bundle the server serves (its digest is in PROJECT_DIR/bench.json) with
``load_bundle(open_artifact_store(...), digest)``, checks that its estimator is the very model
the anchors load (MODEL_DIR/mlserver/model.joblib: same class, same coefficients) and that the
row in MODEL_DIR/body-conveyor.json is the anchors' row (body-mlserver.json), then times, one
call at a time on that one-row DataFrame (after 200 untimed calls):

- ``predict_s``: ``LoadedModel.predict(frame)``, every output of the signature (``predict`` and
  ``predict_proba``): the work the server does for the benchmark's request;
- ``predict_proba_s``: ``LoadedModel.predict(frame, outputs=["predict_proba"])``;
- ``sklearn_proba_s``: plain ``estimator.predict_proba(frame)``, no signature check.

Prints one JSON line with the median of each (seconds per call).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

WARMUP_CALLS = 200


def _median_call_s(fn: Callable[[], Any], calls: int) -> float:
    for _ in range(WARMUP_CALLS):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    args = sys.argv[1:]
    calls = 2000
    if "--calls" in args:
        i = args.index("--calls")
        calls = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    model_dir, project = Path(args[0]), Path(args[1])

    import joblib
    import numpy as np
    import pandas as pd

    from conveyor.packaging import load_bundle
    from conveyor.store.artifacts import open_artifact_store

    info = json.loads((project / "bench.json").read_text())
    bundle = load_bundle(open_artifact_store(info["CONVEYOR_ARTIFACTS"]), info["digest"])
    reference = joblib.load(model_dir / "mlserver" / "model.joblib")
    estimator = bundle.estimator
    if type(estimator) is not type(reference) or not (
        np.array_equal(estimator.coef_, reference.coef_)
        and np.array_equal(estimator.intercept_, reference.intercept_)
    ):
        sys.exit("the bundle's estimator is not the anchors' model.joblib")

    inputs = json.loads((model_dir / "body-conveyor.json").read_text())["inputs"]
    anchor_row = json.loads((model_dir / "body-mlserver.json").read_text())["inputs"][0]["data"]
    row = {t["name"]: t["data"][0] for t in inputs}
    if list(row.values()) != anchor_row:
        sys.exit("body-conveyor.json does not hold the anchors' row")
    frame = pd.DataFrame([row])

    out = bundle.predict(frame)
    if not np.array_equal(out["predict"], reference.predict(frame)):
        sys.exit("the bundle predicts another label than the anchors' model")
    result = {
        "predict_s": _median_call_s(lambda: bundle.predict(frame), calls),
        "predict_proba_s": _median_call_s(
            lambda: bundle.predict(frame, outputs=["predict_proba"]), calls
        ),
        "sklearn_proba_s": _median_call_s(lambda: estimator.predict_proba(frame), calls),
        "calls": calls,
        "label": int(out["predict"][0]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
