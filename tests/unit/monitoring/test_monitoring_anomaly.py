"""Output anomalies: NaN and out-of-range answers, a single answer taking over, the EWMA chart."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conveyor.monitoring import Ewma, output_anomalies


def test_ewma_follows_its_recurrence_and_limit() -> None:
    chart = Ewma(lam=0.2, width=3.0)
    assert chart.limit == pytest.approx(3 * math.sqrt(0.2 / 1.8), rel=1e-12)
    value = None
    expected = 0.0
    for z in (1.0, -0.5, 2.0, 4.0):
        value = chart.update(value, z)
        expected = 0.2 * z + 0.8 * expected
        assert value == pytest.approx(expected, rel=1e-12)
    assert not chart.out_of_control(0.9)
    assert chart.out_of_control(1.1)


def test_a_persistent_small_shift_goes_out_of_control_and_noise_does_not() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0.3, 0.1, 5000)
    previous = None
    alarms = []
    for t in range(30):
        shift = 0.01 if t >= 10 else 0.0  # a tenth of a standard deviation
        window = rng.normal(0.3 + shift, 0.1, 500)
        metrics = output_anomalies(window, reference, previous_ewma=previous)
        previous = metrics["anomaly.mean_ewma"]
        z = (window.mean() - reference.mean()) / (reference.std(ddof=1) / math.sqrt(500))
        assert metrics["anomaly.mean_z"] == pytest.approx(z, rel=1e-9)
        alarms.append(metrics["anomaly.mean_shift"])
    assert sum(alarms[:10]) == 0
    assert sum(alarms[15:]) >= 10


def test_nan_out_of_range_and_a_stuck_answer() -> None:
    reference = np.linspace(0.0, 1.0, 101)
    window = np.array([0.9] * 70 + [np.nan] * 10 + [1.5] * 5 + [0.1] * 15)
    metrics = output_anomalies(window, reference)
    assert metrics["anomaly.nan_share"] == pytest.approx(0.10)
    assert metrics["anomaly.out_of_range_share"] == pytest.approx(5 / 90)
    assert metrics["anomaly.top_answer"] == 0.9
    assert metrics["anomaly.top_answer_share"] == pytest.approx(70 / 90)
    assert metrics["anomaly.top_answer_lift"] == pytest.approx(70 / 90 - 1 / 101)


def test_class_mix_of_labels() -> None:
    reference = np.array(["a"] * 50 + ["b"] * 50)
    metrics = output_anomalies(np.array(["b"] * 95 + ["a"] * 5), reference)
    assert metrics["anomaly.top_answer"] == "b"
    assert metrics["anomaly.top_answer_lift"] == pytest.approx(0.45)
    assert "anomaly.mean_ewma" not in metrics  # no mean of labels
