"""The benchmark harness: run each side of a benchmark in its own process, alternately, and compare.

A *side* is one command (Conveyor's, an anchor's, or a limit such as ``cp``). The harness runs the
sides of a benchmark in turn (A B A B ...), a few warm-up rounds first, and for every run records
the wall time and the peak RSS of the process (from ``wait4``), plus whatever the process reports
itself on the last line of its stdout as a JSON object (per-operation times measured inside the
process, requests per second, ...). A side that cannot run says so: its script prints
``{"unavailable": "<reason>"}`` and exits with code 3, and the row shows the reason.

Stdlib only, so it runs under any Python 3.11, Conveyor's venv included.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = Path(os.environ.get("BENCH_WORKDIR", BENCH / "work"))
RESULTS = BENCH / "results"

EXIT_UNAVAILABLE = 3

# Anchors would otherwise phone home on every command (and this machine has no network);
# the same environment goes to every side, Conveyor's included.
SIDE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    # Compiled bytecode is cached for every side alike, outside the source trees: a venv's
    # site-packages come precompiled by pip, but an editable install (Conveyor's src/) does not,
    # and with PYTHONDONTWRITEBYTECODE set (as on this machine) it would be compiled on every
    # start. The warm-up round fills this cache.
    "PYTHONPYCACHEPREFIX": str(WORK / "pycache"),
}
# Dropped from the environment the sides inherit.
_ENV_DROP = {"PYTHONPATH", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE"}


# --------------------------------------------------------------------------------------------
# What a benchmark is


@dataclass
class Side:
    """One command to time; ``role`` is "conveyor", "anchor" or "limit"."""

    name: str
    role: str
    argv: list[str]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    before: Callable[[], None] | None = None  # untimed, before every run
    unavailable: str | None = None  # set when the side cannot run at all
    json_output: bool = True  # parse the last stdout line as JSON
    discard_stdout: bool = False  # for commands whose output is data (cat)
    timeout: float = 900.0
    # A cheap command that exits 3 with {"unavailable": ...} when the side cannot run (an API
    # still missing); run once, untimed, before the rounds.
    probe: list[str] | None = None


@dataclass(frozen=True)
class Metric:
    key: str  # "wall_s", "maxrss_mb", or a key the side reports
    unit: str  # "s", "ms", "us", "MB", "req/s"
    higher_is_better: bool = False


@dataclass(frozen=True)
class Goal:
    text: str
    min_ratio: float | None = None  # ratio = how many times better Conveyor is
    conveyor_max: float | None = None  # absolute bound on Conveyor's median, in the metric's unit


@dataclass
class Comparison:
    row: str  # "2a"
    work: str
    metric: Metric
    conveyor: str  # side names
    anchor: str
    goal: Goal | None = None


@dataclass
class Benchmark:
    id: str
    title: str
    sides: list[Side]
    comparisons: list[Comparison]
    warmup: int = 1
    rounds: int = 3
    setup: Callable[[], None] | None = None  # untimed, once, before any side runs
    teardown: Callable[[], None] | None = None  # untimed, once, after the rounds (free disk)
    pending: str | None = None  # why there is no Conveyor side yet
    # With no Conveyor side to compare with, the anchors run this many rounds and no warm-up
    # (their numbers are on record only); None: the usual warm-up and rounds.
    solo_rounds: int | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Running one command


@dataclass
class RunResult:
    ok: bool
    values: dict[str, float]
    unavailable: str | None = None
    error: str | None = None


def side_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(SIDE_ENV)
    env.update(extra or {})
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_side(side: Side) -> RunResult:
    """Run a side once; time it from spawn to reap, and read its peak RSS from wait4."""
    if side.before is not None:
        side.before()
    # Dirty pages from the previous run (a 1 GiB copy, say) would be written back while this
    # run is timed; flush them first so every run starts from the same state.
    os.sync()
    env = side_env(side.env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdout: Any = subprocess.DEVNULL if side.discard_stdout else out
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            side.argv,
            cwd=side.cwd,
            env=env,
            stdout=stdout,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        timer = threading.Timer(side.timeout, _kill_group, args=(proc,))
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        # Leftover children of the side (a server it failed to stop) must not outlive it.
        _kill_group(proc)
        out.seek(0)
        err.seek(0)
        stdout_text = out.read().decode(errors="replace")
        stderr_text = err.read().decode(errors="replace")

    values: dict[str, float] = {"wall_s": wall, "maxrss_mb": usage.ru_maxrss / 1024}
    reported: dict[str, Any] = {}
    if side.json_output:
        for line in reversed(stdout_text.strip().splitlines()):
            if line.startswith("{"):
                try:
                    reported = json.loads(line)
                except ValueError:
                    continue
                break
    if proc.returncode == EXIT_UNAVAILABLE and "unavailable" in reported:
        return RunResult(False, values, unavailable=str(reported["unavailable"]))
    if proc.returncode != 0:
        tail = (stderr_text.strip() or stdout_text.strip()).splitlines()[-6:]
        how = "timed out" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        return RunResult(False, values, error=f"{how}: " + " | ".join(tail))
    for k, v in reported.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            values[k] = float(v)
    return RunResult(True, values)


# --------------------------------------------------------------------------------------------
# Statistics


def summarize(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    out = {"n": len(s), "median": statistics.median(s), "min": s[0], "max": s[-1]}
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4, method="inclusive")
        out["q1"], out["q3"] = q[0], q[2]
    return out


# --------------------------------------------------------------------------------------------
# Running a benchmark


@dataclass
class SideOutcome:
    side: Side
    samples: list[dict[str, float]] = field(default_factory=list)
    unavailable: str | None = None
    error: str | None = None

    def metric(self, key: str) -> list[float]:
        return [s[key] for s in self.samples if key in s]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_benchmark(bench: Benchmark) -> dict[str, SideOutcome]:
    outcomes = {s.name: SideOutcome(s, unavailable=s.unavailable) for s in bench.sides}
    runnable = [s for s in bench.sides if s.unavailable is None]
    if bench.setup is not None and runnable:
        t0 = time.perf_counter()
        try:
            bench.setup()
        except Exception as exc:  # a broken setup fails this benchmark, not the suite
            for o in outcomes.values():
                o.error = o.error or f"setup failed: {type(exc).__name__}: {exc}"
            log(f"[{bench.id}] setup failed: {exc}")
            return outcomes
        log(f"[{bench.id}] setup {time.perf_counter() - t0:.1f} s")
        # setup may discover that a side cannot run (conveyor's first run failed, say)
        runnable = [s for s in bench.sides if s.unavailable is None]
        for s in bench.sides:
            outcomes[s.name].unavailable = s.unavailable
    for side in runnable:
        if side.probe:
            probe = run_side(
                Side(side.name, side.role, side.probe, cwd=side.cwd, env=side.env, timeout=120)
            )
            if probe.unavailable or probe.error:
                outcomes[side.name].unavailable = probe.unavailable or f"probe: {probe.error}"
                log(f"[{bench.id}] {side.name}: unavailable: {outcomes[side.name].unavailable}")
    runnable = [s for s in runnable if outcomes[s.name].unavailable is None]
    warmup, rounds = bench.warmup, bench.rounds
    if bench.solo_rounds is not None and not any(s.role == "conveyor" for s in runnable):
        warmup, rounds = 0, bench.solo_rounds
        log(f"[{bench.id}] no Conveyor side: anchors only, {rounds} round(s), no warm-up")
    for r in range(warmup + rounds):
        warm = r < warmup
        for side in runnable:
            o = outcomes[side.name]
            if o.unavailable or o.error:
                continue
            res = run_side(side)
            tag = "warm-up" if warm else f"round {r - warmup + 1}/{rounds}"
            if res.unavailable:
                o.unavailable = res.unavailable
                log(f"[{bench.id}] {side.name}: unavailable: {res.unavailable}")
            elif res.error:
                o.error = res.error
                log(f"[{bench.id}] {side.name}: FAILED: {res.error}")
            else:
                if not warm:
                    o.samples.append(res.values)
                log(
                    f"[{bench.id}] {tag} {side.name}: wall {res.values['wall_s']:.3f} s"
                    + "".join(
                        f", {k} {v:.4g}" for k, v in res.values.items() if k not in {"wall_s"}
                    )
                )
    if bench.teardown is not None:
        try:
            bench.teardown()
        except Exception as exc:  # leftovers cost disk, not results
            log(f"[{bench.id}] teardown failed: {exc}")
    return outcomes


# --------------------------------------------------------------------------------------------
# Rows of the results table


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if value < 1:
            return f"{value * 1e3:.1f} ms" if value < 0.1 else f"{value * 1e3:.0f} ms"
        return f"{value:.2f} s"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:.3g} {unit}"


def fmt_summary(summary: dict[str, float], unit: str) -> str:
    med = _fmt(summary["median"], unit)
    if summary["n"] < 2:
        return med
    lo, hi = (summary["q1"], summary["q3"]) if "q1" in summary else (summary["min"], summary["max"])
    scale = 1.0
    if unit == "s" and summary["median"] < 1:
        scale = 1e6 if summary["median"] < 1e-3 else 1e3
    return f"{med} ({_num(lo * scale)}-{_num(hi * scale)})"


def _num(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _side_state(o: SideOutcome | None) -> str | None:
    if o is None:
        return "no anchor"
    if o.unavailable:
        return o.unavailable
    if o.error:
        return "failed: " + o.error
    if not o.samples:
        return "no samples"
    return None


def build_rows(bench: Benchmark, outcomes: dict[str, SideOutcome]) -> list[dict[str, Any]]:
    rows = []
    for c in bench.comparisons:
        row: dict[str, Any] = {
            "row": c.row,
            "work": c.work,
            "metric": c.metric.key,
            "unit": c.metric.unit,
            "goal": c.goal.text if c.goal else "",
            "conveyor_side": c.conveyor,
            "anchor_side": c.anchor,
        }
        for role, name in (("conveyor", c.conveyor), ("anchor", c.anchor)):
            o = outcomes.get(name)
            state = _side_state(o)
            if role == "conveyor" and bench.pending and (o is None or o.unavailable):
                state = f"pending: {bench.pending}"
            if state is None and o is not None:
                vals = o.metric(c.metric.key)
                if vals:
                    row[role] = summarize(vals)
                    continue
                state = f"did not report {c.metric.key}"
            row[f"{role}_state"] = state
        ratio = None
        if "conveyor" in row and "anchor" in row:
            cv, av = row["conveyor"]["median"], row["anchor"]["median"]
            if c.metric.higher_is_better:
                ratio = cv / av if av else None
            else:
                ratio = av / cv if cv else None
        row["ratio"] = ratio
        met: bool | None = None
        if c.goal and "conveyor" in row and (c.goal.min_ratio is None or ratio is not None):
            met = True
            if c.goal.min_ratio is not None and ratio is not None:
                met = met and ratio >= c.goal.min_ratio
            if c.goal.conveyor_max is not None:
                met = met and row["conveyor"]["median"] <= c.goal.conveyor_max
        row["met"] = met
        rows.append(row)
    return rows


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(mem_kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    fs = subprocess.run(
        ["stat", "-f", "-c", "%T", str(WORK if WORK.exists() else BENCH)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "workdir_fs": fs,
        "openblas_env": {
            k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
        },
    }


def git_head() -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return "(no commit)"
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + (" + uncommitted changes in src/" if dirty else "")


def _cell(row: dict[str, Any], role: str) -> str:
    if role in row:
        return fmt_summary(row[role], row["unit"])
    state = str(row.get(role + "_state", "n/a")).replace("|", "/")
    if len(state) > 140:
        state = state[:139] + "…"
    return f"_{state}_"


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    m = meta["machine"]
    lines = [
        "# Conveyor benchmarks — latest run",
        "",
        f"- when: {meta['finished_at']} ({meta['mode']} mode, {meta['duration_s']:.0f} s)",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB, {m['platform']}, "
        f"scratch on {m['workdir_fs']}",
        f"- conveyor: {meta['conveyor']}; repo at {meta['git']}",
        "- anchors: " + ", ".join(f"{k} {v}" for k, v in sorted(meta["anchors"].items())),
        f"- load average (1 min) at start / end: {meta['load_start']:.2f} / {m['loadavg_1m']:.2f}"
        + (
            " — **the machine was busy: numbers are noisy**"
            if max(meta["load_start"], m["loadavg_1m"]) > 0.7
            else ""
        ),
        "",
        "Each cell: median (IQR with 4+ samples, else min-max) over the timed rounds, after "
        "warm-up; sides ran alternately in separate processes. **ratio** = how many times better "
        "Conveyor is (anchor time / Conveyor time; for req/s, Conveyor / anchor). See "
        "[bench/README.md](../README.md).",
        "",
        "| # | work | conveyor median | anchor median | ratio | goal | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        ratio = f"{row['ratio']:.2f}x" if row.get("ratio") is not None else "—"
        met = {True: "yes", False: "**no**", None: "—"}[row.get("met")]
        work = f"{row['work']} ({row['anchor_side']})"
        lines.append(
            f"| {row['row']} | {work} | {_cell(row, 'conveyor')} | "
            f"{_cell(row, 'anchor')} | {ratio} | {row['goal']} | {met} |"
        )
    notes = [(b["id"], n) for b in report["benchmarks"] for n in b["notes"]]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- row {bid}: {n}" for bid, n in notes]
    return "\n".join(lines) + "\n"


def write_results(report: dict[str, Any], results_dir: Path = RESULTS) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = results_dir / "latest.json", results_dir / "latest.md"
    jpath.write_text(json.dumps(report, indent=2, default=str) + "\n")
    mpath.write_text(render_markdown(report))
    return jpath, mpath
