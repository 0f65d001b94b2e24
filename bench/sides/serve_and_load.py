"""Row 5: start a server, wait until it answers, put load on it, stop it; print the load numbers.

    serve_and_load.py --ready URL --url URL --body FILE [--concurrency 16] [--duration 20]
                      [--warmup 2] -- SERVER COMMAND ...

Before the load, sends the body once and fails unless the answer is 2xx (the JSON line keeps
the start of that answer, so one can check that every server predicts the same). With no server
command, loads an already running server at --url (how a Conveyor server under
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


def _first_answer(url: str, body: bytes) -> str:
    """One inference request before the load: the server must answer it with 2xx."""
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.read(300).decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", "replace")
        raise RuntimeError(f"the first request to {url} got {exc.code}: {detail}") from exc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group and wait until every process in it is gone.

    Servers fork: ``mlflow models serve`` runs uvicorn as a child, MLServer its inference
    workers. The child can outlive the command it was started by, busy for a second or two
    while it shuts down, and must not share the cores with the next side's run.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or the group would never look empty
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


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
        body = args.body.read_bytes()
        answer = _first_answer(args.url, body)
        result = asyncio.run(
            run_load(
                args.url,
                body,
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=args.warmup,
            )
        )
    finally:
        if proc is not None:
            _stop(proc)
        if args.log:
            log.close()  # type: ignore[union-attr]
    print(json.dumps({**result, "server_start_s": start_s, "first_answer": answer}))
    if result["requests"] == 0:
        print("no successful request", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
