"""The inference server as a real process on loopback: start, serve, swap versions, stop cleanly.

The server runs as ``python -m conveyor.server`` with its configuration in ``CONVEYOR_*``
variables; this process registers and promotes versions in the same stores, as an operator's
``conveyor promote`` would, and watches the answers change while other requests keep flowing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from tests.unit.server._support import MODEL, infer_body, promote, register, rollback, rows

from conveyor.core import env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

START_DEADLINE_S = 60.0
SWAP_DEADLINE_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


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
) -> Iterator[_Server]:
    port = _free_port()
    variables = {
        env.CONVEYOR_STORE: store_url,
        env.CONVEYOR_ARTIFACTS: str(artifact_store.root),
        env.CONVEYOR_HOST: "127.0.0.1",
        env.CONVEYOR_PORT: str(port),
        env.CONVEYOR_POLL_INTERVAL: "0.1",
        env.CONVEYOR_LOG_LEVEL: "INFO",
    }
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in (env.CONVEYOR_CONFIG, env.CONVEYOR_PROJECT_DIR)
    }
    log = tmp_path / "server.log"
    project = tmp_path / "project"
    project.mkdir()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor.server", str(project)],
            env={**environ, **variables},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = _Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(server: _Server, client: httpx.Client) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode}:\n{server.log_text()}")
        try:
            if client.get("/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"server not ready within {START_DEADLINE_S} s:\n{server.log_text()}")


def test_real_server_swaps_versions_under_load_and_stops_cleanly(
    server: _Server, metadata_store: MetadataStore, versions: tuple[int, int]
) -> None:
    v1, v2 = versions

    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        _wait_ready(server, client)
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
