"""Row 8, anchor side: point-in-time join with pandas ``merge_asof``.

    pandas_asof.py LABEL_ROWS FEATURE_ROWS SEED

Features: FEATURE_ROWS rows of (entity, ts, f0, f1, f2) over 100,000 entities; labels:
LABEL_ROWS rows of (entity, ts, label). Both sorted by ts, as merge_asof requires (generation
and sorting untimed). Timed: ``merge_asof(labels, features, on="ts", by="entity")``, each label
row taking the latest feature row at or before its timestamp.
"""

from __future__ import annotations

import json
import sys
import time

from _mem import peak_rss_mb

ENTITIES = 100_000


def make_frames(n_labels: int, n_features: int, seed: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    span = 365 * 24 * 3600 * 10**9  # one year, in ns
    start = np.datetime64("2026-01-01", "ns").astype(np.int64)

    def times(n: int) -> np.ndarray:
        return (start + np.sort(rng.integers(0, span, n))).astype("datetime64[ns]")

    features = pd.DataFrame(
        {
            "ts": times(n_features),
            "entity": rng.integers(0, ENTITIES, n_features),
            "f0": rng.normal(size=n_features),
            "f1": rng.normal(size=n_features).astype(np.float32),
            "f2": rng.integers(0, 1000, n_features, dtype=np.int32),
        }
    )
    labels = pd.DataFrame(
        {
            "ts": times(n_labels),
            "entity": rng.integers(0, ENTITIES, n_labels),
            "label": rng.integers(0, 2, n_labels, dtype=np.int8),
        }
    )
    return labels, features


def main() -> None:
    import pandas as pd

    n_labels, n_features, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    labels, features = make_frames(n_labels, n_features, seed)
    t0 = time.perf_counter()
    joined = pd.merge_asof(labels, features, on="ts", by="entity", direction="backward")
    join_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "join_s": join_s,
                "rows": len(joined),
                "matched": int(joined["f0"].notna().sum()),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
