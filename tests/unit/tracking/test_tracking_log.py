"""Logging metrics: validation, buffering, batches by size and by time, exact values."""

from __future__ import annotations

import math
import re
import threading
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest

from conveyor.core.errors import ConflictError, InfrastructureError, ValidationError
from conveyor.tracking import get_metrics, list_runs, start_run

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable

    from tests.unit.tracking.conftest import Rows

    from conveyor.store.metadata import MetadataStore, Tx


def test_values_wait_in_memory_until_a_batch_is_full_and_the_rest_at_the_end(
    metadata_store: MetadataStore, rows: Rows
) -> None:
    with start_run(metadata_store, actor="ann", flush_every=100, flush_interval=None) as run:
        for i in range(250):
            run.log_metric("loss", 1.0 / (i + 1))
        assert rows.metrics(run.id) == 200  # two full batches; 50 still in memory
    assert rows.metrics(run.id) == 250
    assert get_metrics(metadata_store, run.id)["loss"] == [(i, 1.0 / (i + 1)) for i in range(250)]
    batches = [p["count"] for a, _t, p in rows.events() if a == "run.metrics_logged"]
    assert batches == [100, 100, 50]


def test_the_last_batch_and_the_end_of_the_run_are_one_transaction(
    metadata_store: MetadataStore, rows: Rows
) -> None:
    with start_run(metadata_store, actor="ann", flush_interval=None) as run:
        run.log_metric("loss", 0.5)
    events = rows.timed_events()
    assert [(a, t) for a, t, _p, _at in events] == [
        ("run.started", f"run:{run.id}"),
        ("run.metrics_logged", f"run:{run.id}"),
        ("run.finished", f"run:{run.id}"),
    ]
    # Events of one transaction share its time; the start was an earlier transaction.
    assert events[1][3] == events[2][3] != events[0][3]
    assert events[1][2] == {"count": 1, "keys": ["loss"]}
    assert events[2][2] == {"status": "succeeded", "metrics": 1}


def test_values_come_back_exactly(metadata_store: MetadataStore) -> None:
    values = [0.1 + 0.2, 1 / 3, 1e-300, -2.5e300, 5e-324, 2.0**53 + 2, 123456789.123456789]
    with start_run(metadata_store, actor="ann") as run:
        for value in values:
            run.log_metric("x", value)
        run.log_metric("n", 7)  # an int is a number too
    stored = get_metrics(metadata_store, run.id)
    assert stored["x"] == list(enumerate(values))
    assert all(type(v) is float for _s, v in stored["x"])
    assert stored["n"] == [(0, 7.0)]


def test_numpy_scalars_are_numbers_and_steps(metadata_store: MetadataStore) -> None:
    with start_run(metadata_store, actor="ann") as run:
        run.log_metric("acc", np.float32(0.75), step=np.int64(3))  # type: ignore[arg-type]
        run.log_metric("acc", np.float64(0.8))
    assert get_metrics(metadata_store, run.id) == {"acc": [(3, 0.75), (4, 0.8)]}


def test_steps_count_up_per_metric_unless_given(metadata_store: MetadataStore) -> None:
    with start_run(metadata_store, actor="ann") as run:
        run.log_metrics({"loss": 0.9, "acc": 0.1})
        run.log_metrics({"loss": 0.5, "acc": 0.4})
        run.log_metric("loss", 0.2, step=10)
        run.log_metric("loss", 0.1)  # one past the highest step so far
        run.log_metric("acc", 0.6, step=0)  # an earlier step does not move the count back
        run.log_metric("acc", 0.7)
    assert get_metrics(metadata_store, run.id) == {
        "acc": [(0, 0.1), (0, 0.6), (1, 0.4), (2, 0.7)],
        "loss": [(0, 0.9), (1, 0.5), (10, 0.2), (11, 0.1)],
    }


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (math.nan, "is nan"),
        (math.inf, "is inf"),
        (-math.inf, "is -inf"),
        (True, "is bool True"),
        ("0.5", "is str '0.5'"),
        (None, "is NoneType None"),
        ([0.5], "is list [0.5]"),
    ],
)
def test_a_value_that_is_not_a_finite_number_is_refused_by_name(
    metadata_store: MetadataStore, rows: Rows, value: object, shown: str
) -> None:
    with start_run(metadata_store, actor="ann") as run:
        with pytest.raises(
            ValidationError, match=re.escape(f"metric 'loss' of run {run.id} {shown},")
        ):
            run.log_metric("loss", value)  # type: ignore[arg-type]
        run.log_metric("loss", 0.5)
    # The refused value took no step and left no row.
    assert get_metrics(metadata_store, run.id) == {"loss": [(0, 0.5)]}


