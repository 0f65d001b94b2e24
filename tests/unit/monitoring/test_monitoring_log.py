"""The inference logger: rows round-trip through Parquet, sampling, and log() never blocks."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from conveyor.core.errors import ConfigError
from conveyor.monitoring import InferenceLogger, read_log
from conveyor.monitoring._log import read_labels, window_start

if TYPE_CHECKING:
    from pathlib import Path

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def test_rows_are_written_by_window_and_read_back(tmp_path: Path) -> None:
    now = [T0]
    log = InferenceLogger(tmp_path, clock=lambda: now[0], window=dt.timedelta(minutes=5))
    log.log("churn", 3, "a", {"age": 30, "plan": "pro"}, 1, 0.01)
    now[0] = T0 + dt.timedelta(minutes=6)
    frame = pd.DataFrame({"age": [41, 52], "plan": ["basic", None]})
    log.log("churn", 3, "b", frame, [0, 1], 0.02)
    log.close()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert [f.split("-")[0] for f in files] == [
        "churn/2026",  # <model>/<yyyy-mm-dd>/<window-start>-<uuid>.parquet
        "churn/2026",
    ]
    assert [f.split("/")[2][:16] for f in files] == ["20260302T100000Z", "20260302T100500Z"]
    first = read_log(tmp_path, "churn", T0, T0 + dt.timedelta(minutes=5))
    assert first[["request_id", "age", "plan", "prediction", "version"]].to_dict("records") == [
        {"request_id": "a", "age": 30, "plan": "pro", "prediction": 1, "version": 3}
    ]
    second = read_log(tmp_path, "churn", T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(hours=1))
    assert list(second["request_id"]) == ["b:0", "b:1"]
    assert list(second["age"]) == [41, 52]
    assert second["plan"].isna().tolist() == [False, True]
    assert log.counters.written == 2


def test_labels_from_feedback_are_read_back_by_request_row(tmp_path: Path) -> None:
    now = [T0]
    log = InferenceLogger(tmp_path, clock=lambda: now[0], sample_rate=0.0)
    assert log.log_labels("churn", "a", 1)  # labels are never sampled out
    now[0] = T0 + dt.timedelta(minutes=1)
    log.log_labels("churn", "b", [0, 1])
    log.log_labels("churn", "a", 0)  # a correction: the latest label wins
    log.close()
    labels = read_labels(tmp_path, "churn", T0, T0 + dt.timedelta(hours=1))
    assert sorted(zip(labels["request_id"], labels["label"], strict=True)) == [
        ("a", 0),
        ("b:0", 0),
        ("b:1", 1),
    ]
    # Label files live apart from request files: the request reader sees none of them.
    assert len(read_log(tmp_path, "churn", T0, T0 + dt.timedelta(hours=1))) == 0


def test_sampling_logs_the_configured_share(tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path, sample_rate=0.25, seed=1)
    for i in range(4000):
        log.log("m", 1, str(i), {"x": i}, 0, 0.0)
    counters = log.close()
    assert counters.logged + counters.sampled_out == 4000
    assert 900 < counters.logged < 1100
    assert counters.dropped == 0


def test_window_start_aligns_to_the_epoch() -> None:
    at = dt.datetime(2026, 3, 2, 10, 7, 59, tzinfo=dt.UTC)
    assert window_start(at, dt.timedelta(minutes=5)) == dt.datetime(
        2026, 3, 2, 10, 5, tzinfo=dt.UTC
    )


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sample rate"):
        InferenceLogger(tmp_path, sample_rate=1.5)
    with pytest.raises(ConfigError, match="window"):
        InferenceLogger(tmp_path, window=dt.timedelta(hours=2))


class _Stalled(InferenceLogger):
    """A logger whose writer hangs inside its first write until released."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        super().__init__(*args, **kwargs)

    def _write(
        self, model: str, start: dt.datetime, rows: list[dict[str, Any]], *, labels: bool = False
    ) -> None:
        self.entered.set()
        self.release.wait()
        super()._write(model, start, rows, labels=labels)


def test_log_never_blocks_when_the_writer_is_stalled(tmp_path: Path) -> None:
    log = _Stalled(tmp_path, queue_size=100, batch_size=1)
    assert log.log("m", 1, "first", {"x": 1}, 0, 0.0)
    assert log.entered.wait(10)  # the writer now holds "first" and hangs
    costs = []
    for i in range(1100):
        began = time.perf_counter()
        log.log("m", 1, str(i), {"x": i}, 0, 0.0)
        costs.append(time.perf_counter() - began)
    counters = log.counters
    assert counters.logged == 101  # "first" and a full queue
    assert counters.dropped == 1000
    # Never waits on the stalled writer: even the slowest call is far below a millisecond.
    costs.sort()
    assert costs[len(costs) // 2] < 20e-6, costs[len(costs) // 2]
    assert costs[-1] < 2e-3, costs[-1]
    log.release.set()
    assert log.close().written == 101


def test_log_costs_microseconds(tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path, queue_size=200_000)
    row = {"age": 30, "plan": "pro"}
    batches = []
    for _ in range(20):
        began = time.perf_counter()
        for i in range(1000):
            log.log("m", 1, "r", row, i % 2, 0.01)
        batches.append((time.perf_counter() - began) / 1000)
    log.close()
    # The median batch, so a busy machine's hiccup does not decide; ~1 us on a quiet one.
    per_call = sorted(batches)[len(batches) // 2]
    assert per_call < 10e-6, per_call
