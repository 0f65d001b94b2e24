"""Row 2: ingest a 1 GiB file into the artifact store (hash + store).

Anchor: ``dvc add`` (md5, then the file moved into the cache and copied back). Limits: ``cp`` of
the same file (the same bytes written once, as the issue's goal has it), the same copy made
durable (``cp`` then ``sync FILE``: Conveyor's store fsyncs, DVC and ``cp`` do not) and ``cat``
to /dev/null (the bytes read once).
Every side starts from an empty store: the store, DVC's cache and DVC's state database (which
would otherwise remember the md5 by inode and mtime) are removed before each run, untimed, and
dirty pages are flushed (``sync``). The file stays in the page cache throughout: the reads are
warm for every side.
"""

from __future__ import annotations

import os
import shutil

from harness import Benchmark, Comparison, Goal, Metric, Side

from rows._common import SIDES, Context, rmtree, run_checked, unlink

SIZE = 1 << 30


def _make_file(path: os.PathLike[str], size: int) -> None:
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as fh:
        chunk = 4 << 20  # small: the harness's own peak RSS is the floor of every side's
        for _ in range(size // chunk):
            fh.write(os.urandom(chunk))
    os.replace(tmp, path)


def build(ctx: Context) -> list[Benchmark]:
    dvc = ctx.anchor("dvc")
    conveyor = ctx.conveyor()
    work = ctx.work("row2")
    data = work / "data.bin"
    repo = work / "dvc-repo"
    store = work / "conveyor-store"
    cp_dest = work / "cp-dest.bin"

    def setup() -> None:
        _make_file(data, SIZE)
        if dvc.unavailable is None and not (repo / ".dvc").exists():
            rmtree(repo)
            repo.mkdir()
            dvc_bin = dvc.bin("dvc")
            run_checked([dvc_bin, "init", "--no-scm", "-q"], cwd=repo)
            for key, value in (
                ("core.analytics", "false"),
                ("core.check_update", "false"),
                ("core.site_cache_dir", str(repo / ".site-cache")),
            ):
                run_checked([dvc_bin, "config", key, value], cwd=repo)

    def before_dvc() -> None:
        rmtree(repo / ".dvc" / "cache")
        rmtree(repo / ".site-cache")
        unlink(repo / "data.bin.dvc")
        unlink(repo / ".gitignore")
        target = repo / "data.bin"
        # After `dvc add` the workspace file is a fresh copy out of the cache, so it can stay.
        if not (target.exists() and target.stat().st_size == SIZE):
            unlink(target)
            shutil.copyfile(data, target)

    def teardown() -> None:
        # Keep only the source file (1 GiB) for the next invocation; the rest is 4 GiB more.
        rmtree(store)
        rmtree(repo / ".dvc" / "cache")
        unlink(repo / "data.bin")
        unlink(cp_dest)

    sides = [
        Side(
            "conveyor",
            "conveyor",
            [conveyor.python, str(SIDES / "conveyor_put.py"), str(store), str(data)],
            cwd=work,
            before=lambda: rmtree(store),
            unavailable=conveyor.unavailable,
        ),
        Side(
            "dvc add",
            "anchor",
            [dvc.bin("dvc"), "add", "-q", "data.bin"],
            cwd=repo,
            before=before_dvc,
            unavailable=dvc.unavailable,
            json_output=False,
        ),
        Side(
            "cp",
            "limit",
            ["cp", str(data), str(cp_dest)],
            before=lambda: unlink(cp_dest),
            json_output=False,
        ),
        # Conveyor's store fsyncs what it writes (a crash must not leave a torn object); DVC
        # and cp do not. This limit is the same copy made durable.
        Side(
            "cp + fsync",
            "limit",
            ["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", str(data), str(cp_dest)],
            before=lambda: unlink(cp_dest),
            json_output=False,
        ),
        Side(
            "cat > /dev/null", "limit", ["cat", str(data)], json_output=False, discard_stdout=True
        ),
    ]
    wall = Metric("wall_s", "s")
    return [
        Benchmark(
            id="2",
            title="ingest a 1 GiB file",
            sides=sides,
            comparisons=[
                Comparison(
                    "2a",
                    "ingest 1 GiB (hash + store)",
                    wall,
                    "conveyor",
                    "dvc add",
                    Goal(">= 5x faster", min_ratio=5),
                ),
                Comparison(
                    "2b",
                    "ingest 1 GiB vs plain copy",
                    wall,
                    "conveyor",
                    "cp",
                    Goal("within 1.5x of cp", min_ratio=1 / 1.5),
                ),
                Comparison("2c", "ingest 1 GiB vs durable copy", wall, "conveyor", "cp + fsync"),
                Comparison("2d", "ingest 1 GiB vs raw read", wall, "conveyor", "cat > /dev/null"),
            ],
            warmup=1,
            rounds=2 if ctx.quick else 5,
            setup=setup,
            teardown=teardown,
            notes=[
                "Wall time of the whole command, interpreter start included; warm page cache; "
                "each side starts from an empty store (untimed cleanup + sync)."
            ],
        )
    ]


__all__ = ["build"]
