"""The inference server as a real process on loopback: start, serve, swap versions, stop cleanly.

The server runs as ``python -m conveyor.server`` with its configuration in ``CONVEYOR_*``
variables; this process registers and promotes versions in the same stores, as an operator's
``conveyor promote`` would, and watches the answers change while other requests keep flowing.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from tests.integration._processes import Server, start_server
from tests.unit.server._support import MODEL, infer_body, promote, register, rollback, rows

# Timing-sensitive (latency budgets, load): run alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

SWAP_DEADLINE_S = 30.0


@pytest.fixture
def versions(metadata_store: MetadataStore, artifact_store: LocalArtifactStore) -> tuple[int, int]:
    """Two versions of the model, the first in production, before the server starts."""
    v1, _ = register(metadata_store, artifact_store, c=1.0)
    v2, _ = register(metadata_store, artifact_store, c=0.01)
    promote(metadata_store, v1)
    return v1, v2


@pytest.fixture
def server(
    tmp_path: Path, store_url: str, artifact_store: LocalArtifactStore, versions: tuple[int, int]
) -> Iterator[Server]:
    server = start_server(tmp_path, store_url=store_url, artifacts=artifact_store.root)
    try:
        yield server
    finally:
        server.stop()


def test_real_server_swaps_versions_under_load_and_stops_cleanly(
    server: Server, metadata_store: MetadataStore, versions: tuple[int, int]
) -> None:
    v1, v2 = versions

    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        server.wait_ready(client)
        assert client.get("/v2").json()["name"] == "conveyor"
        answer = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(3))).json()
        assert answer["model_version"] == str(v1)
        assert len(answer["outputs"][1]["data"]) == 3

        failures: list[str] = []
        answered: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=server.base_url, timeout=10.0) as loader:
                while not stop.is_set():
                    try:
                        response = loader.post(
                            f"/v2/models/{MODEL}/infer", json=infer_body(rows(2))
                        )
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        continue
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text}")
                    else:
                        answered.append(response.json()["model_version"])

        loaders = [threading.Thread(target=load) for _ in range(4)]
        for thread in loaders:
            thread.start()
        try:
            promote(metadata_store, v2)
            _wait_for_version(client, v2)
            rollback(metadata_store)
            _wait_for_version(client, v1)
        finally:
            stop.set()
            for thread in loaders:
                thread.join(timeout=30)

    assert failures == []
    assert {str(v1), str(v2)} <= set(answered)

    server.proc.terminate()
    assert server.proc.wait(timeout=20) == 0
    log = server.log_text()
    assert f"listening on {server.base_url}" in log
    assert f"switched {MODEL} from v{v1} to v{v2}" in log
    assert f"switched {MODEL} from v{v2} to v{v1}" in log
    assert "Traceback" not in log


def _wait_for_version(client: httpx.Client, version: int) -> None:
    deadline = time.monotonic() + SWAP_DEADLINE_S
    while time.monotonic() < deadline:
        response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(1)))
        assert response.status_code == 200, response.text
        if response.json()["model_version"] == str(version):
            return
        time.sleep(0.02)
    pytest.fail(f"the server did not switch to v{version} within {SWAP_DEADLINE_S} s")
