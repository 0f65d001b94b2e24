"""Hot swap and availability: promote and roll back under load, bad bundles, a store down."""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import pytest
from tests.unit.server._support import (
    MODEL,
    TestClient,
    expected_proba,
    infer_body,
    promote,
    register,
    rollback,
    rows,
    wait_for,
)
from tests.unit.server.conftest import C1, C2, POLL

from conveyor import registry
from conveyor.core.errors import InfrastructureError
from conveyor.server import create_app

if TYPE_CHECKING:
    from tests.unit.server.conftest import Stores

    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore


def _version(client: TestClient) -> str:
    response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(1)))
    assert response.status_code == 200, response.text
    version: str = response.json()["model_version"]
    return version


def _answers_with(client: TestClient, version: int) -> bool:
    return _version(client) == str(version)


def test_promote_and_rollback_switch_the_answering_version(
    client: TestClient, stores: Stores
) -> None:
    frame = rows(4)
    assert _version(client) == "1"

    promote(stores.metadata, stores.v2)
    wait_for(lambda: _answers_with(client, stores.v2), what="v2 to answer after promote")
    answer = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(frame)).json()
    assert answer["outputs"][1]["data"] == pytest.approx(expected_proba(C2, frame))

    rollback(stores.metadata)
    wait_for(lambda: _answers_with(client, stores.v1), what="v1 to answer after rollback")
    answer = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(frame)).json()
    assert answer["outputs"][1]["data"] == pytest.approx(expected_proba(C1, frame))


def test_no_request_fails_during_swaps(client: TestClient, stores: Stores) -> None:
    failures: list[str] = []
    seen: list[list[str]] = [[] for _ in range(4)]
    stop = threading.Event()

    def hammer(index: int) -> None:
        while not stop.is_set():
            response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(2)))
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text}")
                return
            seen[index].append(response.json()["model_version"])

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        promote(stores.metadata, stores.v2)
        wait_for(lambda: bool(seen[0]) and seen[0][-1] == str(stores.v2), what="v2")
        rollback(stores.metadata)
        wait_for(lambda: seen[0][-1] == str(stores.v1), what="v1 again")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == []
    assert all(len(s) > 0 for s in seen)
    assert {v for s in seen for v in s} == {"1", "2"}


def test_model_without_production_version_is_404_with_a_hint(
    metadata_store: MetadataStore, artifact_store: LocalArtifactStore
) -> None:
    register(metadata_store, artifact_store, c=C1)
    with TestClient(create_app(metadata_store, artifact_store, models=[MODEL])) as client:
        response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(1)))
        assert response.status_code == 404
        message = response.json()["error"]
        assert "has no production version" in message
        assert "promote a version to production" in message
        # Asked to serve it, but it cannot: not ready.
        assert client.get("/v2/health/ready").status_code == 503
        # An explicit version is served all the same.
        assert (
            client.post(f"/v2/models/{MODEL}/versions/1/infer", json=infer_body(rows(1))).json()[
                "model_version"
            ]
            == "1"
        )


def test_with_no_model_in_production_the_server_serves_nothing(
    metadata_store: MetadataStore, artifact_store: LocalArtifactStore
) -> None:
    register(metadata_store, artifact_store, c=C1)
    with TestClient(create_app(metadata_store, artifact_store, poll_interval=POLL)) as client:
        assert client.get(f"/v2/models/{MODEL}").status_code == 404
        promote(metadata_store, 1)
        wait_for(lambda: client.get(f"/v2/models/{MODEL}").status_code == 200, what="serving v1")
        assert client.get("/v2/health/ready").json() == {"ready": True}


def test_model_not_served_here_is_404(stores: Stores) -> None:
    with TestClient(create_app(stores.metadata, stores.artifacts, models=["other"])) as client:
        response = client.get(f"/v2/models/{MODEL}")
        assert response.status_code == 404
        assert "is not served here" in response.json()["error"]
        # "other" does not exist, so this server cannot be ready.
        assert client.get("/v2/health/ready").status_code == 503


