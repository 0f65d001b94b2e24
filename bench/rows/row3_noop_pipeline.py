"""Row 3: re-run a 20-step pipeline where nothing changed, interpreter start included.

Anchor: ``dvc repro`` of 20 chained stages in a git repository, each stage a ``python -c`` that
reads its upstream's output and writes its own (the first reads parameter ``n`` from
params.yaml). Conveyor: ``conveyor run`` of 20 chained ``@step`` functions doing the same
arithmetic, parameter ``n`` from conveyor.yaml. Both pipelines run once untimed (cache filled),
then every timed run is a no-op.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

from harness import Benchmark, Comparison, Goal, Metric, Side

from rows._common import Context, Tool, rmtree, run_checked

if TYPE_CHECKING:
    from pathlib import Path

STEPS = 20


def _name(i: int) -> str:
    return f"s{i:02d}"


def write_conveyor_project(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "conveyor.yaml").write_text("pipeline: steps:pipeline\nparams: {n: 1}\n")
    doc = '"""20 chained steps for bench row 3 (written by bench/rows/row3_noop_pipeline.py)."""'
    lines = [doc, "", "from conveyor import Pipeline, step", ""]
    lines += ["", "@step", f"def {_name(1)}(n: int) -> int:", "    return n + 1", ""]
    for i in range(2, STEPS + 1):
        up = _name(i - 1)
        lines += ["", "@step", f"def {_name(i)}({up}: int) -> int:", f"    return {up} + 1", ""]
    names = ", ".join(_name(i) for i in range(1, STEPS + 1))
    lines += ["", f'pipeline = Pipeline([{names}], name="bench")', ""]
    (root / "steps.py").write_text("\n".join(lines))


def write_dvc_project(root: Path, python: str, dvc_yaml: Path | None = None) -> None:
    if dvc_yaml is None:
        (root / "params.yaml").write_text("n: 1\n")
    out = ["stages:"]
    for i in range(1, STEPS + 1):
        me = _name(i)
        if i == 1:
            code = (
                "import re; n = int(re.search(r'n: *(\\d+)', open('params.yaml').read())[1]); "
                f"open('{me}.txt', 'w').write(str(n + 1))"
            )
            deps, params = [], ["n"]
        else:
            up = _name(i - 1)
            code = f"open('{me}.txt', 'w').write(str(int(open('{up}.txt').read()) + 1))"
            deps, params = [f"{up}.txt"], []
        # JSON strings are valid YAML scalars: no quoting surprises from ': ' in the code.
        out += [f"  {me}:", f"    cmd: {json.dumps(f'{python} -c {json.dumps(code)}')}"]
        if deps:
            out += ["    deps:"] + [f"      - {d}" for d in deps]
        if params:
            out += ["    params:"] + [f"      - {p}" for p in params]
        out += ["    outs:", f"      - {me}.txt"]
    (dvc_yaml or root / "dvc.yaml").write_text("\n".join(out) + "\n")


def _dvc_is_ready(repo: Path, dvc: Tool) -> bool:
    """The repo from an earlier invocation can be reused: same stages, all run, committed."""
    probe = repo / ".bench-dvc.yaml"
    write_dvc_project(probe.parent, dvc.python, dvc_yaml=probe)
    same = (repo / "dvc.yaml").exists() and (repo / "dvc.yaml").read_text() == probe.read_text()
    probe.unlink()
    if not (same and (repo / "dvc.lock").exists()):
        return False
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=False
    )
    return status.returncode == 0 and not status.stdout.strip()


def _setup_dvc(repo: Path, dvc: Tool) -> None:
    if repo.exists() and _dvc_is_ready(repo, dvc):
        return
    rmtree(repo)
    repo.mkdir(parents=True)
    run_checked(["git", "init", "-q"], cwd=repo)
    run_checked(["git", "config", "user.email", "bench@localhost"], cwd=repo)
    run_checked(["git", "config", "user.name", "bench"], cwd=repo)
    run_checked([dvc.bin("dvc"), "init", "-q"], cwd=repo)
    for key, value in (("core.analytics", "false"), ("core.check_update", "false")):
        run_checked([dvc.bin("dvc"), "config", key, value], cwd=repo)
    write_dvc_project(repo, dvc.python)
    run_checked([dvc.bin("dvc"), "repro"], cwd=repo)
    final = (repo / f"{_name(STEPS)}.txt").read_text().strip()
    if final != str(STEPS + 1):
        raise RuntimeError(f"dvc pipeline computed {final}, expected {STEPS + 1}")
    run_checked(["git", "add", "-A"], cwd=repo)
    run_checked(["git", "commit", "-qm", "bench pipeline"], cwd=repo)


def _setup_conveyor(project: Path, conveyor: Tool, side: Side) -> None:
    """Fill Conveyor's cache; on failure, mark the side unavailable with the reason."""
    rmtree(project)
    write_conveyor_project(project)
    first = subprocess.run(
        [conveyor.bin("conveyor"), "run"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if first.returncode != 0:
        tail = (first.stderr.strip() or first.stdout.strip()).splitlines()[-4:]
        side.unavailable = (
            f"`conveyor run` failed on the bench project (exit "
            f"{first.returncode}): " + " | ".join(tail)
        )
        return
    # The timed runs must be no-ops: check that a second run hits the cache for every step.
    again = subprocess.run(
        [conveyor.bin("conveyor"), "run", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    try:
        steps = json.loads(again.stdout)["steps"]
    except (ValueError, KeyError, TypeError):
        print(
            "[3] note: could not read `conveyor run --json`; cache hits not verified",
            file=sys.stderr,
        )
        return
    not_cached = [s["name"] for s in steps if s.get("status") != "cached"]
    if not_cached or len(steps) != STEPS:
        side.unavailable = (
            f"second `conveyor run` is not a no-op: {len(steps)} steps, "
            f"not cached: {', '.join(not_cached) or '-'}"
        )


def build(ctx: Context) -> list[Benchmark]:
    dvc = ctx.anchor("dvc")
    conveyor = ctx.conveyor()
    work = ctx.work("row3")
    repo, project = work / "dvc-repo", work / "conveyor-project"

    conveyor_side = Side(
        "conveyor",
        "conveyor",
        [conveyor.bin("conveyor"), "run"],
        cwd=project,
        unavailable=conveyor.unavailable,
        json_output=False,
    )
    dvc_side = Side(
        "dvc repro",
        "anchor",
        [dvc.bin("dvc"), "repro"],
        cwd=repo,
        unavailable=dvc.unavailable,
        json_output=False,
    )

    def setup() -> None:
        if dvc.unavailable is None:
            _setup_dvc(repo, dvc)
        if conveyor.unavailable is None:
            _setup_conveyor(project, conveyor, conveyor_side)

    wall = Metric("wall_s", "s")
    return [
        Benchmark(
            id="3",
            title="no-op re-run of a 20-step pipeline",
            sides=[conveyor_side, dvc_side],
            comparisons=[
                Comparison(
                    "3",
                    "no-op re-run, 20 steps, incl. interpreter start",
                    wall,
                    "conveyor",
                    "dvc repro",
                    Goal(">= 5x faster and < 0.2 s", min_ratio=5, conveyor_max=0.2),
                )
            ],
            warmup=1,
            rounds=5 if ctx.quick else 10,
            setup=setup,
        )
    ]


__all__ = ["build"]
