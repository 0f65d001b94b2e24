"""The server logs every answered request for monitoring, and labels sent as feedback (issue 10).

What logging costs a real server under load is measured by bench row 5 (``5j``), with logging on
and off side by side, not here."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from tests.unit.monitoring._monitoring_support import StalledLog
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
    in_order = logged.sort_values("request_id")
    for column in ("age", "tenure", "plan"):
        assert list(in_order[column]) == list(frame[column]), column
    assert list(in_order["prediction"]) == predicted
    labels = read_labels(tmp_path / "log", MODEL, *_window())
    assert set(labels["request_id"]) == {"req-1:0", "req-1:1", "req-1:2", "elsewhere"}


def test_metrics_show_the_log_counters_and_monitoring_state(stores: Stores, tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path / "log")
    with TestClient(create_app(stores.metadata, stores.artifacts, inference_log=log)) as client:
        assert client.post(URL, json=infer_body(rows(1))).status_code == 200
        text = client.get("/metrics").text
    assert 'conveyor_inference_log_records_total{outcome="logged"} 1.0' in text
    assert "conveyor_inference_requests_total" in text  # the serving metrics are all still there


def test_the_log_follows_conveyor_yaml(tmp_path: Path) -> None:
    from conveyor.core.config import load_config
    from conveyor.core.errors import ConfigError
    from conveyor.server.serve import _inference_log

    assert _inference_log(load_config(tmp_path), None) is None  # off by default
    (tmp_path / "conveyor.yaml").write_text(
        "monitoring:\n  log:\n    enabled: true\n    sample_rate: 0.5\n    retention_days: 7\n"
    )
    log = _inference_log(load_config(tmp_path), None)
    assert log is not None
    try:
        assert (log.root, log.sample_rate) == (tmp_path / ".conveyor/inference-log", 0.5)
        assert log.retention == dt.timedelta(days=7)
    finally:
        log.close()
    assert _inference_log(load_config(tmp_path), 3) is None  # a pinned version logs nothing
    (tmp_path / "conveyor.yaml").write_text("monitoring:\n  log:\n    retention_days: 0\n")
    with pytest.raises(ConfigError, match="retention_days"):
        load_config(tmp_path)


def test_a_stalled_log_never_holds_up_an_answer(stores: Stores, tmp_path: Path) -> None:
    log = StalledLog(tmp_path / "log", queue_size=5)
    app = create_app(stores.metadata, stores.artifacts, inference_log=log)
    body = infer_body(rows(1))
    try:
        with TestClient(app) as client:
            assert client.post(URL, json=body).status_code == 200
            log.flush(timeout=0)  # the writer takes that record and hangs writing it
            assert log.entered.wait(10)
            # Had serving waited on the log, the first of these would never be answered.
            statuses = [client.post(URL, json=body).status_code for _ in range(30)]
            assert statuses == [200] * 30
            counters = log.counters
            assert (counters.logged, counters.dropped) == (6, 25)  # 1, then a full buffer
            log.release.set()
    finally:
        log.release.set()
    assert log.counters.written == 6
