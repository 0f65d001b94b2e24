"""The inference test of a promotion gate: a version served by a real server, under load.

A model can be accurate and still unfit for production because it is too slow, too big, or falls
over at the concurrency it will see. :func:`run_inference_test` finds out the way production
would: it starts ``python -m conveyor.server --model NAME --version N`` as a child process (in
its own process group, on a free loopback port), waits for ``/v2/health/ready``, replays a
request mix built from real rows at the declared concurrency, and compares what it measured with
an :class:`InferenceBudget` from the stage's ``inference:`` block of ``policies.yaml``::

    inference: {p99_ms: 50, p50_ms: 10, throughput_rps: 200, memory_mb: 800, concurrency: 16}

What is measured, and how:

- **Latency** of each request, from the first byte sent to the last byte of the answer, over the
  measured requests only: a warm-up phase (``warmup`` requests) runs first, so imports, first
  calls and connection set-up are not counted. p50 and p99 are ``numpy.percentile`` (linear).
- **Throughput**: measured requests over the wall time of the measured phase.
- **Peak memory**: the server process's ``VmHWM`` (peak resident set) from ``/proc/<pid>/status``
  after the run, so model loading counts. That file exists on Linux only; elsewhere memory is
  not measured and a ``memory_mb`` budget fails with that reason.
- **Behaviour at the concurrency limit**: ``concurrency`` closed-loop clients, each on one
  keep-alive connection, send their next request as soon as the last is answered. Every request
  must be answered 2xx within ``timeout_ms``; a refused connection, a reset, a timeout or any
  other status is a failure and fails the ``inference.concurrency`` check.

The mix is mostly single rows (80%) and some small batches (2-32 rows, uniform), drawn from the
given rows with a seeded generator, sent as Open Inference Protocol v2 bodies with one tensor per
input column (the datatypes are the server's own metadata for the model).

The load generator is a small HTTP/1.1 client on asyncio streams, run on its own thread with
pre-encoded requests: on a 2-core machine it shares the cores with the server, and an HTTP
client library would measure itself. Against the server on that machine, httpx's async client
used ~2 ms of CPU per request; this client 0.06-0.15 ms (3-7% of one core at 300-1,200 req/s).
Its CPU time over the measured phase is reported (``client_cpu_ms_per_request``,
``client_cpu_fraction`` of one core), so a reader can see it was not the limit. httpx is used
only for the few requests around the run (readiness, metadata, the first checked answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core import env
from conveyor.core.blocks import Field, check_values, integer, number, parse_block
from conveyor.core.errors import ConfigError, InfrastructureError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd

__all__ = ["BudgetCheck", "InferenceBudget", "InferenceTestReport", "run_inference_test"]

logger = logging.getLogger(__name__)

#: Measured requests when the budget gives neither ``requests`` nor ``duration_s``.
DEFAULT_REQUESTS = 1000
#: Share of single-row requests in the mix; the others carry 2 to ``MAX_BATCH_ROWS`` rows.
SINGLE_ROW_SHARE = 0.8
MAX_BATCH_ROWS = 32
#: Distinct request bodies in the mix; requests cycle through them.
BODY_POOL = 256
#: How long the server may take to load the version and answer ``/v2/health/ready``.
START_TIMEOUT_S = 120.0
#: How long the server may take to stop on SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
#: Lines of the server's log quoted in an error.
LOG_TAIL_LINES = 3

_LISTENING_RE = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class InferenceBudget:
    """What a version must show in the inference test; a threshold left ``None`` is not checked.

    Attributes:
        p50_ms: Highest median latency, in milliseconds.
        p99_ms: Highest 99th-percentile latency, in milliseconds.
        throughput_rps: Lowest throughput, in requests per second.
        memory_mb: Highest peak resident memory of the server process, in MB (10^6 bytes).
        concurrency: The declared concurrency limit: clients sending at once.
        requests: Measured requests (default 1000 when ``duration_s`` is not given either).
        duration_s: Or: seconds of measured load.
        warmup: Requests sent before measuring.
        timeout_ms: A request not answered within this counts as failed (timed out).
    """

    p50_ms: float | None = None
    p99_ms: float | None = None
    throughput_rps: float | None = None
    memory_mb: float | None = None
    concurrency: int = 8
    requests: int | None = None
    duration_s: float | None = None
    warmup: int = 50
    timeout_ms: float = 10_000.0

    def __post_init__(self) -> None:
        check_values(self.to_dict(), _FIELDS, "inference budget", "inference budget")
        _check_exclusive(self.to_dict(), "inference budget")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str) -> InferenceBudget:
        """The budget of an ``inference:`` block, checked before anything runs.

        Args:
            mapping: The block, e.g. ``{"p99_ms": 50, "concurrency": 16}``.
            where: Where it comes from, for errors: ``"policies.yaml:12"``.

        Raises:
            ConfigError: ``"{where}: ..."`` naming the unknown key, or the key whose value has
                the wrong type or is out of range, and what it must be.
        """
        values = parse_block(
            mapping,
            _FIELDS,
            where,
            what="inference budget",
            block="the inference budget",
            example="inference: {p99_ms: 50, concurrency: 16}",
        )
        _check_exclusive(values, where)
        return cls(**values)

    @property
    def measured_requests(self) -> int | None:
        """How many requests are measured, or None when the run is timed (``duration_s``)."""
        if self.requests is None and self.duration_s is None:
            return DEFAULT_REQUESTS
        return self.requests

    def to_dict(self) -> dict[str, Any]:
        """The budget as plain values, for gate results and reports."""
        return asdict(self)


def _positive(expected: str, example: str, high: float = math.inf) -> Field:
    # Thresholds and durations must be above zero.
    return Field(float, number, expected, example, 0.0, high, low_inclusive=False)


def _count(expected: str, example: str, low: int, high: int, *, nullable: bool) -> Field:
    return Field(int, integer, expected, example, low, high, nullable=nullable)


_FIELDS: dict[str, Field] = {
    "p50_ms": _positive("a number of milliseconds > 0", "10"),
    "p99_ms": _positive("a number of milliseconds > 0", "50"),
    "throughput_rps": _positive("a number of requests per second > 0", "200"),
    "memory_mb": _positive("a number of megabytes > 0", "800"),
    "concurrency": _count("an integer from 1 to 1024", "16", 1, 1024, nullable=False),
    "requests": _count("an integer from 1 to 1000000", "2000", 1, 1_000_000, nullable=True),
    "duration_s": _positive("a number of seconds > 0, at most 3600", "30", 3600.0),
    "warmup": _count("an integer from 0 to 100000", "50", 0, 100_000, nullable=False),
    "timeout_ms": Field(
        float,
        number,
        "a number of milliseconds > 0",
        "10000",
        0.0,
        math.inf,
        low_inclusive=False,
        nullable=False,
    ),
}


def _check_exclusive(values: Mapping[str, Any], where: str) -> None:
    if values.get("requests") is not None and values.get("duration_s") is not None:
        raise ConfigError(
            f"{where}: the inference budget gives both 'requests' and 'duration_s'",
            hint="measure a number of requests or a duration, not both",
        )


@dataclass(frozen=True)
class BudgetCheck:
    """One item of the budget against what was measured.

    Attributes:
        name: ``inference.p99_ms``, ``inference.concurrency`` ...
        observed: The measured value (None when it could not be measured).
        threshold: The budget's value (for ``inference.concurrency``: failed requests allowed).
        passed: Whether the observed value is within the threshold.
        detail: One line for people: ``"p99 latency 12.3 ms <= 50 ms"``.
    """

    name: str
    observed: float | None
    threshold: float
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The check as plain values."""
        return asdict(self)