@pytest.mark.parametrize("name", ["bad name", "val/loss", "", "-x", "a" * 129, "a..b"])
def test_a_bad_metric_name_is_refused_by_name(metadata_store: MetadataStore, name: str) -> None:
    with start_run(metadata_store, actor="ann") as run:
        with pytest.raises(ValidationError, match=re.escape(f"metric name {name!r} is not valid")):
            run.log_metric(name, 1.0)
    assert get_metrics(metadata_store, run.id) == {}


@pytest.mark.parametrize("step", [1.5, True, "3", 2**63])
def test_a_bad_step_is_refused(metadata_store: MetadataStore, step: object) -> None:
    with start_run(metadata_store, actor="ann") as run:
        with pytest.raises(ValidationError, match=r"step .* of metric 'loss'"):
            run.log_metric("loss", 1.0, step=step)  # type: ignore[arg-type]


def test_nothing_can_be_logged_after_the_end(metadata_store: MetadataStore) -> None:
    run = start_run(metadata_store, actor="ann")
    run.end()
    run.end()  # ending twice is harmless
    with pytest.raises(ConflictError, match=f"run {run.id} has ended \\(succeeded\\)"):
        run.log_metric("loss", 0.4)
    with pytest.raises(ConflictError, match="has ended"):
        run.log_metrics({"loss": 0.4})


def test_many_keys_in_one_batch_are_listed_up_to_a_limit(
    metadata_store: MetadataStore, rows: Rows
) -> None:
    with start_run(metadata_store, actor="ann") as run:
        run.log_metrics({f"class{i:03d}.recall": 0.5 for i in range(150)})
    [batch] = [p for a, _t, p in rows.events() if a == "run.metrics_logged"]
    assert batch["count"] == 150
    assert batch["keys"] == [f"class{i:03d}.recall" for i in range(100)]
    assert batch["more_keys"] == 50


def test_threads_can_log_to_one_run(metadata_store: MetadataStore) -> None:
    with start_run(metadata_store, actor="ann", flush_every=64, flush_interval=None) as run:

        def work(key: str) -> None:
            for i in range(500):
                run.log_metric(key, float(i))

        threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    stored = get_metrics(metadata_store, run.id)
    assert {k: len(v) for k, v in stored.items()} == {f"t{n}": 500 for n in range(4)}
    assert all(v == [(i, float(i)) for i in range(500)] for v in stored.values())


# ------------------------------------------------------------------ batches by time


class _FakeTimer:
    """Stands in for threading.Timer: records what would run, runs it when the test says."""

    made: ClassVar[list[_FakeTimer]] = []

    def __init__(self, interval: float, function: Callable[[], None]) -> None:
        self.interval = interval
        self.function = function
        self.started = self.cancelled = False
        self.daemon = False
        _FakeTimer.made.append(self)

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        assert self.started
        self.function()


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> list[_FakeTimer]:
    monkeypatch.setattr(_FakeTimer, "made", [])
    # The handle arms its timer through threading.Timer, looked up at each use.
    monkeypatch.setattr(threading, "Timer", _FakeTimer)
    return _FakeTimer.made


def test_a_value_waits_at_most_flush_interval_seconds(
    metadata_store: MetadataStore, rows: Rows, timers: list[_FakeTimer]
) -> None:
    with start_run(metadata_store, actor="ann", flush_interval=2.5) as run:
        run.log_metric("loss", 0.9)
        run.log_metric("loss", 0.8)
        [timer] = timers  # armed by the first value only
        assert (timer.interval, timer.daemon, rows.metrics(run.id)) == (2.5, True, 0)

        timer.fire()
        assert rows.metrics(run.id) == 2

        run.log_metric("loss", 0.7)  # a new batch arms a new timer
        assert len(timers) == 2
        assert not timers[1].cancelled
    assert timers[1].cancelled  # the end wrote the batch itself
    assert rows.metrics(run.id) == 3


