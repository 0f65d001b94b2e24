"""Row 7, Conveyor side: "which models used feature X" over 100,000 runs and ~1,000,000 edges.

    lineage_query.py prepare URL        # untimed: build the graph into the store at URL
    lineage_query.py check URL          # exit 1 unless URL holds the graph prepare builds
    lineage_query.py measure URL N      # time models_using and downstream, N calls each
    lineage_query.py --probe            # exit 3 with the reason when the API is missing

``prepare`` opens ``MetadataStore.open(URL)`` (so Conveyor's migrations create the tables, the
primary key (src, dst, relation) and the index (dst, src)), empties ``lineage_edge`` and
bulk-inserts the graph described in ``rows/row7_lineage.py`` through the store's own DBAPI
connection: ``executemany`` on SQLite, ``COPY`` on PostgreSQL (followed there by ``VACUUM
ANALYZE``, what autovacuum does to a table after a bulk load; SQLite gets no ``ANALYZE``, as a
user's file has none). It prints the feature it picked as X and the graph's counts.

``measure`` finds feature X again (the same deterministic choice), then calls, in this process,
``models_using(store, X)`` (the public call: the walk and its evaluation reads) once to warm up
and N times timed, and the same for ``downstream(store, X, details=False)`` (the bare walk plus
the edges between the reached nodes). Prints one JSON line: ``models_using_s`` and
``downstream_s`` (medians), ``first_models_using_s`` (the first call of the process, the
connection included), and sizes of the answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conveyor.store.metadata import MetadataStore

EXIT_UNAVAILABLE = 3

# The shape (see rows/row7_lineage.py): 100 dataset names x 20 versions, 125 feature names x 4
# versions, 200 pipelines of 5 steps run 100 times each (100,000 step runs), every 4th pipeline
# run registers a model version (5,000), each version evaluated twice (10,000 evaluations).
DATASET_NAMES, DATASET_VERSIONS = 100, 20
FEATURE_NAMES, FEATURE_VERSIONS = 125, 4
PIPELINES, EXECUTIONS, STEPS = 200, 100, 5
REGISTER_EVERY, EVALUATIONS_PER_VERSION = 4, 2
SEED = 7
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _unavailable(reason: str) -> None:
    print(json.dumps({"unavailable": reason}))
    sys.exit(EXIT_UNAVAILABLE)


def _hex(text: str, size: int = 32) -> str:
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def _dataset(i: int) -> str:
    return f"dataset:blake3:{_hex(f'dataset {i}')}"


def _feature(i: int) -> str:
    return f"feature:feat_{i // FEATURE_VERSIONS:03d}@blake3:{_hex(f'feature {i}')}"


def _artifact(run_id: str) -> str:
    return f"artifact:blake3:{_hex(f'artifact {run_id}')}"


def _pick(rng: random.Random, weights: list[float], k: int) -> list[int]:
    """k distinct indices drawn with the given weights."""
    chosen: set[int] = set()
    while len(chosen) < k:
        chosen.update(rng.choices(range(len(weights)), weights=weights, k=k - len(chosen)))
    return sorted(chosen)


def edges() -> Iterator[tuple[str, str, str, dt.datetime]]:
    """The graph, deterministically: (src, dst, relation, created_at)."""
    rng = random.Random(SEED)
    n_features = FEATURE_NAMES * FEATURE_VERSIONS
    # Feature popularity is skewed, as in a real feature store: a few are read everywhere,
    # most by a handful of pipelines.
    feature_weights = [1.0 / (rank + 10) for rank in range(n_features)]
    rng.shuffle(feature_weights)
    for f in range(n_features):
        for d in _pick(rng, [1.0] * DATASET_NAMES, 2):
            yield (
                _dataset(d * DATASET_VERSIONS + f % DATASET_VERSIONS),
                _feature(f),
                "computed_from",
                T0,
            )
    evaluation_id = 0
    for p in range(PIPELINES):
        # What each step of pipeline p reads, fixed by its code: dataset names and features.
        step_datasets = [_pick(rng, [1.0] * DATASET_NAMES, 3 if s == 0 else 2) for s in range(5)]
        step_features = [_pick(rng, feature_weights, 6 if s == 0 else 5) for s in range(5)]
        for e in range(EXECUTIONS):
            at = T0 + dt.timedelta(hours=e * PIPELINES + p)
            # New dataset versions arrive over time: execution e reads version e // 5.
            version = e * DATASET_VERSIONS // EXECUTIONS
            outputs: list[str] = []
            last_run = ""
            for s in range(STEPS):
                run_node = f"run:{_hex(f'run {p} {e} {s}', 16)}"
                # The first step reads 3 dataset versions, the second 1, the others 2; every
                # step but the first reads the artifacts of the one or two steps before it.
                wanted = step_datasets[s][: (3, 1, 2, 2, 2)[s]]
                reads = [_dataset(d * DATASET_VERSIONS + version) for d in wanted]
                reads += outputs[-2:] + [_feature(f) for f in step_features[s]]
                for src in reads:
                    yield src, run_node, "input", at
                out = _artifact(run_node)
                yield run_node, out, "output", at
                outputs.append(out)
                last_run = run_node
            if e % REGISTER_EVERY == REGISTER_EVERY - 1:
                model = f"model:model_{p:03d}/{e // REGISTER_EVERY + 1}"
                yield last_run, model, "trained", at
                yield last_run, model, "metrics", at
                yield outputs[-1], model, "bundle", at
                for k in range(EVALUATIONS_PER_VERSION):
                    evaluation_id += 1
                    ev = f"evaluation:{evaluation_id}"
                    yield model, ev, "evaluated", at
                    d = step_datasets[0][k % len(step_datasets[0])]
                    held_out = _dataset(d * DATASET_VERSIONS + min(version + 1, 19))
                    yield held_out, ev, "evaluated_on", at


def feature_x(store: MetadataStore) -> tuple[str, int, int]:
    """Feature X: the feature read by the median number of runs among those any run reads
    (ties to the smaller node id). Returns (node, runs reading it, runs in all)."""
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import lineage_edge as e

    with store.read() as conn:
        readers = Counter(
            dict(
                conn.execute(
                    sa.select(e.c.src, sa.func.count())
                    .where(e.c.src.like("feature:%"), e.c.relation == "input")
                    .group_by(e.c.src)
                ).all()
            )
        )
        runs = conn.execute(
            sa.select(sa.func.count()).where(e.c.src.like("run:%"), e.c.relation == "output")
        ).scalar_one()
    ranked = sorted(readers.items(), key=lambda kv: (kv[1], kv[0]))
    node, count = ranked[(len(ranked) - 1) // 2]
    return node, count, runs


def _index_sql(cur: Any, dialect: str) -> str:
    if dialect == "postgresql":
        cur.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_lineage_edge_dst_src'")
    else:
        cur.execute("SELECT sql FROM sqlite_master WHERE name = 'ix_lineage_edge_dst_src'")
    row = cur.fetchone()
    if row is None:
        sys.exit("the schema has no index ix_lineage_edge_dst_src: update this script")
    return str(row[0])


def _create_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` when it does not exist (SQLite: start anew)."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    server = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": parsed.database},
            ).first()
            if exists is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    finally:
        server.dispose()


def expected_edges() -> int:
    return sum(1 for _ in edges())


def check(url: str) -> None:
    import sqlalchemy as sa

    from conveyor.core.errors import ConveyorError
    from conveyor.store.metadata import MetadataStore
    from conveyor.store.metadata.schema import lineage_edge

    try:
        store = MetadataStore.open(url)
        with store.read() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(lineage_edge)).scalar_one()
        store.close()
    except (ConveyorError, sa.exc.SQLAlchemyError) as exc:
        sys.exit(f"{url}: {exc}")
    if n != expected_edges():
        sys.exit(f"{url} holds {n} edges, not the graph prepare builds")
    print(json.dumps({"edges": n}))


def prepare(url: str) -> None:
    from conveyor.store.metadata import MetadataStore

    t0 = time.perf_counter()
    _create_database(url)
    store = MetadataStore.open(url)
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DELETE FROM lineage_edge")
        # Conveyor's secondary index, dropped for the load and made again from its own
        # definition: one sort instead of a million random b-tree inserts.
        index_sql = _index_sql(cur, store.dialect)
        cur.execute("DROP INDEX ix_lineage_edge_dst_src")
        n = 0
        if store.dialect == "postgresql":
            buf = io.StringIO()
            for s, d, r, at in edges():
                buf.write(f"{s}\t{d}\t{r}\t{at.isoformat()}\n")
                n += 1
            buf.seek(0)
            with cur.copy(  # type: ignore[attr-defined]
                "COPY lineage_edge (src, dst, relation, created_at) FROM STDIN"
            ) as copy:
                while chunk := buf.read(1 << 20):
                    copy.write(chunk)
            cur.execute(index_sql)
            raw.commit()
            raw.dbapi_connection.autocommit = True  # type: ignore[union-attr]
            cur.execute("VACUUM ANALYZE lineage_edge")
        else:
            cur.execute("PRAGMA cache_size=-1000000")
            rows = [
                (s, d, r, at.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"))
                for s, d, r, at in edges()
            ]
            n = len(rows)
            # Sorted by the primary key, the b-tree of the table and of its key grows at the end.
            rows.sort()
            cur.executemany(
                "INSERT INTO lineage_edge (src, dst, relation, created_at) VALUES (?, ?, ?, ?)",
                rows,
            )
            cur.execute(index_sql)
            raw.commit()
            # Everything into the database file, so that it is read like a user's store.
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cur.close()
    finally:
        raw.close()
    x, readers, runs = feature_x(store)
    store.close()
    print(
        json.dumps(
            {
                "edges": n,
                "runs": runs,
                "feature_x": x,
                "feature_x_runs": readers,
                "build_s": time.perf_counter() - t0,
            }
        )
    )


def measure(url: str, calls: int) -> None:
    from conveyor.lineage.graph import downstream, models_using
    from conveyor.store.metadata import MetadataStore

    store = MetadataStore.open(url)
    x, readers, runs = feature_x(store)
    store.close()
    # A fresh engine: the first call below pays for the connection, as a user's command does.
    store = MetadataStore.open(url, migrate=False)

    t0 = time.perf_counter()
    answer = models_using(store, x)
    first = time.perf_counter() - t0
    using: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        again = models_using(store, x)
        using.append(time.perf_counter() - t0)
        if again != answer:
            sys.exit("models_using answered differently on the same store")
    walk = downstream(store, x, details=False)
    bare: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        downstream(store, x, details=False)
        bare.append(time.perf_counter() - t0)
    store.close()
    if not answer["training"]:
        sys.exit(f"{x} reached no model: the graph is not the one prepare builds")
    print(
        json.dumps(
            {
                "models_using_s": statistics.median(using),
                "downstream_s": statistics.median(bare),
                "first_models_using_s": first,
                "models_training": len(answer["training"]),
                "models_evaluation": len(answer["evaluation"]),
                "reached_nodes": len(walk.nodes),
                "reached_edges": len(walk.edges),
                "feature_x_runs": readers,
                "runs": runs,
            }
        )
    )


def probe() -> None:
    try:
        from conveyor.lineage.graph import downstream, models_using  # noqa: F401
    except ImportError as exc:
        _unavailable(f"conveyor.lineage.graph is missing: {exc}")
    print(json.dumps({"ok": True}))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--probe"]:
        probe()
    elif argv[:1] == ["prepare"] and len(argv) == 2:
        import sqlalchemy as sa

        from conveyor.core.errors import ConveyorError

        try:
            prepare(argv[1])
        except (ConveyorError, sa.exc.SQLAlchemyError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            sys.exit(f"cannot build the graph in {sa.make_url(argv[1]).database}: {reason}")
    elif argv[:1] == ["check"] and len(argv) == 2:
        check(argv[1])
    elif argv[:1] == ["measure"] and len(argv) == 3:
        measure(argv[1], int(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
