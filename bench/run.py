"""Run Conveyor's benchmarks side by side with the anchors and write bench/results/latest.{json,md}.

    python bench/run.py            # full mode (the sizes of issue 3's table; ~15-20 minutes)
    python bench/run.py --quick    # scaled-down rows, fewer rounds (under 3 minutes once the
                                   # anchors are installed)
    python bench/run.py --only 2,3 # some rows only

Installs the anchors first when their venvs are missing or out of date (bench/setup_anchors.py;
a few minutes, once). Stdlib only: run it with Conveyor's venv python (``make bench``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import setup_anchors
from rows import ALL
from rows._common import Context


def _ensure_anchors() -> None:
    for spec in setup_anchors.VENVS:
        if not setup_anchors.is_current(spec):
            harness.log(f"[setup] {spec.name} missing or out of date: installing the anchors")
            setup_anchors.build(
                spec, force=False, relock=False, python=setup_anchors.default_python()
            )


def _anchor_versions() -> dict[str, str]:
    ctx = Context(quick=True)
    out = {}
    for name in ("mlflow", "dvc", "evidently", "mlserver", "pandas"):
        tool = ctx.anchor(name)
        out[name] = tool.version if tool.unavailable is None else "NOT INSTALLED"
    return out


def _bench_record(
    bench: harness.Benchmark, outcomes: dict[str, harness.SideOutcome]
) -> dict[str, Any]:
    sides = {}
    for name, o in outcomes.items():
        keys = sorted({k for s in o.samples for k in s})
        sides[name] = {
            "role": o.side.role,
            "argv": o.side.argv,
            "unavailable": o.unavailable,
            "error": o.error,
            "samples": o.samples,
            "summary": {k: harness.summarize(o.metric(k)) for k in keys},
        }
    return {
        "id": bench.id,
        "title": bench.title,
        "warmup": bench.warmup,
        "rounds": bench.rounds,
        "pending": bench.pending,
        "notes": bench.notes,
        "sides": sides,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down rows, fewer rounds")
    parser.add_argument("--only", default="", help="comma-separated row numbers, e.g. 1,2,3,6")
    parser.add_argument(
        "--no-setup", action="store_true", help="do not install missing anchors (their rows say so)"
    )
    parser.add_argument("--results-dir", type=Path, default=harness.RESULTS)
    args = parser.parse_args(argv)
    only = {r.strip() for r in args.only.split(",") if r.strip()}

    t_start = time.perf_counter()
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()[0]
    if not args.no_setup:
        _ensure_anchors()
    ctx = Context(quick=args.quick)
    conveyor = ctx.conveyor()
    conveyor_desc = (
        f"{conveyor.version} ({conveyor.venv})"
        if conveyor.unavailable is None
        else conveyor.unavailable
    )
    harness.log(f"[bench] {'quick' if args.quick else 'full'} mode; conveyor: {conveyor_desc}")

    benchmarks: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for module in ALL:
        row_id = module.__name__.split(".")[-1].removeprefix("row").split("_")[0]
        if only and row_id not in only:
            continue
        try:
            for bench in module.build(ctx):
                t0 = time.perf_counter()
                harness.log(f"[{bench.id}] {bench.title}")
                outcomes = harness.run_benchmark(bench)
                record = _bench_record(bench, outcomes)
                record["duration_s"] = time.perf_counter() - t0
                benchmarks.append(record)
                rows += harness.build_rows(bench, outcomes)
        except Exception as exc:  # one broken row must not hide the others' numbers
            traceback.print_exc()
            rows.append(
                {
                    "row": row_id,
                    "work": module.__doc__.splitlines()[0] if module.__doc__ else row_id,
                    "unit": "s",
                    "goal": "",
                    "anchor_side": "?",
                    "conveyor_state": f"bench error: {exc}",
                    "anchor_state": f"bench error: {exc}",
                    "ratio": None,
                    "met": None,
                }
            )

    duration_s = time.perf_counter() - t_start
    report: dict[str, Any] = {
        "meta": {
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "duration_s": duration_s,
            "mode": "quick" if args.quick else "full",
            "load_start": round(load_start, 2),
            "only": sorted(only),
            "machine": harness.machine_info(),
            "conveyor": conveyor_desc,
            "git": harness.git_head(),
            "anchors": _anchor_versions(),
        },
        "rows": rows,
        "benchmarks": benchmarks,
    }
    jpath, mpath = harness.write_results(report, args.results_dir)
    print(mpath.read_text())
    harness.log(f"[bench] wrote {jpath} and {mpath} in {duration_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
