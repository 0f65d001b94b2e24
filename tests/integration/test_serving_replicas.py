"""Three ``conveyor serve`` processes on one PostgreSQL store agree on routing within seconds.

Each replica polls the store for the routing state (every 0.1 s here, ``serve.poll_interval``);
none talks to another. This process changes the routing as an operator would: it promotes a
version, starts a 50% canary with :func:`conveyor.deploy.start_rollout`, then aborts it. After
each change the test polls every replica, with a deadline, until all three answer alike:

- after a promotion, every answer of every replica comes from the new version;
- during the canary, the model metadata of every replica lists the canary, and each of 40
  routing keys is sent to the same version by all three (a key's side is a hash, not a draw),
  with both versions in use;
- after the abort, all are back on the stable version.

The database is this file's own, created fresh.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pytest
from tests.integration._processes import Server, start_server
from tests.integration.test_store_migrate_retry import fresh_database
from tests.unit.server._support import MODEL, infer_body, promote, register, rows

from conveyor import deploy, registry
from conveyor.server.dispatch import ROUTING_KEY_HEADER
from conveyor.store.artifacts import LocalArtifactStore
from conveyor.store.metadata import MetadataStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

# Three server processes and their timing: run alone, after the parallel part of `make test`.
pytestmark = pytest.mark.postgres

DATABASE = "conveyor_scale_replicas"
REPLICAS = 3
#: How long the replicas may take to agree after a change (they poll every 0.1 s).
AGREE_DEADLINE_S = 10.0
KEYS = [f"user-{i}" for i in range(40)]
BODY = infer_body(rows(1))


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[str, MetadataStore, LocalArtifactStore]]:
    url = fresh_database(DATABASE)
    store = MetadataStore.open(url)
    try:
        yield url, store, LocalArtifactStore(tmp_path / "artifacts")
    finally:
        store.close()


@pytest.fixture
def replicas(
    tmp_path: Path, stores: tuple[str, MetadataStore, LocalArtifactStore]
) -> Iterator[list[Server]]:
    url, store, artifacts = stores
    stable, _ = register(store, artifacts, c=1.0)
    promote(store, stable)
    servers: list[Server] = []
    try:
        for index in range(REPLICAS):
            folder = tmp_path / f"replica-{index}"
            folder.mkdir()
            servers.append(start_server(folder, store_url=url, artifacts=artifacts.root))
        for server in servers:
            with httpx.Client(base_url=server.base_url) as client:
                server.wait_ready(client)
        yield servers
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert "Traceback" not in server.log_text()


def _version(client: httpx.Client, key: str) -> str:
    response = client.post(
        f"/v2/models/{MODEL}/infer", json=BODY, headers={ROUTING_KEY_HEADER: key}
    )
    assert response.status_code == 200, response.text
    return response.headers["x-conveyor-model-version"]


def _listed(client: httpx.Client) -> list[str]:
    response = client.get(f"/v2/models/{MODEL}")
    assert response.status_code == 200, response.text
    return sorted(response.json()["versions"])


def _agree(
    servers: list[Server], view: Callable[[httpx.Client], object], expected: object
) -> float:
    """Poll every replica until ``view`` of each equals ``expected``; the seconds it took."""
    started = time.monotonic()
    clients = [httpx.Client(base_url=s.base_url, timeout=10.0) for s in servers]
    try:
        while True:
            seen = [view(client) for client in clients]
            if all(s == expected for s in seen):
                return time.monotonic() - started
            if time.monotonic() - started > AGREE_DEADLINE_S:
                pytest.fail(f"replicas did not agree within {AGREE_DEADLINE_S} s: {seen}")
            time.sleep(0.02)
    finally:
        for client in clients:
            client.close()


def _every_key(client: httpx.Client) -> dict[str, str]:
    return {key: _version(client, key) for key in KEYS}


def test_three_replicas_on_one_store_follow_promotion_canary_and_abort(
    replicas: list[Server], stores: tuple[str, MetadataStore, LocalArtifactStore]
) -> None:
    _, store, artifacts = stores
    _agree(replicas, lambda c: _version(c, "anyone"), "1")

    # A promotion: every replica serves v2 for every key.
    v2, _ = register(store, artifacts, c=0.5)
    promote(store, v2)
    promoted_s = _agree(replicas, _every_key, dict.fromkeys(KEYS, str(v2)))

    # A 50% canary of v3: all list both versions and split the keys the same way.
    v3, _ = register(store, artifacts, c=0.01)
    registry.promote(
        store,
        model=MODEL,
        version=v3,
        to="candidate",
        policy=registry.load_policy(None),
        actor="bob",
    )
    deploy.start_rollout(
        store,
        model=MODEL,
        version=v3,
        strategy="canary",
        steps=deploy.parse_steps("canary", "50,100"),
        settings=deploy.AnalysisSettings(interval_s=600),  # nothing advances it here
        actor="deployer",
    )
    canary_s = _agree(replicas, lambda c: str(v3) in _listed(c), True)
    with httpx.Client(base_url=replicas[0].base_url, timeout=10.0) as first:
        split = _every_key(first)
    assert set(split.values()) == {str(v2), str(v3)}, split
    _agree(replicas, _every_key, split)

    # The abort: the canary's weight goes to 0 on every replica.
    deploy.abort(store, MODEL, actor="deployer", reason="test")
    aborted_s = _agree(replicas, _every_key, dict.fromkeys(KEYS, str(v2)))

    # Each change reached all three within a few poll intervals, not at the deadline.
    assert max(promoted_s, canary_s, aborted_s) < 5.0, (promoted_s, canary_s, aborted_s)
    print(
        f"replicas agreed after: promotion {promoted_s:.2f} s, canary {canary_s:.2f} s, "
        f"abort {aborted_s:.2f} s"
    )
