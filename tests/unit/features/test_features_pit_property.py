"""point_in_time_join against pandas merge_asof on random data, many seeds.

Timestamps are drawn from a small range, so labels land exactly on feature times (the join
is "at or before": a value stamped at the label's time is visible), several labels share a
time, and entities share times; TTLs land exactly on their boundary too. Feature rows are
given in the offline store's layout, sorted by (entity, time), and labels in random order;
the result must keep the labels' order and match merge_asof exactly, value for value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conveyor.features import point_in_time_join

SECOND = np.timedelta64(1, "s")


def _frames(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_entities = int(rng.integers(1, 12))
    n_features = int(rng.integers(1, 300))
    n_labels = int(rng.integers(1, 300))
    start = np.datetime64("2026-01-01T00:00:00", "ns")
    # Unique (entity, time) feature rows: which of two values stamped at the same instant
    # for the same entity is "the latest" is not defined by their data.
    cells = rng.choice(n_entities * 60, size=min(n_features, n_entities * 60), replace=False)
    features = pd.DataFrame(
        {
            "entity": (cells // 60).astype(np.int64),
            "ts": start + (cells % 60) * SECOND,
            "f0": rng.normal(size=len(cells)),
            "f1": rng.integers(-5, 5, size=len(cells)).astype(np.float32),
        }
    ).sort_values(["entity", "ts"], ignore_index=True)
    labels = pd.DataFrame(
        {
            # One entity more than the features know: its labels match nothing.
            "entity": rng.integers(0, n_entities + 1, size=n_labels),
            "ts": start + rng.integers(-3, 63, size=n_labels) * SECOND,
            "label": rng.integers(0, 2, size=n_labels),
        }
    )
    return labels, features


def _reference(labels: pd.DataFrame, features: pd.DataFrame, ttl: float | None) -> pd.DataFrame:
    left = labels.assign(_row=np.arange(len(labels))).sort_values("ts", kind="stable")
    right = features.sort_values("ts", kind="stable")
    tolerance = None if ttl is None else pd.Timedelta(seconds=ttl)
    joined = pd.merge_asof(
        left, right, on="ts", by="entity", direction="backward", tolerance=tolerance
    )
    return joined.sort_values("_row").reset_index(drop=True)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("ttl", [None, 0.0, 5.0, 17.5])
def test_matches_merge_asof_exactly(seed: int, ttl: float | None) -> None:
    labels, features = _frames(seed)
    got = point_in_time_join(
        labels,
        [(features, ["f0", "f1"], ttl)],
        entity="entity",
        timestamp="ts",
        feature_timestamp="ts",
        timezone="UTC",
    )
    want = _reference(labels, features, ttl)
    pd.testing.assert_frame_equal(
        got[["entity", "ts", "label"]], labels.reset_index(drop=True), check_dtype=True
    )
    for column in ("f0", "f1"):
        np.testing.assert_array_equal(
            got[column].to_numpy(dtype=np.float64), want[column].to_numpy(dtype=np.float64)
        )


def test_two_feature_tables_each_get_their_own_ttl() -> None:
    labels, features = _frames(1234)
    other = features.rename(columns={"f0": "g0", "f1": "g1"})
    got = point_in_time_join(
        labels,
        [(features, ["f0"], None), (other, ["g1"], 4.0)],
        entity="entity",
        timestamp="ts",
        feature_timestamp="ts",
        timezone="UTC",
    )
    np.testing.assert_array_equal(got["f0"].to_numpy(), _reference(labels, features, None)["f0"])
    np.testing.assert_array_equal(
        got["g1"].to_numpy(dtype=np.float64),
        _reference(labels, other, 4.0)["g1"].to_numpy(dtype=np.float64),
    )
