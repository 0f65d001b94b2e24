"""Row 8, Conveyor side: point-in-time join through the feature store's offline API.

    conveyor_pit_join.py LABEL_ROWS FEATURE_ROWS SEED

The same data as ``pandas_asof.py`` (its generator, same arguments and seed; generation
untimed), in memory as the anchor's is: labels as generated (sorted by time), feature rows
sorted by (entity, time), the order ``OfflineStore.read`` returns (untimed, as the anchor's
sort by time is; the join needs no particular order). Timed:
``conveyor.features.point_in_time_join`` (DuckDB ``ASOF LEFT JOIN``, each label row taking the
latest feature row of its entity at or before its timestamp), result fetched as a pandas
DataFrame in the labels' order, as ``merge_asof`` returns one.
"""

from __future__ import annotations

import json
import sys
import time

from _mem import peak_rss_mb
from pandas_asof import make_frames


def main() -> None:
    if sys.argv[1:] == ["--probe"]:
        import conveyor.features  # noqa: F401

        return
    from conveyor.features import point_in_time_join

    n_labels, n_features, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    labels, features = make_frames(n_labels, n_features, seed)
    features = features.sort_values(["entity", "ts"], kind="stable", ignore_index=True)
    t0 = time.perf_counter()
    joined = point_in_time_join(
        labels,
        [(features, ["f0", "f1", "f2"], None)],
        entity="entity",
        timestamp="ts",
        feature_timestamp="ts",
        timezone="UTC",  # the generator's timestamps are naive UTC
    )
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
