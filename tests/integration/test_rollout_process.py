"""Rollouts under real load on loopback: a real server process, client threads sending requests
the whole time, and the rollout controller ticking in this process as `conveyor deploy` does.

- A canary that fails requests is rolled back by its first analysis, and no client request
  fails (the stable version answers what the canary fails, and the switch drops nothing).
- A healthy canary, with the same (zero) error rate as stable, is promoted, not rolled back.
- A shadow that raises, hangs or is slow leaves every primary answer and the p99 unchanged.
- kill -9 of the server mid-rollout: the restarted server routes exactly as before.

The faulty versions are real bundles of :class:`tests.unit.server._faults.Faulty`, whose faults
fire only in the server process (``CONVEYOR_TEST_FAULTS=1`` there).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from tests.integration._processes import Load, start_server
from tests.unit.server._faults import ARMED, faulty_pipeline
from tests.unit.server._support import MODEL, estimator, infer_body, training_frame

from conveyor import registry
from conveyor.deploy import AnalysisSettings, list_incidents, parse_steps, read_routing
from conveyor.deploy import controller as ctl
from conveyor.server.dispatch import ROUTING_KEY_HEADER
from conveyor.store.metadata import MetadataStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.deploy import Rollout, TickOutcome
    from conveyor.store.artifacts import LocalArtifactStore

#: Request bodies of one varied row each (a prediction distribution, not a single point).
BODIES = [infer_body(training_frame(seed=1000 + i, rows=1)[0]) for i in range(400)]


def _post(client: httpx.Client, i: int) -> httpx.Response:
    return client.post(
        f"/v2/models/{MODEL}/infer",
        json=BODIES[i % len(BODIES)],
        headers={ROUTING_KEY_HEADER: f"user-{i % 997}"},
    )


def _register(
    store: MetadataStore, artifacts: LocalArtifactStore, model: Any, *, stage: str = "candidate"
) -> int:
    from conveyor.packaging import Model, build_bundle

    frame, _ = training_frame()
    bundle = build_bundle(
        artifacts, Model(estimator=model, input_example=frame.head(5)), name=MODEL, metrics={}
    )
    version, _ = registry.register_version(
        store, model=MODEL, artifact_digest=bundle.digest, metrics={}, run_id=None, actor="alice"
    )
    policy = registry.load_policy(None)
    for to in ("candidate", "production")[: 1 if stage == "candidate" else 2]:
        registry.promote(
            store, model=MODEL, version=version.version, to=to, policy=policy, actor="bob"
        )
    return version.version


def _promote(store: MetadataStore) -> Any:
    def promote(rollout: Rollout) -> None:
        registry.promote(
            store,
            model=MODEL,
            version=rollout.candidate_version,
            to="production",
            policy=registry.load_policy(None),
            actor="controller",
        )

    return promote


def _drive(store: MetadataStore, timeout: float) -> tuple[TickOutcome, list[TickOutcome]]:
    """Tick every 0.1 s, as `conveyor deploy` does, until the rollout ends."""
    seen: list[TickOutcome] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = ctl.tick(store, MODEL, promote=_promote(store))
        if outcome.action not in ("waiting", "raced"):
            seen.append(outcome)
        if outcome.action in ("failed", "succeeded"):
            return outcome, seen
        time.sleep(0.1)
    pytest.fail(f"the rollout did not end within {timeout} s: {[o.action for o in seen]}")


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[tuple[str, MetadataStore]]:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    store = MetadataStore.open(url)
    try:
        yield url, store
    finally:
        store.close()


def _start(
    store: MetadataStore, version: int, steps: str, settings: AnalysisSettings, **kw: Any
) -> Rollout:
    strategy = kw.pop("strategy", "canary")
    rollout, _ = ctl.start_rollout(
        store,
        model=MODEL,
        version=version,
        strategy=strategy,
        steps=parse_steps(strategy, steps),
        settings=settings,
        actor="deployer",
        **kw,
    )
    return rollout


@pytest.mark.serial  # timing-sensitive: run alone, after the parallel part of `make test`
def test_a_failing_canary_is_rolled_back_by_its_first_analysis_and_no_request_fails(
    tmp_path: Path, sqlite: tuple[str, MetadataStore], artifact_store: LocalArtifactStore
) -> None:
    url, store = sqlite
    stable = _register(store, artifact_store, estimator(1.0), stage="production")
    broken = _register(store, artifact_store, faulty_pipeline(1.0, error_rate=0.5))
    server = start_server(
        tmp_path, store_url=url, artifacts=artifact_store.root, extra_env={ARMED: "1"}
    )
    settings = AnalysisSettings(interval_s=2.0, min_requests=40)
    try:
        with httpx.Client(base_url=server.base_url) as client:
            server.wait_ready(client)
        with Load(server.base_url, _post) as load:
            load.wait_for(50)
            started = time.monotonic()
            _start(store, broken, "50,100", settings)
            outcome, seen = _drive(store, timeout=30)
            decided_after = time.monotonic() - started
            # Every replica follows the routing within its poll interval (0.1 s here).
            assert load.converge(str(stable)) < 10
            served_before = load.count()
            load.wait_for(200)  # traffic goes on through the switch back
            after = load.versions[served_before:]
    finally:
        server.stop()
    assert outcome.action == "failed", [o.message for o in seen]
    assert [o.action for o in seen] == ["failed"]  # the first analysis decided
    assert decided_after < 2 * settings.interval_s
    assert "canary error rate" in outcome.message
    assert load.failures == []
    assert set(after) == {str(stable)}
    assert not read_routing(store)[MODEL].active
    with store.read() as conn:
        incidents = list_incidents(conn, model=MODEL)
    assert len(incidents) == 1
    evidence = incidents[0].evidence["analysis"]
    assert evidence["verdict"] == "fail"
    assert evidence["candidate_requests"] >= settings.min_requests
    assert registry.production_version(store, MODEL).version == stable  # type: ignore[union-attr]
    assert "Traceback" not in server.log_text()


@pytest.mark.serial  # timing-sensitive: run alone, after the parallel part of `make test`
def test_a_healthy_canary_with_the_same_error_rate_is_promoted(
    tmp_path: Path, sqlite: tuple[str, MetadataStore], artifact_store: LocalArtifactStore
) -> None:
    url, store = sqlite
    _register(store, artifact_store, estimator(1.0), stage="production")
    healthy = _register(store, artifact_store, estimator(0.8))
    server = start_server(tmp_path, store_url=url, artifacts=artifact_store.root)
    # What this test looks at is the error rate: latency margins are widened so that CPU noise
    # on a shared 2-core machine cannot decide it (the latency check has unit tests).
    settings = AnalysisSettings(interval_s=1.0, min_requests=100, max_latency_increase=2.0)
    try:
        with httpx.Client(base_url=server.base_url) as client:
            server.wait_ready(client)
        with Load(server.base_url, _post) as load:
            _start(store, healthy, "50,100", settings)
            outcome, seen = _drive(store, timeout=90)
            assert load.converge(str(healthy)) < 10
            served_before = load.count()
            load.wait_for(100)
            after = load.versions[served_before:]
    finally:
        server.stop()
    assert outcome.action == "succeeded", [(o.action, o.message) for o in seen]
    assert all(o.action != "failed" for o in seen)
    assert load.failures == []
    assert registry.production_version(store, MODEL).version == healthy  # type: ignore[union-attr]
    assert set(after) == {str(healthy)}


@pytest.mark.serial  # timing-sensitive: run alone, after the parallel part of `make test`
def test_a_shadow_that_raises_hangs_or_is_slow_leaves_primary_answers_and_p99_alone(
    tmp_path: Path, sqlite: tuple[str, MetadataStore], artifact_store: LocalArtifactStore
) -> None:
    url, store = sqlite
    stable = _register(store, artifact_store, estimator(1.0), stage="production")
    shadows = {
        "raises": _register(store, artifact_store, faulty_pipeline(1.0, error_rate=1.0)),
        "hangs": _register(store, artifact_store, faulty_pipeline(1.0, hang_s=5.0)),
        "slow": _register(store, artifact_store, faulty_pipeline(1.0, delay_s=0.3)),
    }
    server = start_server(
        tmp_path, store_url=url, artifacts=artifact_store.root, extra_env={ARMED: "1"}
    )
    settings = AnalysisSettings(interval_s=600)  # analysis is not what this test looks at
    p99: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.base_url) as client:
            server.wait_ready(client)
            with Load(server.base_url, _post, threads=4) as load:
                load.wait_for(100)  # warm up
                mark = load.count()
                load.wait_for(400)
                p99["none"] = float(np.quantile(load.latencies[mark:], 0.99))
                for kind, version in shadows.items():
                    _start(store, version, "", settings, strategy="shadow", shadow_sample=1.0)
                    _wait_mirrored(client, version)
                    mark = load.count()
                    load.wait_for(400)
                    p99[kind] = float(np.quantile(load.latencies[mark:], 0.99))
                    assert _mirrored(client, version) > 0
    finally:
        server.stop()
    assert load.failures == []
    assert set(load.versions) == {str(stable)}
    for kind in shadows:
        # 2 cores shared with the load threads: a margin for noise, far below the 0.3 s
        # a slow shadow would add, or the 5 s of a hung one, if either reached the response.
        assert p99[kind] <= 1.5 * p99["none"] + 0.03, p99


def _mirrored(client: httpx.Client, version: int) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("conveyor_inference_shadow_requests_total{") and (
            f'version="{version}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_mirrored(client: httpx.Client, version: int) -> None:
    deadline = time.monotonic() + 10
    while _mirrored(client, version) == 0:
        if time.monotonic() > deadline:
            pytest.fail(f"v{version} was not mirrored to within 10 s")
        time.sleep(0.05)


def test_kill_9_mid_rollout_then_restart_routes_the_same(
    tmp_path: Path, store_url: str, artifact_store: LocalArtifactStore
) -> None:
    store = MetadataStore.open(store_url)
    try:
        stable = _register(store, artifact_store, estimator(1.0), stage="production")
        canary = _register(store, artifact_store, estimator(0.8))
        first = start_server(tmp_path, store_url=store_url, artifacts=artifact_store.root)
        keys = [f"user-{i}" for i in range(60)]
        with httpx.Client(base_url=first.base_url) as client:
            first.wait_ready(client)
            started = time.monotonic()
            _start(store, canary, "40,100", AnalysisSettings(interval_s=600))
            while {_version(client, k) for k in keys} != {stable, canary}:
                assert time.monotonic() - started < 5, "the server did not converge in 5 s"
                time.sleep(0.05)
            before = {k: _version(client, k) for k in keys}
        first.proc.kill()  # SIGKILL: no shutdown of any kind
        first.proc.wait()
        second = start_server(
            tmp_path, store_url=store_url, artifacts=artifact_store.root, log_name="again.log"
        )
        try:
            with httpx.Client(base_url=second.base_url) as client:
                second.wait_ready(client)
                after = {k: _version(client, k) for k in keys}
        finally:
            second.stop()
        assert after == before
        with store.read() as conn:
            rollout = ctl.state.active_rollout(conn, MODEL)
        assert rollout is not None
        assert rollout.phase == "progressing"
    finally:
        store.close()


def _version(client: httpx.Client, key: str) -> int:
    response = client.post(
        f"/v2/models/{MODEL}/infer", json=BODIES[0], headers={ROUTING_KEY_HEADER: key}
    )
    assert response.status_code == 200, response.text
    return int(response.headers["x-conveyor-model-version"])
