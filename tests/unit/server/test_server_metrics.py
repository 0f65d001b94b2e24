"""``GET /metrics``: real requests through the app, the exposition parsed as Prometheus does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.unit.server._support import MODEL, TestClient, expected_proba, infer_body, rows
from tests.unit.server.conftest import C1, two_versions

from conveyor.server import create_app
from conveyor.server.metrics import PREDICTION_BUCKETS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.unit.server.conftest import Stores

REQUESTS = "conveyor_inference_requests_total"
DURATION = "conveyor_inference_request_duration_seconds"
BATCH = "conveyor_inference_batch_size"
IN_FLIGHT = "conveyor_inference_requests_in_flight"
PREDICTION = "conveyor_inference_prediction"
ALLOWED_LABELS = {"model", "version", "status", "le"}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

    root = tmp_path_factory.mktemp("server_metrics")
    metadata = MetadataStore.open(f"sqlite:///{root / 'metadata.db'}")
    try:
        yield two_versions(metadata, LocalArtifactStore(root / "artifacts"))
    finally:
        metadata.close()


@pytest.fixture
def client(stores: Stores) -> Iterator[TestClient]:
    # A new app per test: each has its own registry, so every count starts at zero.
    with TestClient(create_app(stores.metadata, stores.artifacts)) as client:
        yield client


def _samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _infer(client: TestClient, body: Any, model: str = MODEL) -> int:
    return client.post(f"/v2/models/{model}/infer", json=body).status_code


def test_requests_are_counted_by_status(client: TestClient) -> None:
    assert [_infer(client, infer_body(rows(2))) for _ in range(3)] == [200, 200, 200]
    bad = infer_body(rows(1))
    bad["inputs"][0]["datatype"] = "BYTES"  # 'age' is FP64: the request does not fit
    assert _infer(client, bad) == 422
    not_json = client.post(f"/v2/models/{MODEL}/infer", content=b"{not json")
    assert not_json.status_code == 400

    samples = _samples(client)
    assert _value(samples, REQUESTS, model=MODEL, version="1", status="200") == 3
    assert _value(samples, REQUESTS, model=MODEL, version="1", status="422") == 1
    assert _value(samples, REQUESTS, model=MODEL, version="1", status="400") == 1
    assert _value(samples, f"{DURATION}_count", model=MODEL, version="1") == 5
    assert _value(samples, f"{DURATION}_bucket", model=MODEL, version="1", le="+Inf") == 5
    assert _value(samples, IN_FLIGHT, model=MODEL) == 0


def test_a_version_in_the_path_is_its_own_series(client: TestClient, stores: Stores) -> None:
    response = client.post(
        f"/v2/models/{MODEL}/versions/{stores.v2}/infer", json=infer_body(rows(1))
    )
    assert response.status_code == 200
    samples = _samples(client)
    assert _value(samples, REQUESTS, model=MODEL, version=str(stores.v2), status="200") == 1
    assert _value(samples, REQUESTS, model=MODEL, version="1", status="200") is None


def test_unknown_models_share_one_series(client: TestClient) -> None:
    for name in ("nope", "made-up-1", "made-up-2"):
        assert _infer(client, infer_body(rows(1)), model=name) == 404
    samples = _samples(client)
    assert _value(samples, REQUESTS, model="_unknown", version="", status="404") == 3
    names = {dict(labels).get("model") for _, labels in samples}
    assert not names & {"nope", "made-up-1", "made-up-2"}


def test_batch_size_counts_predict_calls(client: TestClient) -> None:
    # One request at a time: every predict call answers exactly one request.
    for n in (1, 4, 2):
        assert _infer(client, infer_body(rows(n))) == 200
    samples = _samples(client)
    assert _value(samples, f"{BATCH}_count", model=MODEL, version="1") == 3
    assert _value(samples, f"{BATCH}_sum", model=MODEL, version="1") == 3
    assert _value(samples, f"{BATCH}_bucket", model=MODEL, version="1", le="1.0") == 3


def test_prediction_histogram_holds_every_row(client: TestClient) -> None:
    frame = rows(40)
    assert _infer(client, infer_body(frame)) == 200
    proba = np.asarray(expected_proba(C1, frame))
    samples = _samples(client)
    assert _value(samples, f"{PREDICTION}_count", model=MODEL, version="1") == 40
    total = _value(samples, f"{PREDICTION}_sum", model=MODEL, version="1")
    assert total == pytest.approx(float(proba.sum()), abs=1e-9)
    for bound in PREDICTION_BUCKETS:
        observed = _value(samples, f"{PREDICTION}_bucket", model=MODEL, version="1", le=str(bound))
        assert observed == int((proba <= bound).sum()), bound
    assert _value(samples, f"{PREDICTION}_bucket", model=MODEL, version="1", le="+Inf") == 40


def test_only_requested_outputs_are_computed(client: TestClient) -> None:
    body = infer_body(rows(3), outputs=[{"name": "predict"}])
    response = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200
    assert [o["name"] for o in response.json()["outputs"]] == ["predict"]
    # No probability was computed, so none was observed.
    assert _value(_samples(client), f"{PREDICTION}_count", model=MODEL, version="1") is None


def test_labels_stay_low_cardinality(client: TestClient) -> None:
    for i in range(3):
        assert _infer(client, infer_body(rows(1), id=f"request-{i}")) == 200
    samples = _samples(client)
    for name, labels in samples:
        if name.startswith("conveyor_"):
            assert {key for key, _ in labels} <= ALLOWED_LABELS, name
            assert not any("request-" in value for _, value in labels), name


def test_exposition_content_type(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    assert families["conveyor_inference_requests"] == "counter"
    assert families[DURATION] == "histogram"
    assert families[BATCH] == "histogram"
    assert families[IN_FLIGHT] == "gauge"
    assert families[PREDICTION] == "histogram"


def test_apps_do_not_share_metrics(stores: Stores) -> None:
    with (
        TestClient(create_app(stores.metadata, stores.artifacts)) as first,
        TestClient(create_app(stores.metadata, stores.artifacts)) as second,
    ):
        assert _infer(first, infer_body(rows(1))) == 200
        assert _value(_samples(first), REQUESTS, model=MODEL, version="1", status="200") == 1
        assert _value(_samples(second), REQUESTS, model=MODEL, version="1", status="200") is None
