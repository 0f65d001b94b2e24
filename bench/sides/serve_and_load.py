"""Row 5: start a server, wait until it answers, put load on it, stop it; print the load numbers.

    serve_and_load.py --ready URL --url URL --body FILE [--concurrency 16] [--duration 20]
                      [--warmup 2] [--c1-duration S] [--inproc JSON_ARGV] -- SERVER COMMAND ...

Before the load, sends the body once and fails unless the answer is 2xx (the JSON line keeps
the start of that answer, so one can check that every server predicts the same). With no server
command, loads an already running server at --url (how a Conveyor server under
development, or any other, can be measured with the same load). Stdlib only; runs under the
harness's Python, so the load generator is the same for every side.

``server_cpu``: the CPU time of the server's process group (the command and every process it
forked, as /proc shows them before and after) over the main load, as a fraction of one core;
next to the load generator's ``client_cpu`` it shows how the 2 cores were shared.

The server overhead over a bare in-process prediction (row 5e): ``--c1-duration S`` adds, after
the main load, a second load of S seconds at concurrency 1 (``c1_`` keys: ``c1_p50_s``, ...);
``--inproc JSON_ARGV`` then, once the server is stopped, runs that command (a JSON list, e.g.
``conveyor_inprocess_predict.py`` under Conveyor's venv), which prints one JSON line with
``predict_s`` (seconds per single-row prediction in process); its keys come back prefixed with
``inproc_``, and ``overhead_s`` = c1_p50_s - inproc_predict_s, ``overhead_x`` = c1_p50_s /
inproc_predict_s.
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


def _group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes in process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
        if int(fields[2]) == pgid:  # field 5, pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15, utime and stime
    return total / tick


def _inproc(argv: list[str]) -> dict[str, float]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-4:]
        raise RuntimeError(f"in-process measurement failed (exit {proc.returncode}): {tail}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {f"inproc_{k}": v for k, v in out.items()}


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
    p.add_argument("--c1-duration", type=float, default=0.0)
    p.add_argument("--inproc", type=json.loads, default=None)
    args = p.parse_args(argv)
    extra: dict[str, float] = {}

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
        cpu0, t0 = (_group_cpu_s(proc.pid) if proc else 0.0), time.perf_counter()
        result = asyncio.run(
            run_load(
                args.url,
                body,
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=args.warmup,
            )
        )
        if proc is not None:
            extra["server_cpu"] = (_group_cpu_s(proc.pid) - cpu0) / (time.perf_counter() - t0)
        if args.c1_duration > 0:
            c1 = asyncio.run(
                run_load(args.url, body, concurrency=1, duration=args.c1_duration, warmup=0.5)
            )
            extra.update({f"c1_{k}": v for k, v in c1.items() if k != "concurrency"})
    finally:
        if proc is not None:
            _stop(proc)
        if args.log:
            log.close()  # type: ignore[union-attr]
    if args.inproc:
        extra.update(_inproc(args.inproc))
        if "c1_p50_s" in extra:
            base = extra["inproc_predict_s"]
            extra["overhead_s"] = extra["c1_p50_s"] - base
            extra["overhead_x"] = extra["c1_p50_s"] / base
    print(json.dumps({**result, **extra, "server_start_s": start_s, "first_answer": answer}))
    if result["requests"] == 0:
        print("no successful request", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
