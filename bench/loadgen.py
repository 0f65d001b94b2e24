"""A small closed-loop HTTP/1.1 load generator: CONCURRENCY keep-alive connections, each sending
the same POST again as soon as the previous answer is in, for a fixed time.

    python bench/loadgen.py URL [BODY_FILE] [--concurrency 16] [--duration 20] [--warmup 2]

POSTs BODY_FILE, or GETs the URL when no body file is given (to measure the load generator's own
ceiling against a trivial endpoint such as ``/v2/health/live``). Prints one JSON line:
requests/s, p50/p90/p99 latency in seconds, errors (non-2xx answers and broken connections), and
``client_cpu``: the CPU time this process used over the run, as a fraction of one core (near 1,
the load generator itself would be the limit). Stdlib only (asyncio streams): an HTTP client
library would cost more CPU than the servers under test on a 2-core machine, and the load
generator shares those cores. Measured on the 2-core machine against a trivial asyncio server:
~30,000 req/s at concurrency 16, some 30 µs of client CPU per request. Targets only the URL it
is given (meant for loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            await self.open()
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status


async def _worker(
    url: str,
    raw: bytes,
    stop_at: float,
    record_from: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    parts = urlsplit(url)
    conn = _Conn(parts.hostname or "127.0.0.1", parts.port or 80)
    while True:
        t0 = time.perf_counter()
        if t0 >= stop_at:
            break
        try:
            status = await conn.request(raw)
            ok = 200 <= status < 300
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn.close()
            ok = False
        t1 = time.perf_counter()
        if t0 >= record_from:
            if ok:
                latencies.append(t1 - t0)
            else:
                errors.append(1)
        if not ok:
            await asyncio.sleep(0.01)
    conn.close()


async def run_load(
    url: str,
    body: bytes | None,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    content_type: str = "application/json",
) -> dict[str, float]:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, not {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if body is None:
        raw = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: keep-alive\r\n\r\n"
        ).encode()
    else:
        raw = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        ).encode() + body
    latencies: list[float] = []
    errors: list[int] = []
    cpu0 = _cpu_s()
    start = time.perf_counter()
    record_from = start + warmup
    stop_at = record_from + duration
    await asyncio.gather(
        *(_worker(url, raw, stop_at, record_from, latencies, errors) for _ in range(concurrency))
    )
    # Requests in flight at stop_at finish after it; count them over the time they took.
    end = time.perf_counter()
    elapsed = max(end, stop_at) - record_from
    client_cpu = (_cpu_s() - cpu0) / (end - start)
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {
        "rps": len(lat) / elapsed,
        "p50_s": statistics.median(lat) if lat else float("nan"),
        "p90_s": pct(0.90),
        "p99_s": pct(0.99),
        "requests": len(lat),
        "errors": len(errors),
        "concurrency": concurrency,
        "duration_s": elapsed,
        "client_cpu": client_cpu,
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("body_file", type=Path, nargs="?", help="POST this; GET without it")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    result = asyncio.run(
        run_load(
            args.url,
            args.body_file.read_bytes() if args.body_file else None,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
        )
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
