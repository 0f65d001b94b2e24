"""Two processes register versions of one model at the same time: numbers stay distinct and
consecutive, and the audit chain stays intact (the write transaction serialises them)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import sqlalchemy as sa

from conveyor.registry import list_versions, stage_history
from conveyor.store.metadata import MetadataStore, verify_chain
from conveyor.store.metadata.schema import audit_event

PER_PROCESS = 50

# Each worker opens its own store, says "ready", waits for "go" on stdin (so both start
# registering together, without sleeping), registers PER_PROCESS bundles and prints the numbers.
_WORKER = textwrap.dedent(
    """
    import json, sys
    from conveyor.core.digest import digest_bytes
    from conveyor.registry import register_version
    from conveyor.store.metadata import MetadataStore

    url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = MetadataStore.open(url)
    print("ready", flush=True)
    sys.stdin.readline()
    numbers = []
    for i in range(count):
        version, created = register_version(
            store,
            model="churn",
            artifact_digest=digest_bytes(f"{name}-{i}".encode()),
            metrics={"roc_auc": 0.8},
            run_id=None,
            actor=name,
        )
        assert created
        numbers.append(version.version)
    store.close()
    print(json.dumps(numbers), flush=True)
    """
)


def test_concurrent_registrations_get_distinct_consecutive_numbers(store_url: str) -> None:
    # Migrate once up front, so the workers race on registering and not on creating tables.
    MetadataStore.open(store_url).close()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, store_url, name, str(PER_PROCESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alice", "bob")
    ]
    try:
        for w in workers:
            assert w.stdout is not None
            assert w.stdout.readline().strip() == "ready", w.stderr.read() if w.stderr else ""
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        results = []
        for w in workers:
            out, err = w.communicate(timeout=60)
            assert w.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()

    alice, bob = results
    # Each process saw its own numbers increase, and together they are exactly 1..2N.
    assert alice == sorted(alice)
    assert bob == sorted(bob)
    assert sorted(alice + bob) == list(range(1, 2 * PER_PROCESS + 1))

    store = MetadataStore.open(store_url)
    try:
        versions = list_versions(store, "churn")
        assert [v.version for v in versions] == list(range(1, 2 * PER_PROCESS + 1))
        assert {v.created_by for v in versions if v.version in alice} == {"alice"}
        assert len(stage_history(store, "churn")) == 2 * PER_PROCESS
        with store.read() as conn:
            report = verify_chain(conn)
            registered = conn.execute(
                sa.select(sa.func.count()).where(audit_event.c.action == "model.version_registered")
            ).scalar_one()
    finally:
        store.close()
    assert report.ok, report
    assert report.events == 2 * PER_PROCESS + 1  # and one model.created
    assert registered == 2 * PER_PROCESS
