"""Row 7: lineage query "which models used feature X" over 100,000 runs and ~1,000,000 edges.

No anchor: the limit is the database's own index scan. The goal is absolute, < 50 ms, on
SQLite (7a, 7c) and on PostgreSQL (7b, 7d).

The graph (``sides/lineage_query.py prepare``, deterministic, Conveyor's own schema made by its
migrations, node names as ``conveyor.store.metadata.lineage`` writes them):

- 2,000 dataset versions (100 datasets x 20 versions) and 500 feature versions (125 features x
  4 versions), each feature ``computed_from`` 2 dataset versions;
- 200 pipelines of 5 steps, each run 100 times: 20,000 pipeline runs, 100,000 step runs. Every
  step run reads 1-3 dataset versions (the n-th run of a pipeline reads version n // 5), 5-6
  features (fixed by the pipeline's code; popularity is skewed, 1 / (rank + 10)) and the
  artifacts of the one or two steps before it, and writes one artifact;
- every 4th pipeline run registers a model version from its last step (5,000 versions:
  ``trained``, ``metrics``, ``bundle`` edges), each evaluated twice on a held-out dataset
  version (10,000 evaluations: ``evaluated``, ``evaluated_on``).

That is 996,000 edges. Feature X is the median feature by the number of step runs reading it
(600 of the 100,000 runs, 0.6%); everything downstream of it is ~3,500 nodes, 150 models.

Timed inside the side's process, after one warm-up call: ``models_using(store, X)`` (the public
call, with its evaluation reads) and ``downstream(store, X, details=False)`` (the walk and the
edges between the reached nodes); the median of N calls per process, one process per round.
The graph is built once and kept: ``bench/work/row7/lineage.db`` and the PostgreSQL database
``conveyor_bench7`` (on the server of ``$BENCH_PG_URL``, else ``$CONVEYOR_TEST_PG_URL``, else
``scripts/services.sh``), rebuilt when the side script, the migrations or Conveyor's version
change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from urllib.parse import urlsplit, urlunsplit

from harness import REPO, Benchmark, Comparison, Goal, Metric, Side

from rows._common import SIDES, Context, Tool, run_checked

SCRIPT = SIDES / "lineage_query.py"
MIGRATIONS = REPO / "src" / "conveyor" / "store" / "metadata" / "migrations" / "versions"
DATABASE = "conveyor_bench7"
GOAL = Goal("< 50 ms", conveyor_max=0.05)


def _pg_url() -> tuple[str | None, str | None]:
    """(URL of the bench database, None) or (None, why there is none)."""
    url = os.environ.get("BENCH_PG_URL") or os.environ.get("CONVEYOR_TEST_PG_URL")
    if not url:
        services = REPO / "scripts" / "services.sh"
        status = subprocess.run(
            ["bash", str(services), "status"], capture_output=True, text=True, check=False
        )
        if status.returncode != 0:
            return None, "PostgreSQL is not running (start it: bash scripts/services.sh start)"
        env = subprocess.run(
            ["bash", str(services), "env"], capture_output=True, text=True, check=False
        ).stdout
        # One `export NAME=value` line per service (PostgreSQL, Redis): take PostgreSQL's.
        found = [
            line.partition("=")[2]
            for line in env.splitlines()
            if line.startswith("export CONVEYOR_TEST_PG_URL=")
        ]
        if not found:
            return None, "scripts/services.sh env printed no CONVEYOR_TEST_PG_URL"
        url = found[0]
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{DATABASE}")), None


def _version(conveyor: Tool, where: str) -> str:
    stamped = [SCRIPT, *sorted(MIGRATIONS.glob("[0-9]*.py"))]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in stamped)).hexdigest()
    return f"{conveyor.version} {digest[:16]} {where}"


def build(ctx: Context) -> list[Benchmark]:
    conveyor = ctx.conveyor()
    work = ctx.work("row7")
    calls = 5 if ctx.quick else 10
    sqlite_url = f"sqlite:///{work / 'lineage.db'}"
    pg_url, pg_missing = _pg_url()
    stores = {"sqlite": sqlite_url, "postgresql": pg_url}

    def setup() -> None:
        for backend, url in stores.items():
            side = sides[backend]
            if url is None or side.unavailable is not None:
                continue
            stamp = work / f"{backend}.version"
            # The stamp names the server and database, not the credentials.
            parts = urlsplit(url)
            where = f"{parts.scheme} {parts.hostname}:{parts.port} {parts.path}"
            version = _version(conveyor, where)
            fresh = stamp.exists() and stamp.read_text() == version
            if fresh:
                check = subprocess.run(
                    [conveyor.python, str(SCRIPT), "check", url],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                fresh = check.returncode == 0
            if not fresh:
                stamp.unlink(missing_ok=True)
                try:
                    run_checked([conveyor.python, str(SCRIPT), "prepare", url], cwd=work)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    # One backend that cannot be built (a server refusing CREATE DATABASE)
                    # must not hide the other's numbers.
                    side.unavailable = f"could not build the graph: {exc}"
                    continue
                stamp.write_text(version)

    sides = {
        backend: Side(
            f"conveyor-{backend}",
            "conveyor",
            [conveyor.python, str(SCRIPT), "measure", url or "", str(calls)],
            cwd=work,
            unavailable=conveyor.unavailable or (pg_missing if url is None else None),
            probe=[conveyor.python, str(SCRIPT), "--probe"],
        )
        for backend, url in stores.items()
    }

    def comparison(row: str, what: str, key: str, backend: str) -> Comparison:
        name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
        return Comparison(
            row,
            f"{what}, {name} (100k runs, 1M edges)",
            Metric(key, "s"),
            f"conveyor-{backend}",
            "no anchor",
            GOAL,
        )

    notes = [
        "996,000 edges: 100,000 step runs in 20,000 runs of 200 five-step pipelines, 2,000 "
        "dataset versions, 500 feature versions, 5,000 model versions, 10,000 evaluations; "
        "feature X is read by 600 runs (0.6%, the median feature) and reaches ~3,500 nodes "
        "and 150 model versions; no evaluation is on data derived from it (evaluations are on "
        "dataset versions), so models_using's evaluation reads find none (see "
        "rows/row7_lineage.py).",
        f"each round is a fresh process: one warm-up call, then the median of {calls} calls; "
        "`first_models_using_s` in latest.json is the process's first call (connection "
        "included). PostgreSQL's table was bulk-loaded then VACUUM ANALYZEd (what autovacuum "
        "does after a load); SQLite's has no ANALYZE statistics, like a user's file.",
    ]
    return [
        Benchmark(
            id="7",
            title="lineage query",
            sides=list(sides.values()),
            comparisons=[
                comparison("7a", "which models used feature X", "models_using_s", "sqlite"),
                comparison("7b", "which models used feature X", "models_using_s", "postgresql"),
                comparison("7c", "downstream of feature X, bare walk", "downstream_s", "sqlite"),
                comparison(
                    "7d", "downstream of feature X, bare walk", "downstream_s", "postgresql"
                ),
            ],
            warmup=1,
            rounds=3 if ctx.quick else 5,
            setup=setup,
            notes=notes,
        )
    ]


__all__ = ["build"]
