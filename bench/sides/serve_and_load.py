"""Row 5: start a server, wait until it answers, put load on it, stop it; print the load numbers.

    serve_and_load.py --ready URL --url URL --body FILE [--concurrency 16] [--duration 20]
                      [--warmup 2] -- SERVER COMMAND ...

With no server command, loads an already running server at --url (how a Conveyor server under
development, or any other, can be measured with the same load). Stdlib only; runs under the
harness's Python, so the load generator is the same for every side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadgen import run_load


def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 300:
                    return time.perf_counter() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not ready at {url} after {timeout:.0f} s")


def main() -> int:
    argv = sys.argv[1:]
    cmd: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser()
    p.add_argument("--ready", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--body", type=Path, required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--log", type=Path)
    args = p.parse_args(argv)

    proc = None
    log = open(args.log, "wb") if args.log else subprocess.DEVNULL
    try:
        if cmd:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        start_s = _wait_ready(args.ready, proc, timeout=120)
        result = asyncio.run(
            run_load(
                args.url,
                args.body.read_bytes(),
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=args.warmup,
            )
        )
    finally:
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        if args.log:
            log.close()  # type: ignore[union-attr]
    result["server_start_s"] = start_s
    print(json.dumps(result))
    if result["requests"] == 0:
        print("no successful request", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