@dataclass(frozen=True)
class InferenceTestReport:
    """What the inference test measured and how it compares with the budget.

    Latencies are of the measured requests that were answered 2xx; ``status_codes`` counts every
    measured request by status (``"timeout"`` and ``"connection"`` for requests with none).
    """

    model: str
    version: int
    budget: InferenceBudget
    concurrency: int
    requests: int
    rows: int
    errors: int
    warmup_errors: int
    status_codes: dict[str, int]
    duration_s: float
    throughput_rps: float
    rows_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    peak_memory_mb: float | None
    client_cpu_ms_per_request: float
    client_cpu_fraction: float
    checks: tuple[BudgetCheck, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[BudgetCheck]:
        """The checks that did not pass."""
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (NaN never appears: unmeasured values are None)."""
        data = asdict(self)
        data["checks"] = [check.to_dict() for check in self.checks]
        data["passed"] = self.passed
        return data


def run_inference_test(
    model: str,
    version: int,
    rows: pd.DataFrame,
    budget: InferenceBudget,
    *,
    store: str,
    artifacts: str,
    seed: int = 0,
    start_timeout_s: float = START_TIMEOUT_S,
) -> InferenceTestReport:
    """Serve ``model`` at ``version`` in a real server process and measure it under load.

    The server is always stopped before this returns or raises (SIGTERM to its process group,
    SIGKILL after ``STOP_TIMEOUT_S``).

    Args:
        model: The registered model.
        version: The version to serve (any stage).
        rows: Input rows (at least the model's input columns); requests are drawn from them.
        budget: The thresholds and the load to apply.
        store: The metadata store URL holding the registry (with its password, if any).
        artifacts: The artifact store holding the bundle.
        seed: Seeds the request mix.
        start_timeout_s: How long the server may take to become ready.

    Raises:
        ValidationError: ``rows`` is empty or lacks an input column, the version cannot be
            loaded (corrupt, refused), or the server rejects the first request; with the last
            lines of the server's log when it exited.
        InfrastructureError: the server cannot start (a store down, no port) or is not ready
            within ``start_timeout_s``, or dies during the run.
    """
    if len(rows) == 0:
        raise ValidationError(
            f"the inference test of model '{model}' v{version} has no rows to send",
            hint="pass the evaluation dataset's rows",
        )
    with _ServerProcess(model, version, store=store, artifacts=artifacts) as server:
        server.wait_ready(start_timeout_s)
        inputs = server.inputs()
        bodies = _request_mix(rows, inputs, seed=seed, model=model, version=version)
        server.check_answer(bodies[0])
        result = _LoadRun(server.port, model, bodies, budget).run()
        server.check_alive()
        peak_mb = server.peak_memory_mb()
    return _report(model, version, budget, result, peak_mb)


# -- the server process -------------------------------------------------------------------------


class _ServerProcess:
    """``python -m conveyor.server`` pinned to one version, with its log in a temporary folder."""

    def __init__(self, model: str, version: int, *, store: str, artifacts: str) -> None:
        self.model, self.version = model, version
        self._store, self._artifacts = store, artifacts
        self._folder = tempfile.TemporaryDirectory(prefix="conveyor-loadtest-")
        self._log = Path(self._folder.name) / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def label(self) -> str:
        return f"model '{self.model}' v{self.version}"

    def __enter__(self) -> _ServerProcess:
        project = Path(self._folder.name) / "project"  # no conveyor.yaml: settings come from env
        project.mkdir()
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in (env.CONVEYOR_CONFIG, env.CONVEYOR_PROJECT_DIR)
        }
        environ.update(
            {
                env.CONVEYOR_STORE: self._store,
                env.CONVEYOR_ARTIFACTS: self._artifacts,
                env.CONVEYOR_HOST: "127.0.0.1",
                # Port 0: the server binds a free port and logs it; no race for a port we chose.
                env.CONVEYOR_PORT: "0",
                # A pinned version never changes: the registry need hardly be polled.
                env.CONVEYOR_POLL_INTERVAL: "3600",
                env.CONVEYOR_LOG_LEVEL: "INFO",
            }
        )
        command = [sys.executable, "-m", "conveyor.server", str(project)]
        command += ["--model", self.model, "--version", str(self.version)]
        try:
            with self._log.open("wb") as log:
                self._proc = subprocess.Popen(  # our own interpreter and module
                    command,
                    env=environ,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as a whole
                )
        except OSError as exc:
            self._folder.cleanup()
            raise InfrastructureError(
                f"cannot start the inference server for {self.label}: {exc}"
            ) from exc
        logger.info("inference test: server pid %d for %s", self._proc.pid, self.label)
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.stop()
        finally:
            self._folder.cleanup()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("inference server pid %d ignored SIGTERM; killing it", proc.pid)
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.check_alive(starting=True)
                if not self.port:
                    match = _LISTENING_RE.search(self._log.read_bytes())
                    if match:
                        self.port = int(match[1])
                if self.port:
                    with contextlib.suppress(httpx.TransportError):
                        response = client.get(f"{self.base_url}/v2/health/ready")
                        if response.status_code == 200:
                            return
                # Waiting on the process is the poll interval: an exit is seen at once.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    assert self._proc is not None
                    self._proc.wait(timeout=0.05)
        raise InfrastructureError(
            f"the inference server for {self.label} was not ready within {timeout:g} s"
            f"{self._tail()}",
            hint="a large model may need a longer start_timeout_s; see the server log",
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check_alive(self, *, starting: bool = False) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is None:
            return
        when = "before it was ready" if starting else "during the inference test"
        message = f"the inference server for {self.label} exited with code {code} {when}"
        # Exit 3 is the server's "infrastructure unavailable"; 2 a version it cannot serve.
        error = InfrastructureError if code == 3 or not starting else ValidationError
        raise error(
            f"{message}{self._tail()}",
            hint=f"run `python -m conveyor.server --model {self.model} --version "
            f"{self.version}` with the same stores to see the whole log",
        )

    def _tail(self) -> str:
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        tail = " | ".join(lines[-LOG_TAIL_LINES:])
        return f": {tail[-600:]}" if tail else ""

    def inputs(self) -> list[dict[str, Any]]:
        import httpx

        with httpx.Client(timeout=10.0) as client:
            response = client.get(f"{self.base_url}/v2/models/{self.model}")
        if response.status_code != 200:
            raise InfrastructureError(
                f"the inference server did not describe {self.label}: HTTP "
                f"{response.status_code} {response.text[:300]}"
            )
        inputs: list[dict[str, Any]] = response.json()["inputs"]
        return inputs

    def check_answer(self, body: bytes) -> None:
        """Send one request and check the answer, so a bad mix fails with the server's reason."""
        import httpx

        with httpx.Client(timeout=30.0) as client:
            response = client.post(
                f"{self.base_url}/v2/models/{self.model}/infer",
                content=body,
                headers={"content-type": "application/json"},
            )
        if response.status_code != 200:
            try:
                reason = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                reason = response.text[:300]
            raise ValidationError(
                f"the inference server refused the test's first request to {self.label}: "
                f"HTTP {response.status_code}: {reason}",
                hint="the rows must hold the model's input columns with values of their types",
            )

    def peak_memory_mb(self) -> float | None:
        """The server's peak resident memory (VmHWM), or None where /proc does not exist."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
        return int(match[1]) * 1024 / 1e6 if match else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the server leads its own process group (start_new_session)


# -- the request mix ----------------------------------------------------------------------------


def _request_mix(
    rows: pd.DataFrame, inputs: Sequence[Mapping[str, Any]], *, seed: int, model: str, version: int
) -> list[bytes]:
    """Pre-encoded JSON bodies: mostly one row, some 2 to ``MAX_BATCH_ROWS`` rows."""
    import numpy as np

    missing = [spec["name"] for spec in inputs if spec["name"] not in rows.columns]
    if missing:
        raise ValidationError(
            f"the rows for the inference test of model '{model}' v{version} lack the input "
            f"column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}",
            hint="pass rows with every input column of the model's signature",
        )
    columns = {spec["name"]: _json_values(rows[spec["name"]], spec["datatype"]) for spec in inputs}
    rng = np.random.default_rng(seed)
    bodies: list[bytes] = []
    for _ in range(BODY_POOL):
        size = 1 if rng.random() < SINGLE_ROW_SHARE else int(rng.integers(2, MAX_BATCH_ROWS + 1))
        picks = rng.integers(0, len(rows), size).tolist()
        tensors = [
            {
                "name": spec["name"],
                "shape": [size],
                "datatype": spec["datatype"],
                "data": [columns[spec["name"]][i] for i in picks],
            }
            for spec in inputs
        ]
        bodies.append(json.dumps({"inputs": tensors}, separators=(",", ":")).encode())
    return bodies


def _json_values(column: pd.Series[Any], datatype: str) -> list[Any]:
    """A column's values as JSON values of ``datatype``: null for missing, never NaN."""
    import pandas as pd

    convert: Any = {"BOOL": bool, "BYTES": str}.get(datatype)
    if convert is None:
        convert = int if datatype.startswith(("INT", "UINT")) else float
    return [None if pd.isna(v) else convert(v) for v in column.astype(object).tolist()]


# -- the load -----------------------------------------------------------------------------------


@dataclass
class _Result:
    latencies: list[float] = field(default_factory=list)
    rows: int = 0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    warmup_errors: int = 0
    elapsed: float = 0.0
    client_cpu: float = 0.0


class _LoadRun:
    """Closed-loop clients on keep-alive connections, on a thread with its own event loop."""

    def __init__(self, port: int, model: str, bodies: list[bytes], budget: InferenceBudget):
        self._port = port
        self._budget = budget
        head = (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nConnection: keep-alive\r\n"
        )
        self._requests = [
            (f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body, _row_count(body))
            for body in bodies
        ]
        self._sent = 0
        self._result = _Result()

    def run(self) -> _Result:
        # A thread of its own: the caller may be inside an event loop, and the thread's CPU time
        # (time.thread_time) is then the load generator's alone.
        failure: list[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(self._main())
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)

        thread = threading.Thread(target=main, name="conveyor-loadtest", daemon=True)
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return self._result

    async def _main(self) -> None:
        budget = self._budget
        clients = [_Client(self._port) for _ in range(budget.concurrency)]
        try:
            if budget.warmup:
                await self._phase(clients, count=budget.warmup, stop_at=None, measure=False)
            cpu0, t0 = time.thread_time(), time.perf_counter()
            stop_at = None if budget.duration_s is None else t0 + budget.duration_s
            await self._phase(
                clients, count=budget.measured_requests, stop_at=stop_at, measure=True
            )
            self._result.elapsed = time.perf_counter() - t0
            self._result.client_cpu = time.thread_time() - cpu0
        finally:
            for client in clients:
                client.close()

    async def _phase(
        self, clients: list[_Client], *, count: int | None, stop_at: float | None, measure: bool
    ) -> None:
        issued = 0

        async def worker(client: _Client) -> None:
            nonlocal issued
            timeout = self._budget.timeout_ms / 1000
            while True:
                if count is not None and issued >= count:
                    return
                if stop_at is not None and time.perf_counter() >= stop_at:
                    return
                issued += 1
                raw, rows = self._requests[self._sent % len(self._requests)]
                self._sent += 1
                start = time.perf_counter()
                status = await client.send(raw, timeout)
                latency = time.perf_counter() - start
                self._record(status, latency, rows, measure=measure)

        await asyncio.gather(*(worker(client) for client in clients))

    def _record(self, status: str, latency: float, rows: int, *, measure: bool) -> None:
        result = self._result
        ok = status.startswith("2")
        if not measure:
            result.warmup_errors += not ok
            return
        result.requests += 1
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if ok:
            result.latencies.append(latency)
            result.rows += rows


def _row_count(body: bytes) -> int:
    shape: list[int] = json.loads(body)["inputs"][0]["shape"]
    return shape[0]


class _Client:
    """One keep-alive HTTP/1.1 connection, reopened after an error; answers are read, not parsed."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes, timeout: float) -> str:
        """The status code of the answer, or ``"timeout"`` / ``"connection"``."""
        try:
            return await asyncio.wait_for(self._exchange(raw), timeout)
        except TimeoutError:
            self.close()
            return "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return "connection"

    async def _exchange(self, raw: bytes) -> str:
        if self._writer is None:
            import socket

            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
            sock = self._writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self._reader is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)[1].decode()
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise ValueError("chunked answers are not expected from the server")
        await self._reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


# -- the report ---------------------------------------------------------------------------------


def _report(
    model: str, version: int, budget: InferenceBudget, result: _Result, peak_mb: float | None
) -> InferenceTestReport:
    import numpy as np

    latencies_ms = np.asarray(result.latencies) * 1000.0
    has = latencies_ms.size > 0
    p50, p90, p99 = (
        (float(v) for v in np.percentile(latencies_ms, [50, 90, 99])) if has else (None, None, None)
    )
    elapsed = result.elapsed
    throughput = len(result.latencies) / elapsed if elapsed > 0 else 0.0
    errors = result.requests - len(result.latencies)
    report = InferenceTestReport(
        model=model,
        version=version,
        budget=budget,
        concurrency=budget.concurrency,
        requests=result.requests,
        rows=result.rows,
        errors=errors,
        warmup_errors=result.warmup_errors,
        status_codes=dict(sorted(result.statuses.items())),
        duration_s=elapsed,
        throughput_rps=throughput,
        rows_per_s=result.rows / elapsed if elapsed > 0 else 0.0,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        max_ms=float(latencies_ms.max()) if has else None,
        mean_ms=float(latencies_ms.mean()) if has else None,
        peak_memory_mb=peak_mb,
        client_cpu_ms_per_request=result.client_cpu * 1000 / max(result.requests, 1),
        client_cpu_fraction=result.client_cpu / elapsed if elapsed > 0 else 0.0,
    )
    return _with_checks(report)


def _with_checks(report: InferenceTestReport) -> InferenceTestReport:
    from dataclasses import replace

    budget = report.budget
    checks: list[BudgetCheck] = []
    for key, observed, what in (
        ("p50_ms", report.p50_ms, "p50 latency"),
        ("p99_ms", report.p99_ms, "p99 latency"),
    ):
        threshold = getattr(budget, key)
        if threshold is not None:
            checks.append(_at_most(f"inference.{key}", what, observed, threshold, "ms"))
    if budget.throughput_rps is not None:
        observed = report.throughput_rps
        passed = observed >= budget.throughput_rps
        sign = ">=" if passed else "<"
        checks.append(
            BudgetCheck(
                "inference.throughput_rps",
                observed,
                budget.throughput_rps,
                passed,
                f"throughput {observed:.1f} req/s {sign} {budget.throughput_rps:g} req/s",
            )
        )
    if budget.memory_mb is not None:
        checks.append(
            _at_most(
                "inference.memory_mb",
                "peak memory (VmHWM)",
                report.peak_memory_mb,
                budget.memory_mb,
                "MB",
                missing="not measured: the server's /proc/<pid>/status is Linux only",
            )
        )
    failed = report.errors + report.warmup_errors
    total = report.requests
    detail = (
        f"{report.concurrency} concurrent clients: {total - report.errors} of {total} "
        "requests answered 2xx"
    )
    if failed:
        codes = ", ".join(f"{k}: {v}" for k, v in report.status_codes.items() if k[0] != "2")
        detail += f"; {report.errors} failed ({codes or 'none measured'})"
        if report.warmup_errors:
            detail += f", and {report.warmup_errors} in the warm-up"
    checks.append(BudgetCheck("inference.concurrency", float(failed), 0.0, failed == 0, detail))
    return replace(report, checks=tuple(checks))


def _at_most(
    name: str,
    what: str,
    observed: float | None,
    threshold: float,
    unit: str,
    *,
    missing: str = "not measured: no request was answered 2xx",
) -> BudgetCheck:
    if observed is None:
        return BudgetCheck(name, None, threshold, False, f"{what} {missing}")
    passed = observed <= threshold
    sign = "<=" if passed else ">"
    return BudgetCheck(
        name,
        observed,
        threshold,
        passed,
        f"{what} {observed:.1f} {unit} {sign} {threshold:g} {unit}",
    )
