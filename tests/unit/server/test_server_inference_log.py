"""The server logs every answered request for monitoring, and labels sent as feedback, without
slowing serving down (issue 10)."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import TYPE_CHECKING

import pytest
from tests.unit.server._support import MODEL, TestClient, infer_body, rows

from conveyor.monitoring import InferenceLogger, read_labels, read_log
from conveyor.server import create_app

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.server.conftest import Stores

URL = f"/v2/models/{MODEL}/infer"


def _window() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)


def test_answers_and_feedback_are_logged(stores: Stores, tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path / "log", flush_interval_s=0.05)
    app = create_app(stores.metadata, stores.artifacts, inference_log=log)
    frame = rows(3)
    with TestClient(app) as client:
        answered = client.post(URL, json=infer_body(frame, id="req-1"))
        assert answered.status_code == 200
        predicted = answered.json()["outputs"][0]["data"]
        feedback = client.post(
            f"/v2/models/{MODEL}/feedback", json={"id": "req-1", "label": [1, 0, 1]}
        )
        assert feedback.status_code == 200, feedback.text
        assert feedback.json()["logged"] == 1
        # An id another replica answered: logged for monitoring, not an error.
        other = client.post(f"/v2/models/{MODEL}/feedback", json={"id": "elsewhere", "label": 1})
        assert other.status_code == 200, other.text
        assert other.json() == {"recorded": 0, "unknown": ["elsewhere"], "logged": 1}
        # A malformed item logs nothing at all.
        bad = client.post(f"/v2/models/{MODEL}/feedback", json={"feedback": [{"id": "x"}]})
        assert bad.status_code == 400
    # The app closed the log when it stopped: everything is on disk.
    assert log.counters.dropped == 0
    logged = read_log(tmp_path / "log", MODEL, *_window())
    assert sorted(logged["request_id"]) == ["req-1:0", "req-1:1", "req-1:2"]
    assert set(logged["version"]) == {stores.v1}
    assert list(logged.sort_values("request_id")["tenure"]) == list(frame["tenure"])
    assert len(predicted) == 3
    labels = read_labels(tmp_path / "log", MODEL, *_window())
    assert set(labels["request_id"]) == {"req-1:0", "req-1:1", "req-1:2", "elsewhere"}


def test_metrics_show_the_log_counters_and_monitoring_state(stores: Stores, tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path / "log")
    with TestClient(create_app(stores.metadata, stores.artifacts, inference_log=log)) as client:
        assert client.post(URL, json=infer_body(rows(1))).status_code == 200
        text = client.get("/metrics").text
    assert 'conveyor_inference_log_records_total{outcome="logged"} 1.0' in text
    assert "conveyor_inference_requests_total" in text  # the serving metrics are all still there


@pytest.mark.serial  # compares latencies: run alone, after the parallel part of `make test`
@pytest.mark.parametrize("backend", ["sqlite"])  # the store is not on the request path
def test_logging_leaves_serving_latency_unchanged(stores: Stores, tmp_path: Path) -> None:
    """The same requests, alternating between a server that logs and one that does not."""
    log = InferenceLogger(tmp_path / "log")
    body = infer_body(rows(1))
    timings: dict[bool, list[float]] = {True: [], False: []}
    with (
        TestClient(create_app(stores.metadata, stores.artifacts, inference_log=log)) as logged,
        TestClient(create_app(stores.metadata, stores.artifacts)) as plain,
    ):
        for _ in range(20):  # warm-up
            logged.post(URL, json=body)
            plain.post(URL, json=body)
        for _ in range(300):
            for on, client in ((True, logged), (False, plain)):
                started = time.perf_counter()
                assert client.post(URL, json=body).status_code == 200
                timings[on].append(time.perf_counter() - started)
    on, off = statistics.median(timings[True]), statistics.median(timings[False])
    print(f"median latency with logging {on * 1000:.2f} ms, without {off * 1000:.2f} ms")
    assert log.counters.written + log.counters.dropped >= 320
    # Unchanged within the noise of one machine: a logged request costs ~1 µs more.
    assert on <= off * 1.15 + 0.0005, (on, off)
