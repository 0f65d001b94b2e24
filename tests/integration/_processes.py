"""Real server processes for the integration tests: start ``python -m conveyor.server`` on a free
loopback port with its configuration in ``CONVEYOR_*`` variables, wait until ready, stop or kill.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from conveyor.core import env

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["REPO", "Load", "Server", "free_port", "start_server"]

START_DEADLINE_S = 60.0
#: The repository root: server processes import test models (``tests.unit.server._faults``).
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server not ready within {START_DEADLINE_S} s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    folder: Path,
    *,
    store_url: str,
    artifacts: Path,
    port: int | None = None,
    poll_interval: float = 0.1,
    extra_env: dict[str, str] | None = None,
    log_name: str = "server.log",
) -> Server:
    """Start a server process serving every model with a production version."""
    port = port or free_port()
    variables = {
        env.CONVEYOR_STORE: store_url,
        env.CONVEYOR_ARTIFACTS: str(artifacts),
        env.CONVEYOR_HOST: "127.0.0.1",
        env.CONVEYOR_PORT: str(port),
        env.CONVEYOR_POLL_INTERVAL: str(poll_interval),
        env.CONVEYOR_LOG_LEVEL: "INFO",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
        ),
        **(extra_env or {}),
    }
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in (env.CONVEYOR_CONFIG, env.CONVEYOR_PROJECT_DIR)
    }
    log = folder / log_name
    project = folder / "project"
    project.mkdir(exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor.server", str(project)],
            env={**environ, **variables},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Server(proc, f"http://127.0.0.1:{port}", log)


@dataclass
class Load:
    """Closed-loop client threads sending requests until stopped; every answer is kept."""

    base_url: str
    request: Callable[[httpx.Client, int], httpx.Response]
    threads: int = 4
    statuses: list[int] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            count = 0
            while not self._stop.is_set():
                count += 1
                started = time.perf_counter()
                try:
                    response = self.request(client, index * 1_000_000 + count)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.statuses.append(response.status_code)
                    self.latencies.append(elapsed)
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code}: {response.text}")
                    else:
                        self.versions.append(response.headers.get("x-conveyor-model-version", ""))

    def converge(self, version: str, *, window: int = 50, timeout: float = 10.0) -> float:
        """Wait until the last ``window`` answers all came from ``version``; the seconds it took.

        Fails after ``timeout``: the servers did not follow the routing in time.
        """
        started = time.monotonic()
        while True:
            with self._lock:
                recent = self.versions[-window:]
            if len(recent) == window and set(recent) == {version}:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                pytest.fail(f"the answers did not all come from v{version} within {timeout} s")
            time.sleep(0.01)

    def count(self) -> int:
        with self._lock:
            return len(self.statuses)

    def wait_for(self, requests: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.count()
        while self.count() < start + requests:
            if time.monotonic() > deadline:
                pytest.fail(f"the load did not make {requests} requests within {timeout} s")
            time.sleep(0.01)
