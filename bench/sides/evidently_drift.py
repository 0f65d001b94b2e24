"""Row 4, anchor side: Evidently's data drift report on ROWS x 22 (20 numeric, 2 categorical).

    evidently_drift.py ROWS SEED

Reference and current data are both ROWS rows, generated here (untimed; five numeric columns
and one categorical column of the current data are shifted). Timed: building the report and
turning its result into a dict (what a pipeline would store or check). Reported: seconds, the
data's in-memory size, the process RSS before the report and its peak (VmHWM).
"""

from __future__ import annotations

import json
import sys
import time

from _mem import peak_rss_mb, rss_mb


def make_frames(rows: int, seed: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)

    def frame(shift: float) -> pd.DataFrame:
        cols = {
            f"x{i:02d}": rng.normal(shift if i < 5 else 0.0, 1.0 + 0.05 * i, rows)
            for i in range(20)
        }
        p = [0.4, 0.3, 0.2, 0.1] if shift == 0 else [0.25, 0.25, 0.25, 0.25]
        cols["c_plan"] = rng.choice(np.array(["basic", "plus", "pro", "team"]), rows, p=p)
        cols["c_region"] = rng.choice(np.array([f"r{i:02d}" for i in range(30)]), rows)
        return pd.DataFrame(cols)

    return frame(0.0), frame(0.2)


def main() -> None:
    rows, seed = int(sys.argv[1]), int(sys.argv[2])
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = make_frames(rows, seed)
    data_mb = float(ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum()) / 2**20
    numeric = [c for c in ref.columns if c.startswith("x")]
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=["c_plan", "c_region"]
    )
    base_mb = rss_mb()
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    result = snapshot.dict()
    drift_s = time.perf_counter() - t0
    peak_mb = peak_rss_mb()
    drifted = next(
        (
            m["value"]["count"]
            for m in result["metrics"]
            if m["metric_name"].startswith("DriftedColumnsCount")
        ),
        None,
    )
    print(
        json.dumps(
            {
                "drift_s": drift_s,
                "data_mb": data_mb,
                "base_rss_mb": base_mb,
                "peak_rss_mb": peak_mb,
                "extra_rss_mb": peak_mb - base_mb,
                "extra_over_data": (peak_mb - base_mb) / data_mb,
                "drifted_columns": drifted,
            }
        )
    )


if __name__ == "__main__":
    main()
