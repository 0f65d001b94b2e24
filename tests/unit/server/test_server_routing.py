"""Canary and shadow routing in the server: sticky weighted split, fallback to stable when a
canary fails, shadows that fail or hang without touching the primary answer, feedback, and
routing that survives a restart (it lives in the metadata store)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest
from tests.unit.server._faults import ARMED, faulty_pipeline
from tests.unit.server._support import (
    MODEL,
    TestClient,
    expected_proba,
    infer_body,
    rows,
    training_frame,
    wait_for,
)
from tests.unit.server.conftest import C1, C2, POLL, two_versions

from conveyor import registry
from conveyor.deploy.state import write_routing
from conveyor.server import create_app
from conveyor.server.dispatch import ROUTING_KEY_HEADER

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.unit.server.conftest import Stores

    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

KEYS = [f"user-{i}" for i in range(120)]


@pytest.fixture
def stores(sqlite_store: MetadataStore, artifact_store: LocalArtifactStore) -> Stores:
    """On SQLite alone: routing happens in memory; the stored routing and the rollouts are
    tested on both backends in tests/unit/deploy."""
    return two_versions(sqlite_store, artifact_store)


@pytest.fixture
def client(stores: Stores) -> Iterator[TestClient]:
    with TestClient(create_app(stores.metadata, stores.artifacts, poll_interval=POLL)) as client:
        yield client


@contextlib.contextmanager
def _quiet_app(stores: Stores) -> Iterator[TestClient]:
    """A server that reads the routing at startup and then never polls nor writes its windows
    (for a minute), so a test can read its in-memory telemetry undisturbed."""
    with TestClient(create_app(stores.metadata, stores.artifacts, poll_interval=60)) as client:
        yield client


def _route(store: MetadataStore, **routing: Any) -> None:
    with store.write("test") as tx:
        write_routing(tx.conn, model=MODEL, at=tx.at, **routing)


def _candidate(stores: Stores, version: int | None = None) -> int:
    version = version or stores.v2
    policy = registry.load_policy(None)
    registry.promote(
        stores.metadata, model=MODEL, version=version, to="candidate", policy=policy, actor="t"
    )
    return version


def _register_faulty(stores: Stores, **faults: float) -> int:
    from conveyor.packaging import Model, build_bundle

    frame, _ = training_frame()
    bundle = build_bundle(
        stores.artifacts,
        Model(estimator=faulty_pipeline(**faults), input_example=frame.head(5)),
        name=MODEL,
        metrics={},
    )
    version, _ = registry.register_version(
        stores.metadata,
        model=MODEL,
        artifact_digest=bundle.digest,
        metrics={},
        run_id=None,
        actor="alice",
    )
    return version.version


def _infer(client: TestClient, key: str | None = None, n: int = 1) -> Any:
    headers = {ROUTING_KEY_HEADER: key} if key else {}
    response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(n)), headers=headers)
    assert response.status_code == 200, response.text
    return response


def _version_of(client: TestClient, key: str | None = None) -> int:
    return int(_infer(client, key).headers["x-conveyor-model-version"])


def _wait_canary(client: TestClient, version: int) -> None:
    wait_for(
        lambda: (
            client.app.state.repository.route(MODEL).canary is not None  # type: ignore[attr-defined]
            and client.app.state.repository.route(MODEL).canary.version == version
        ),  # type: ignore[attr-defined]
        what=f"canary v{version} to be routed",
    )


def test_sticky_keys_keep_their_version_and_stay_on_the_canary_as_it_grows(
    client: TestClient, stores: Stores
) -> None:
    v2 = _candidate(stores)
    _route(stores.metadata, canary_version=v2, canary_weight=30)
    _wait_canary(client, v2)
    first = {key: _version_of(client, key) for key in KEYS}
    assert {key: _version_of(client, key) for key in KEYS} == first  # sticky
    on_canary = {key for key, v in first.items() if v == v2}
    # 120 keys at 30%: 36 expected, sd 5; outside 16..56 would mean the split is wrong.
    assert 16 < len(on_canary) < 56
    _route(stores.metadata, canary_version=v2, canary_weight=60)
    wait_for(
        lambda: client.app.state.repository.route(MODEL).canary_weight == 60,  # type: ignore[attr-defined]
        what="the weight to grow",
    )
    grown = {key for key in KEYS if _version_of(client, key) == v2}
    assert on_canary <= grown
    assert len(grown) > len(on_canary)
    # The canary answers with its own model.
    frame = rows(2)
    key = next(iter(on_canary))
    answer = client.post(
        f"/v2/models/{MODEL}/infer", json=infer_body(frame), headers={ROUTING_KEY_HEADER: key}
    ).json()
    assert answer["outputs"][1]["data"] == pytest.approx(expected_proba(C2, frame))


def test_without_a_key_requests_split_by_weight(client: TestClient, stores: Stores) -> None:
    v2 = _candidate(stores)
    _route(stores.metadata, canary_version=v2, canary_weight=50)
    _wait_canary(client, v2)
    versions = [_version_of(client) for _ in range(200)]
    # Binomial(200, 0.5): mean 100, sd ~7.1.
    assert 70 < versions.count(v2) < 130
    assert set(versions) == {stores.v1, v2}


def test_a_failing_canary_never_fails_a_client_request(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _candidate(stores, _register_faulty(stores, error_rate=1.0))
    monkeypatch.setenv(ARMED, "1")
    _route(stores.metadata, canary_version=broken, canary_weight=100)
    frame = rows(3)
    with _quiet_app(stores) as client:
        for _ in range(20):
            response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(frame))
            assert response.status_code == 200, response.text
            assert response.headers["x-conveyor-model-version"] == str(stores.v1)
            data = response.json()["outputs"][1]["data"]
            assert data == pytest.approx(expected_proba(C1, frame))
        recorder = client.app.state.recorder  # type: ignore[attr-defined]
        canary = recorder.telemetry(MODEL, broken, "live").snapshot_and_reset()
        stable = recorder.telemetry(MODEL, stores.v1, "live").snapshot_and_reset()
        metrics = client.get("/metrics").text
    assert (canary.requests, canary.server_errors) == (20, 20)
    assert (stable.requests, stable.server_errors) == (20, 0)
    assert (
        f'conveyor_inference_canary_fallbacks_total{{model="{MODEL}",version="{broken}"}} 20.0'
        in metrics
    )


def test_a_bad_request_is_the_clients_fault_on_either_version(stores: Stores) -> None:
    v2 = _candidate(stores)
    _route(stores.metadata, canary_version=v2, canary_weight=100)
    body = infer_body(rows(1))
    body["inputs"][0]["data"] = ["not a number"]
    with _quiet_app(stores) as client:
        response = client.post(f"/v2/models/{MODEL}/infer", json=body)
        assert response.status_code == 422
        canary = client.app.state.recorder.telemetry(MODEL, v2, "live").snapshot_and_reset()  # type: ignore[attr-defined]
    assert (canary.client_errors, canary.server_errors) == (1, 0)


@pytest.mark.serial  # timing-sensitive: run alone, after the parallel part of `make test`
@pytest.mark.parametrize("fault", [{"error_rate": 1.0}, {"hang_s": 3.0}])
def test_a_shadow_that_fails_or_hangs_leaves_primary_answers_alone(
    client: TestClient, stores: Stores, monkeypatch: pytest.MonkeyPatch, fault: dict[str, float]
) -> None:
    # A short timeout makes the hang quick to see; a raising shadow must never count as slow,
    # however busy the machine.
    timeout = 0.5 if "hang_s" in fault else 30.0
    monkeypatch.setattr("conveyor.server.dispatch.SHADOW_TIMEOUT_S", timeout)
    shadow = _candidate(stores, _register_faulty(stores, **fault))
    monkeypatch.setenv(ARMED, "1")
    _route(stores.metadata, shadow_version=shadow, shadow_sample=1.0)
    wait_for(
        lambda: client.app.state.repository.route(MODEL).shadow is not None,  # type: ignore[attr-defined]
        what="the shadow to be routed",
    )
    frame = rows(2)
    for _ in range(10):
        response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(frame))
        assert response.status_code == 200
        assert response.headers["x-conveyor-model-version"] == str(stores.v1)
        assert response.json()["outputs"][1]["data"] == pytest.approx(expected_proba(C1, frame))
    outcome = "error" if "error_rate" in fault else "timeout"
    line = (
        "conveyor_inference_shadow_requests_total"
        f'{{model="{MODEL}",outcome="{outcome}",version="{shadow}"}}'
    )
    wait_for(lambda: f"{line} 10.0" in client.get("/metrics").text, what=f"10 shadow {outcome}s")


def test_a_healthy_shadow_is_compared_with_the_primary(stores: Stores) -> None:
    from conveyor.deploy.telemetry import WindowSummary

    v2 = _candidate(stores)
    _route(stores.metadata, shadow_version=v2, shadow_sample=1.0)
    frame = rows(4)
    summaries: list[WindowSummary] = []
    with _quiet_app(stores) as client:
        for _ in range(5):
            assert _infer(client, n=4).headers["x-conveyor-model-version"] == str(stores.v1)
        telemetry = client.app.state.recorder.telemetry(MODEL, v2, "shadow")  # type: ignore[attr-defined]

        def five_compared() -> bool:
            summary = telemetry.snapshot_and_reset()
            if summary is not None:
                summaries.append(summary)
            return sum(s.shadow_comparisons for s in summaries) == 5

        wait_for(five_compared, what="five shadow comparisons")
    merged = WindowSummary.merge(summaries)
    expected = sum(
        abs(a - b)
        for a, b in zip(expected_proba(C1, frame), expected_proba(C2, frame), strict=True)
    ) / len(frame)
    assert merged.shadow_diff_sample == pytest.approx([expected] * 5)
    assert merged.shadow_errors == merged.shadow_timeouts == 0
    labels_1 = [p > 0.5 for p in expected_proba(C1, frame)]
    labels_2 = [p > 0.5 for p in expected_proba(C2, frame)]
    assert merged.shadow_agreements == (5 if labels_1 == labels_2 else 0)


def test_feedback_is_joined_to_the_answer_it_judges(stores: Stores) -> None:
    with _quiet_app(stores) as client:
        response = _infer(client, n=3)
        request_id = response.headers["x-request-id"]
        assert response.json()["id"] == request_id
        predicted = response.json()["outputs"][0]["data"]
        labels = [predicted[0], 1 - predicted[1], predicted[2]]
        recorded = client.post(
            f"/v2/models/{MODEL}/feedback", json={"id": request_id, "label": labels}
        )
        assert recorded.status_code == 200, recorded.text
        assert recorded.json() == {"recorded": 3, "unknown": []}
        recorder = client.app.state.recorder  # type: ignore[attr-defined]
        summary = recorder.telemetry(MODEL, stores.v1, "live").snapshot_and_reset()
        assert (summary.labels, summary.correct) == (3, 2)
        unknown = client.post(f"/v2/models/{MODEL}/feedback", json={"id": "nope", "label": 1})
        assert unknown.status_code == 404
        assert "nope" in unknown.json()["error"]
        wrong = client.post(f"/v2/models/{MODEL}/feedback", json={"id": request_id, "label": [1]})
        assert wrong.status_code == 422
        assert "3 rows" in wrong.json()["error"]
        malformed = client.post(f"/v2/models/{MODEL}/feedback", json={"labels": 1})
        assert malformed.status_code == 400
        no_model = client.post("/v2/models/nope/feedback", json={"id": request_id, "label": 1})
        assert no_model.status_code == 404


def test_a_restarted_server_resumes_the_stored_routing(stores: Stores) -> None:
    v2 = _candidate(stores)
    _route(stores.metadata, canary_version=v2, canary_weight=40)
    seen = []
    for _ in range(2):  # two server lifetimes on the same store
        with TestClient(
            create_app(stores.metadata, stores.artifacts, poll_interval=POLL)
        ) as client:
            seen.append({key: _version_of(client, key) for key in KEYS[:50]})
    assert seen[0] == seen[1]
    assert set(seen[0].values()) == {stores.v1, v2}


def test_windows_are_stored_only_for_models_in_a_rollout(
    client: TestClient, stores: Stores
) -> None:
    app_state = client.app.state  # type: ignore[attr-defined]
    _infer(client)
    assert app_state.recorder.flush(stores.metadata, app_state.repository.routed_models()) == 0
    v2 = _candidate(stores)
    _route(stores.metadata, canary_version=v2, canary_weight=50)
    _wait_canary(client, v2)
    for key in KEYS[:40]:
        _infer(client, key)

    def stored() -> int:
        windows = read_windows_of(stores.metadata)
        return sum(w["requests"] for ws in windows.values() for w in ws)

    wait_for(lambda: stored() >= 40, what="the server to write its windows")
    windows = read_windows_of(stores.metadata)
    assert {role for _, role in windows} == {"live"}
    assert {version for version, _ in windows} == {stores.v1, v2}


def read_windows_of(store: MetadataStore) -> dict[tuple[int, str], list[dict[str, Any]]]:
    import datetime as dt

    from conveyor.deploy.state import read_windows

    with store.read() as conn:
        return read_windows(conn, MODEL, since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


def test_a_store_outage_keeps_the_last_routing(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from conveyor.core.errors import InfrastructureError
    from conveyor.server import repository

    v2 = _candidate(stores)
    _route(stores.metadata, canary_version=v2, canary_weight=50)
    real = repository.read_routing
    down = threading.Event()
    polls = threading.Semaphore(0)

    def read_routing(store: Any) -> Any:
        if down.is_set():
            polls.release()
            raise InfrastructureError("metadata store is unavailable: connection refused")
        return real(store)

    monkeypatch.setattr(repository, "read_routing", read_routing)
    with TestClient(create_app(stores.metadata, stores.artifacts, poll_interval=POLL)) as client:
        before = {key: _version_of(client, key) for key in KEYS[:40]}
        down.set()
        for _ in range(3):  # three polls failed while requests go on
            assert polls.acquire(timeout=15)
        assert {key: _version_of(client, key) for key in KEYS[:40]} == before
        assert client.get("/v2/health/ready").status_code == 200
    assert set(before.values()) == {stores.v1, v2}
