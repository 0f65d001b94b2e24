"""Serving telemetry windows: written for the models in a rollout only, and kept through a store
outage until a later flush can write them."""

from __future__ import annotations

import datetime as dt

import numpy as np

from conveyor.deploy.state import read_windows
from conveyor.deploy.telemetry import WindowSummary
from conveyor.server.recorder import ServingRecorder
from conveyor.store.metadata import MetadataStore

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _stored(store: MetadataStore, model: str) -> dict[tuple[int, str], list[WindowSummary]]:
    with store.read() as conn:
        found = read_windows(conn, model, since=EPOCH)
    return {key: [WindowSummary.from_json(s) for s in rows] for key, rows in found.items()}


def test_windows_of_models_outside_a_rollout_are_dropped(sqlite_store: MetadataStore) -> None:
    recorder = ServingRecorder(replica="r1")
    recorder.telemetry("churn", 1, "live").record_request(0.01, 200)
    recorder.telemetry("fraud", 4, "live").record_request(0.02, 500)
    assert recorder.flush(sqlite_store, models={"fraud"}) == 1
    assert _stored(sqlite_store, "churn") == {}
    (window,) = _stored(sqlite_store, "fraud")[(4, "live")]
    assert (window.requests, window.server_errors) == (1, 1)
    # Nothing new recorded: nothing to write.
    assert recorder.flush(sqlite_store, models={"fraud"}) == 0


def test_a_store_outage_keeps_the_windows_for_the_next_flush(sqlite_store: MetadataStore) -> None:
    # A real, unreachable PostgreSQL: nothing listens on port 1 of loopback.
    down = MetadataStore.open(
        "postgresql+psycopg://conveyor:x@127.0.0.1:1/none?connect_timeout=2", migrate=False
    )
    recorder = ServingRecorder(replica="r1")
    telemetry = recorder.telemetry("churn", 2, "live")
    for latency in (0.01, 0.02, 0.03):
        telemetry.record_request(latency, 200)
    telemetry.record_predictions(np.array([0.1, 0.9]))
    try:
        assert recorder.flush(down, models={"churn"}) == 0
    finally:
        down.close()
    telemetry.record_request(0.04, 200)  # a second window, recorded during the outage
    assert recorder.flush(sqlite_store, models={"churn"}) == 2
    windows = _stored(sqlite_store, "churn")[(2, "live")]
    merged = WindowSummary.merge(windows)
    assert merged.requests == 4
    assert merged.predictions == 2
    assert sorted(merged.latency_sample) == [0.01, 0.02, 0.03, 0.04]