def _corrupt_model_file(stores: Stores, version: int) -> None:
    """Overwrite some bytes of the largest file of ``version``'s bundle (its model)."""
    ref = max(stores.bundles[version].files.values(), key=lambda r: r.size)
    path = stores.artifacts.location(ref.digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(10)
        fh.write(b"corrupted!")


def test_corrupt_new_version_keeps_the_old_one_serving(
    client: TestClient, stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    _corrupt_model_file(stores, stores.v2)
    with caplog.at_level(logging.ERROR, logger="conveyor.server"):
        promote(stores.metadata, stores.v2)
        wait_for(
            lambda: any("could not be loaded" in r.getMessage() for r in caplog.records),
            what="the failed load to be logged",
        )
    assert _version(client) == "1"
    assert client.get("/v2/health/ready").status_code == 200
    message = next(
        r.getMessage() for r in caplog.records if "could not be loaded" in r.getMessage()
    )
    assert f"{MODEL}' v{stores.v2}" in message
    assert "still serving v1" in message


def test_corrupt_production_version_at_start_is_503(stores: Stores) -> None:
    _corrupt_model_file(stores, stores.v1)
    with TestClient(create_app(stores.metadata, stores.artifacts)) as client:
        assert client.get("/v2/health/ready").json() == {"ready": False}
        assert client.get("/v2/health/ready").status_code == 503
        response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(1)))
        assert response.status_code == 503
        assert "could not be loaded" in response.json()["error"]
        ready = client.get(f"/v2/models/{MODEL}/ready")
        assert ready.status_code == 503
        assert ready.json() == {"name": MODEL, "ready": False}
        # Explicitly asking for the corrupt version: its integrity error, also 503.
        assert client.get(f"/v2/models/{MODEL}/versions/{stores.v1}").status_code == 503
        # The other, intact version still answers when asked for by number.
        assert client.get(f"/v2/models/{MODEL}/versions/{stores.v2}").status_code == 200


def test_store_down_at_start_is_not_ready_then_recovers(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = registry.routing_token
    down = threading.Event()
    down.set()

    def routing_token(store: Any) -> int:
        if down.is_set():
            raise InfrastructureError("metadata store is unavailable: connection refused")
        return real(store)

    monkeypatch.setattr(registry, "routing_token", routing_token)
    app = create_app(stores.metadata, stores.artifacts, poll_interval=POLL)
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").status_code == 503
        response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(1)))
        assert response.status_code == 503
        assert "not loaded yet" in response.json()["error"]
        assert client.get("/v2/health/live").status_code == 200
        down.clear()
        wait_for(lambda: client.get("/v2/health/ready").status_code == 200, what="recovery")
        assert _version(client) == "1"


def test_unexpected_error_is_a_logged_500(
    stores: Stores, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(stores.metadata, stores.artifacts)
    with TestClient(app, raise_server_exceptions=False) as client:
        served = app.state.repository.production(MODEL)

        def broken(frame: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr(served.model, "predict", broken)
        with caplog.at_level(logging.ERROR, logger="conveyor.server"):
            response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(1)))
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal server error (a bug in Conveyor; see the server log)"
    }
    assert any("RuntimeError('boom')" in r.getMessage() for r in caplog.records)


def test_explicit_versions_are_cached(client: TestClient, stores: Stores) -> None:
    repository = client.app.state.repository  # type: ignore[attr-defined]
    assert repository.cached_version(MODEL, stores.v2) is None
    url = f"/v2/models/{MODEL}/versions/{stores.v2}/infer"
    assert client.post(url, json=infer_body(rows(1))).status_code == 200
    first = repository.cached_version(MODEL, stores.v2)
    assert first is not None
    assert client.post(url, json=infer_body(rows(1))).status_code == 200
    assert repository.cached_version(MODEL, stores.v2) is first
    # The production version is never loaded twice.
    assert repository.cached_version(MODEL, stores.v1) is repository.production(MODEL)


def test_explicit_versions_cache_evicts_the_least_recently_used(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.server import repository as repository_module

    v3, _ = register(stores.metadata, stores.artifacts, c=0.1)
    monkeypatch.setattr(repository_module, "VERSION_CACHE_SIZE", 1)
    app = create_app(stores.metadata, stores.artifacts)
    with TestClient(app) as client:
        repository = app.state.repository
        for version in (stores.v2, v3):
            url = f"/v2/models/{MODEL}/versions/{version}/infer"
            assert client.post(url, json=infer_body(rows(1))).json()["model_version"] == str(
                version
            )
        assert repository.cached_version(MODEL, v3) is not None
        assert repository.cached_version(MODEL, stores.v2) is None


def test_a_burst_for_one_version_loads_it_once(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.server.repository import ServedModel

    loads: list[int] = []
    real = ServedModel.load.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ServedModel], artifacts: Any, version: Any) -> ServedModel:
        loads.append(version.version)
        served: ServedModel = real(cls, artifacts, version)
        return served

    monkeypatch.setattr(ServedModel, "load", classmethod(counting))
    app = create_app(stores.metadata, stores.artifacts)
    with TestClient(app) as client:
        assert loads == [stores.v1]  # the production version, at startup
        url = f"/v2/models/{MODEL}/versions/{stores.v2}/infer"
        statuses: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: statuses.append(
                    client.post(url, json=infer_body(rows(1))).status_code
                )
            )
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert statuses == [200] * 6
    assert loads == [stores.v1, stores.v2]
