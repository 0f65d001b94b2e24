"""Window metrics checked against scipy and scikit-learn, and their rows in the store."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, precision_score, recall_score

from conveyor.monitoring import WindowSpec, compute_window, record_window
from conveyor.monitoring.windows import latest_windows, read_windows

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 2000),
            "y": rng.normal(5, 2, 2000),
            "c": rng.choice(["a", "b", "c"], 2000, p=[0.5, 0.3, 0.2]),
        }
    )
    window = pd.DataFrame(
        {
            "x": rng.normal(0.5, 1, 400),
            "y": rng.normal(5, 2, 400),
            "c": rng.choice(["a", "b", "c"], 400, p=[0.2, 0.3, 0.5]),
            "request_id": [f"r{i}" for i in range(400)],
            "prediction": rng.integers(0, 2, 400),
            "latency_s": rng.exponential(0.02, 400),
            "region": rng.choice(["n", "s"], 400),
            "score": rng.random(400),
        }
    )
    window.loc[window.index[:40], "y"] = np.nan
    window.loc[window.index[40:50], "x"] = 99.0  # outside the reference's range
    return reference, window


def test_drift_and_quality_match_scipy() -> None:
    reference, window = _frames()
    metrics = compute_window(window, WindowSpec(reference=reference))
    # Reference > 1000 rows: Wasserstein distance over the reference's std for numbers, and
    # Jensen-Shannon distance (natural log) for categories, as `conveyor data drift`.
    for column in ("x", "y"):
        ref, cur = reference[column], window[column].dropna()
        expected = stats.wasserstein_distance(ref, cur) / ref.std(ddof=0)
        assert metrics[f"drift.column.{column}"] == pytest.approx(expected, rel=1e-9)
    ref_share = reference["c"].value_counts(normalize=True).sort_index()
    cur_share = window["c"].value_counts(normalize=True).sort_index()
    from scipy.spatial.distance import jensenshannon

    assert metrics["drift.column.c"] == pytest.approx(jensenshannon(ref_share, cur_share), rel=1e-9)
    assert metrics["drift.drifted"] == ["x", "c"]
    assert metrics["drift.share_drifted"] == pytest.approx(2 / 3)
    assert metrics["quality.null_share.y"] == 0.1
    assert metrics["quality.null_share"] == 0.1
    x, ref_x = window["x"], reference["x"]
    outside = ((x < ref_x.min()) | (x > ref_x.max())).mean()
    assert outside >= 10 / 400  # the planted 99s, and whatever the shift pushed past the max
    assert metrics["quality.out_of_range_share.x"] == pytest.approx(outside, abs=1e-12)
    assert metrics["latency.p99"] == pytest.approx(np.quantile(window["latency_s"], 0.99))
    assert metrics["rows"] == 400


def test_performance_by_slice_matches_sklearn() -> None:
    reference, window = _frames()
    rng = np.random.default_rng(5)
    labels = pd.DataFrame(
        {"request_id": [f"r{i}" for i in range(0, 400, 2)], "label": rng.integers(0, 2, 200)}
    )
    spec = WindowSpec(reference=reference, labels=labels, slices=("region",), score_column="score")
    metrics = compute_window(window, spec)
    joined = window.merge(labels, on="request_id")
    y, p = joined["label"], joined["prediction"]
    assert metrics["labels.count"] == 200
    assert metrics["perf.accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert metrics["perf.precision"] == pytest.approx(precision_score(y, p), abs=1e-12)
    assert metrics["perf.recall"] == pytest.approx(recall_score(y, p), abs=1e-12)
    # ECE with 10 equal-width bins, computed by hand from its definition.
    bins = np.minimum((joined["score"] * 10).astype(int), 9)
    ece = sum(
        (bins == b).mean() * abs(y[bins == b].mean() - joined["score"][bins == b].mean())
        for b in range(10)
        if (bins == b).any()
    )
    assert metrics["perf.ece"] == pytest.approx(ece, abs=1e-9)
    for region in ("n", "s"):
        part = joined[joined["region"] == region]
        assert metrics[f"slice.region={region}.accuracy"] == pytest.approx(
            accuracy_score(part["label"], part["prediction"]), abs=1e-12
        )
        assert metrics[f"slice.region={region}.recall"] == pytest.approx(
            recall_score(part["label"], part["prediction"]), abs=1e-12
        )


def test_prediction_drift_against_reference_predictions() -> None:
    reference, window = _frames()
    reference_predictions = np.random.default_rng(9).integers(0, 2, 2000)
    metrics = compute_window(
        window, WindowSpec(reference=reference, reference_predictions=reference_predictions)
    )
    ref = np.bincount(reference_predictions) / 2000
    cur = np.bincount(window["prediction"]) / 400
    from scipy.spatial.distance import jensenshannon

    assert metrics["prediction.drift"] == pytest.approx(jensenshannon(ref, cur), rel=1e-9)
    assert metrics["prediction.mean"] == pytest.approx(window["prediction"].mean())


def test_an_empty_window_has_only_its_row_count() -> None:
    reference, window = _frames()
    assert compute_window(window.iloc[:0], WindowSpec(reference=reference)) == {"rows": 0}


def test_windows_are_stored_and_read_back(metadata_store: MetadataStore) -> None:
    for i in range(3):
        record_window(
            metadata_store,
            model="churn",
            version=2,
            start=T0 + dt.timedelta(minutes=5 * i),
            end=T0 + dt.timedelta(minutes=5 * (i + 1)),
            metrics={"rows": i, "drift.share_drifted": float("nan") if i == 0 else 0.1 * i},
        )
    with metadata_store.read() as conn:
        windows = read_windows(conn, "churn", since=T0 + dt.timedelta(minutes=5))
        latest = latest_windows(conn)
    assert [w.metrics["rows"] for w in windows] == [1, 2]
    assert [(w.model, w.metrics["rows"]) for w in latest] == [("churn", 2)]
    with metadata_store.read() as conn:
        first = read_windows(conn, "churn")[0]
    assert first.metrics["drift.share_drifted"] is None  # JSON has no NaN
