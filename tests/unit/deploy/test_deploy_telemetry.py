"""Per-version telemetry: exact counts under threads, histogram quantiles, merges, JSON."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
from scipy import stats

from conveyor.core.errors import ValidationError
from conveyor.deploy.telemetry import (
    LATENCY_BOUNDS_S,
    MERGED_SAMPLE_CAP,
    Telemetry,
    WindowSummary,
)


def _window(latencies: list[float], statuses: list[int] | None = None, **kw: int) -> WindowSummary:
    telemetry = Telemetry(seed=kw.get("seed", 0), sample_size=kw.get("size", 512))
    for index, latency in enumerate(latencies):
        telemetry.record_request(latency, statuses[index] if statuses else 200)
    summary = telemetry.snapshot_and_reset()
    assert summary is not None
    return summary


def test_bounds_are_log_spaced_from_1ms_to_a_minute() -> None:
    bounds = np.array(LATENCY_BOUNDS_S)
    assert bounds[0] == pytest.approx(1e-3, rel=1e-12)
    assert bounds[-1] >= 60.0
    assert bounds[-2] < 60.0
    np.testing.assert_allclose(bounds[1:] / bounds[:-1], 10 ** (1 / 24), rtol=1e-12)


def test_counts_errors_and_error_rate() -> None:
    statuses = [200] * 90 + [500] * 4 + [503] * 1 + [400] * 3 + [404] * 2
    summary = _window([0.01] * len(statuses), statuses)
    assert summary.requests == 100
    assert summary.server_errors == 5
    assert summary.client_errors == 5
    assert summary.valid_requests == 95
    assert summary.error_rate == pytest.approx(5 / 95, rel=1e-12)
    assert sum(summary.latency_histogram) == 100


def test_snapshot_is_none_when_idle_and_resets() -> None:
    telemetry = Telemetry(seed=1)
    assert telemetry.snapshot_and_reset() is None
    telemetry.record_request(0.002, 200)
    first = telemetry.snapshot_and_reset()
    assert first is not None
    assert first.requests == 1
    assert telemetry.snapshot_and_reset() is None
    telemetry.record_feedback(correct=True)
    second = telemetry.snapshot_and_reset()
    assert second is not None
    assert (second.requests, second.labels, second.correct) == (0, 1, 1)


def test_values_at_a_bound_fall_in_the_bucket_that_bound_closes() -> None:
    index = 40
    bound = LATENCY_BOUNDS_S[index]
    summary = _window([bound, math.nextafter(bound, math.inf), 0.0, 1e6])
    histogram = summary.latency_histogram
    assert histogram[index] == 1
    assert histogram[index + 1] == 1
    assert histogram[0] == 1
    assert histogram[len(LATENCY_BOUNDS_S)] == 1


def test_quantiles_equal_numpy_on_data_at_bucket_bounds() -> None:
    rng = np.random.default_rng(7)
    indices = rng.integers(5, 100, size=1024)
    data = np.array([LATENCY_BOUNDS_S[i] for i in indices])
    summary = _window(data.tolist())
    # Where the rank q * n is the last of a run of equal values (n = 1024 keeps q * n exact),
    # nothing is interpolated: the quantile is that value.
    _, counts = np.unique(data, return_counts=True)
    ends = np.cumsum(counts)
    assert ends.size > 50
    for k in [0, *ends.tolist()]:
        q = k / 1024
        expected = np.quantile(data, q, method="inverted_cdf") if k else data.min()
        assert summary.latency_quantile(q) == pytest.approx(expected, rel=1e-9)
    # Any other quantile lies inside the bucket of numpy's answer.
    for q in np.linspace(0.001, 0.999, 97):
        exact = float(np.quantile(data, q, method="inverted_cdf"))
        estimate = summary.latency_quantile(float(q))
        assert estimate is not None
        bucket = LATENCY_BOUNDS_S.index(exact)
        assert LATENCY_BOUNDS_S[bucket - 1] - 1e-12 <= estimate <= exact + 1e-12


def test_quantile_interpolates_linearly_inside_a_bucket() -> None:
    low, high = LATENCY_BOUNDS_S[30], LATENCY_BOUNDS_S[31]
    # Two values at the bucket's edges' neighbours: min and max clamp the bucket.
    values = [low + (high - low) * f for f in (0.1, 0.3, 0.7, 0.9)]
    summary = _window(values)
    lower, upper = values[0], values[-1]
    for q in (0.0, 0.25, 0.5, 0.8, 1.0):
        assert summary.latency_quantile(q) == pytest.approx(lower + (upper - lower) * q, rel=1e-12)


def test_quantiles_of_continuous_latencies_are_within_the_bucket_resolution() -> None:
    rng = np.random.default_rng(3)
    data = rng.lognormal(mean=math.log(0.02), sigma=0.6, size=20_000)
    summary = _window(data.tolist())
    for q in (0.5, 0.9, 0.99):
        estimate = summary.latency_quantile(q)
        assert estimate == pytest.approx(np.quantile(data, q), rel=0.02)
    assert summary.latency_quantile(0.0) == data.min()
    assert summary.latency_quantile(1.0) == data.max()
    assert WindowSummary().latency_quantile(0.5) is None
    with pytest.raises(ValueError, match="quantile"):
        summary.latency_quantile(1.5)


def test_prediction_feedback_and_shadow_statistics() -> None:
    rng = np.random.default_rng(11)
    batches = [rng.normal(2.0, 3.0, size=n) for n in (1, 7, 50, 300)]
    telemetry = Telemetry(seed=2, sample_size=1000)
    for batch in batches:
        telemetry.record_predictions(batch)
    telemetry.record_predictions(np.array([np.nan, np.inf]))
    errors = rng.exponential(1.5, size=40)
    for index, error in enumerate(errors):
        telemetry.record_feedback(correct=index % 4 != 0, abs_error=float(error))
    telemetry.record_shadow(True, 0.5, 0.01, error=False, timed_out=False)
    telemetry.record_shadow(False, None, None, error=True, timed_out=False)
    telemetry.record_shadow(False, 2.0, None, error=False, timed_out=True)
    summary = telemetry.snapshot_and_reset()
    assert summary is not None
    everything = np.concatenate(batches)
    assert summary.predictions == everything.size
    assert summary.prediction_mean == pytest.approx(everything.mean(), rel=1e-9)
    assert summary.prediction_std == pytest.approx(everything.std(), rel=1e-9)
    assert sorted(summary.prediction_sample) == sorted(everything.tolist())
    assert summary.labels == 40
    assert summary.accuracy == pytest.approx(30 / 40, rel=1e-12)
    assert summary.mean_abs_error == pytest.approx(errors.mean(), rel=1e-9)
    assert summary.abs_error_sum_sq == pytest.approx(float(np.dot(errors, errors)), rel=1e-9)
    assert (summary.shadow_comparisons, summary.shadow_agreements) == (3, 1)
    assert (summary.shadow_errors, summary.shadow_timeouts) == (1, 1)
    assert summary.shadow_diff_sample == (0.5, 2.0)
    assert sum(summary.shadow_latency_histogram) == 1
    assert summary.shadow_latency_quantile(1.0) == pytest.approx(0.01, rel=0.11)


def test_reservoir_keeps_every_value_with_equal_probability() -> None:
    counts = np.zeros(100)
    for seed in range(2000):
        telemetry = Telemetry(sample_size=10, seed=seed)
        for value in range(100):
            telemetry.record_request(value / 1000, 200)
        summary = telemetry.snapshot_and_reset()
        assert summary is not None
        assert len(summary.latency_sample) == 10
        for kept in summary.latency_sample:
            counts[round(kept * 1000)] += 1
    # Each value kept with probability 10/100: 200 expected times out of 2000 trials.
    assert stats.chisquare(counts).pvalue > 0.001
    assert counts.min() > 200 - 6 * math.sqrt(2000 * 0.1 * 0.9)


def test_concurrent_records_from_threads_are_counted_exactly() -> None:
    telemetry = Telemetry(seed=5)
    threads_n, per_thread = 8, 3000
    barrier = threading.Barrier(threads_n)

    def work(offset: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            telemetry.record_request(0.001 * (1 + (i + offset) % 50), 500 if i % 10 == 0 else 200)
            telemetry.record_predictions(np.array([float(i), float(offset)]))
            if i % 3 == 0:
                telemetry.record_feedback(correct=i % 2 == 0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = telemetry.snapshot_and_reset()
    assert summary is not None
    total = threads_n * per_thread
    assert summary.requests == total
    assert summary.server_errors == threads_n * (per_thread // 10)
    assert sum(summary.latency_histogram) == total
    assert summary.predictions == 2 * total
    expected_sum = threads_n * sum(range(per_thread)) + per_thread * sum(range(threads_n))
    assert summary.prediction_sum == expected_sum
    assert summary.labels == threads_n * (per_thread // 3)
    assert len(summary.latency_sample) == 512
    assert len(summary.prediction_sample) == 512


def _recorded(seed: int, n: int, offset: float) -> tuple[Telemetry, list[tuple[float, int]]]:
    rng = np.random.default_rng(seed)
    telemetry = Telemetry(seed=seed)
    calls = [
        (float(rng.lognormal(math.log(0.01 + offset), 0.5)), int(rng.choice([200, 500, 404])))
        for _ in range(n)
    ]
    for latency, status in calls:
        telemetry.record_request(latency, status)
        telemetry.record_predictions(np.array([latency * 10]))
        telemetry.record_feedback(correct=status == 200, abs_error=latency)
        telemetry.record_shadow(status == 200, latency, latency * 2, status == 500, False)
    return telemetry, calls


def test_merge_equals_accumulating_everything_in_one() -> None:
    windows = []
    every_call: list[tuple[float, int]] = []
    for seed, n in ((1, 300), (2, 50), (3, 480), (4, 1)):
        telemetry, calls = _recorded(seed, n, offset=seed / 100)
        windows.append(telemetry.snapshot_and_reset())
        every_call.extend(calls)
    one = Telemetry(seed=99, sample_size=5000)
    for latency, status in every_call:
        one.record_request(latency, status)
        one.record_predictions(np.array([latency * 10]))
        one.record_feedback(correct=status == 200, abs_error=latency)
        one.record_shadow(status == 200, latency, latency * 2, status == 500, False)
    expected = one.snapshot_and_reset()
    assert expected is not None
    merged = WindowSummary.merge([w for w in windows if w is not None])
    exact = [
        "requests", "server_errors", "client_errors", "latency_histogram", "latency_min_s",
        "latency_max_s", "predictions", "labels", "correct", "abs_errors", "shadow_comparisons",
        "shadow_agreements", "shadow_errors", "shadow_timeouts", "shadow_latency_histogram",
        "shadow_diffs",
    ]  # fmt: skip
    for name in exact:
        assert getattr(merged, name) == getattr(expected, name), name
    for name in ("latency_sum_s", "prediction_sum", "prediction_sum_sq", "abs_error_sum"):
        assert getattr(merged, name) == pytest.approx(getattr(expected, name), rel=1e-9)
    # No reservoir overflowed, so the merged samples are everything, in any order.
    for name in ("latency_sample", "prediction_sample", "shadow_diff_sample"):
        assert sorted(getattr(merged, name)) == sorted(getattr(expected, name)), name
    for q in (0.5, 0.99):
        assert merged.latency_quantile(q) == expected.latency_quantile(q)
    assert WindowSummary.merge([]) == WindowSummary()
    assert WindowSummary.merge([expected]) == expected


def test_merge_weights_windows_by_their_traffic() -> None:
    busy = Telemetry(seed=1)
    for _ in range(10_000):
        busy.record_request(0.1, 200)
    quiet = Telemetry(seed=2)
    for _ in range(100):
        quiet.record_request(0.001, 200)
    busy_w, quiet_w = busy.snapshot_and_reset(), quiet.snapshot_and_reset()
    assert busy_w is not None
    assert quiet_w is not None
    merged = WindowSummary.merge([busy_w, quiet_w])
    # m = min(5000, 512 * 10100 / 10000, 100 * 10100 / 100) = 517, split 10000 : 100.
    sample = np.array(merged.latency_sample)
    assert sample.size == 517
    assert int(np.count_nonzero(sample == 0.001)) == 5
    assert int(np.count_nonzero(sample == 0.1)) == 512
    # Naive concatenation would give the quiet window 100 / 612 = 16% of the sample.
    assert np.mean(sample == 0.001) == pytest.approx(100 / 10_100, abs=0.003)


def test_merge_caps_the_sample_deterministically() -> None:
    windows = []
    for seed in range(15):
        telemetry = Telemetry(seed=seed)
        for i in range(1000):
            telemetry.record_request(0.001 * (1 + i % 7), 200)
            telemetry.record_predictions(np.array([float(seed)]))
        windows.append(telemetry.snapshot_and_reset())
    summaries = [w for w in windows if w is not None]
    merged = WindowSummary.merge(summaries)
    assert len(merged.latency_sample) == MERGED_SAMPLE_CAP
    assert merged == WindowSummary.merge(summaries)
    # Equal traffic: every window contributes a fifteenth of the sample.
    per_window = np.bincount(np.array(merged.prediction_sample, dtype=int))
    assert per_window.min() >= MERGED_SAMPLE_CAP // 15
    assert per_window.max() <= MERGED_SAMPLE_CAP // 15 + 1
    # Merging merged summaries keeps the cap.
    twice = WindowSummary.merge([merged, WindowSummary.merge(summaries[:3])])
    assert len(twice.latency_sample) <= MERGED_SAMPLE_CAP
    assert twice.requests == 18_000


def test_json_round_trip_is_exact() -> None:
    telemetry, _ = _recorded(8, 700, 0.0)
    telemetry.record_predictions(np.array([1 / 3, 2.0**-1000, 1e100]))
    summary = telemetry.snapshot_and_reset()
    assert summary is not None
    text = json.dumps(summary.to_json(), allow_nan=False)
    again = WindowSummary.from_json(json.loads(text))
    assert again == summary
    empty = WindowSummary()
    assert WindowSummary.from_json(json.loads(json.dumps(empty.to_json()))) == empty


def test_from_json_rejects_other_formats() -> None:
    good = WindowSummary().to_json()
    with pytest.raises(ValidationError, match="format 2"):
        WindowSummary.from_json({**good, "format": 2})
    with pytest.raises(ValidationError, match="'surprise'"):
        WindowSummary.from_json({**good, "surprise": 1})
    with pytest.raises(ValidationError, match="latency_histogram has 3 buckets"):
        WindowSummary.from_json({**good, "latency_histogram": [0, 0, 0]})