def test_a_full_batch_stops_its_timer(
    metadata_store: MetadataStore, rows: Rows, timers: list[_FakeTimer]
) -> None:
    with start_run(metadata_store, actor="ann", flush_every=3, flush_interval=60) as run:
        for i in range(3):
            run.log_metric("loss", float(i))
        assert rows.metrics(run.id) == 3
        assert timers[0].cancelled
        timers[0].fire()  # a timer that fires anyway finds nothing to write
    assert [p["count"] for a, _t, p in rows.events() if a == "run.metrics_logged"] == [3]


def test_the_timer_thread_writes_the_batch(metadata_store: MetadataStore, rows: Rows) -> None:
    made: list[threading.Timer] = []
    real_timer = threading.Timer

    def recording(interval: float, function: Callable[[], None]) -> threading.Timer:
        made.append(real_timer(interval, function))
        return made[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threading, "Timer", recording)
        with start_run(metadata_store, actor="ann", flush_interval=0.01) as run:
            run.log_metric("loss", 0.25)
            made[0].join(timeout=30)
            assert rows.metrics(run.id) == 1
            assert list_runs(metadata_store)[0].metrics == {"loss": 0.25}


# ------------------------------------------------------------------ failed writes


def _failing_writes(
    monkeypatch: pytest.MonkeyPatch, store: MetadataStore, times: int
) -> Callable[[], int]:
    """Make the next ``times`` write transactions of ``store`` fail; returns the failure count."""
    real = store.write
    failures = {"n": 0}

    def write(actor: str) -> contextlib.AbstractContextManager[Tx]:
        if failures["n"] < times:
            failures["n"] += 1
            raise InfrastructureError("metadata store is unavailable: test")
        return real(actor)

    monkeypatch.setattr(store, "write", write)
    return lambda: failures["n"]


def test_a_failed_write_keeps_the_values_for_the_next_one(
    metadata_store: MetadataStore, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = start_run(metadata_store, actor="ann", flush_interval=None)
    run.log_metrics({"loss": 0.5, "acc": 0.7})
    _failing_writes(monkeypatch, metadata_store, times=1)
    with pytest.raises(InfrastructureError):
        run.flush()
    run.log_metric("loss", 0.4)
    run.end()
    assert get_metrics(metadata_store, run.id) == {"acc": [(0, 0.7)], "loss": [(0, 0.5), (1, 0.4)]}
    assert rows.run(run.id)["status"] == "succeeded"


def test_an_end_that_cannot_be_written_can_be_retried(
    metadata_store: MetadataStore, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = start_run(metadata_store, actor="ann")
    run.log_metric("loss", 0.5)
    _failing_writes(monkeypatch, metadata_store, times=1)
    with pytest.raises(InfrastructureError):
        run.end()
    assert run.status == "running"
    run.log_metric("loss", 0.4)  # still open
    run.end()
    assert (run.status, rows.run(run.id)["status"], rows.metrics(run.id)) == ("succeeded",) * 2 + (
        2,
    )


def test_a_failed_timed_write_is_retried_by_the_next_flush(
    metadata_store: MetadataStore,
    rows: Rows,
    timers: list[_FakeTimer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with start_run(metadata_store, actor="ann", flush_interval=1.0) as run:
        run.log_metric("loss", 0.5)
        failures = _failing_writes(monkeypatch, metadata_store, times=1)
        timers[0].fire()  # no caller to raise to: logged
        assert failures() == 1
        assert rows.metrics(run.id) == 0
        assert "a timed write of metrics failed" in caplog.text
        run.log_metric("loss", 0.4)
        assert len(timers) == 2  # the values are waiting again, so a timer is armed again
    assert get_metrics(metadata_store, run.id) == {"loss": [(0, 0.5), (1, 0.4)]}


def test_the_users_exception_wins_over_a_failed_end(
    metadata_store: MetadataStore, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    def work() -> Any:
        with start_run(metadata_store, actor="ann") as run:
            _failing_writes(monkeypatch, metadata_store, times=1)
            raise KeyError(run.id)

    with pytest.raises(KeyError) as caught:
        work()
    [run_id] = caught.value.args
    assert rows.run(run_id)["status"] == "running"  # the end could not be recorded
