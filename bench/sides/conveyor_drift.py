"""Row 4, Conveyor side: ``conveyor.data`` validation and drift on ROWS x 22 (20 numeric, 2 text).

    conveyor_drift.py ROWS SEED

The data are the anchor's (``evidently_drift.make_frames``: same generator, same seed), made
untimed. Timed: ``validate_frames`` - schema inference and validation, quality checks (missing
values, duplicate rows by row hash, constant columns, outliers, volume) and drift of every
column, with Evidently's choice of test - and the report as a dict. That is more work than the
anchor's drift-only preset. Reported like the anchor: seconds, data size, RSS before, peak.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _mem import peak_rss_mb, rss_mb
from evidently_drift import make_frames


def main() -> None:
    rows, seed = int(sys.argv[1]), int(sys.argv[2])
    from conveyor.data import DataGateSettings, validate_frames

    ref, cur = make_frames(rows, seed)
    data_mb = float(ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum()) / 2**20
    settings = DataGateSettings(reference=Path("reference"))
    base_mb = rss_mb()
    t0 = time.perf_counter()
    report = validate_frames(ref, cur, settings, reference_name="reference")
    result = report.to_dict()
    drift_s = time.perf_counter() - t0
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "drift_s": drift_s,
                "data_mb": data_mb,
                "base_rss_mb": base_mb,
                "peak_rss_mb": peak_mb,
                "extra_rss_mb": peak_mb - base_mb,
                "extra_over_data": (peak_mb - base_mb) / data_mb,
                "drifted_columns": result["summary"]["drifted_columns"],
            }
        )
    )


if __name__ == "__main__":
    main()
