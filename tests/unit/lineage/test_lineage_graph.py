"""Lineage on a realistic history, on SQLite and PostgreSQL: a project trained on two months of
data, three versions, promotions and a rollback, evaluations on a hold-out, and a feature, then
every query's answer, the time-travel answer, the diff, the changelog, the graph renderings, and
the migration that derives the edges of a store recorded before lineage existed."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from conveyor import registry
from conveyor.core.errors import NotFoundError, UsageError
from conveyor.lineage import graph as lineage
from conveyor.lineage.changelog import changelog, render_markdown
from conveyor.lineage.render import render
from conveyor.store.metadata.schema import lineage_edge

if TYPE_CHECKING:
    from tests.unit.lineage.conftest import History


def _ids(found: lineage.Graph, kind: str) -> set[str]:
    return {n.id for n in found.nodes if n.kind == kind}


def test_upstream_of_a_version_reaches_its_data_and_runs(history: History) -> None:
    store = history.project.metadata
    up = lineage.upstream(store, "model:churn/1")
    assert up.nodes[0].id == "model:churn/1"
    assert _ids(up, "dataset") == {history.jan}
    assert _ids(up, "feature") == {history.feature}
    steps = {n.details["step"] for n in up.nodes if n.kind == "run"}
    assert steps == {"raw", "model", "metrics"}
    v1 = registry.get_version(store, "churn", 1)
    assert f"artifact:{v1.artifact_digest}" in _ids(up, "artifact")
    # Every edge joins two reached nodes, and points downstream.
    reached = {n.id for n in up.nodes}
    assert all(s in reached and d in reached for s, d, _ in up.edges)
    assert ("run:" + str(v1.run_id), "model:churn/1", "trained") in up.edges

    near = lineage.upstream(store, "model:churn/1", depth=1)
    assert {n.depth for n in near.nodes} == {0, 1}
    assert {n.kind for n in near.nodes[1:]} == {"run", "artifact"}  # trained, metrics, bundle
    assert _ids(near, "dataset") == set()

    feb_model = lineage.upstream(store, "model:churn/2")
    assert _ids(feb_model, "dataset") == {history.feb}


def test_downstream_and_models_using(history: History) -> None:
    store = history.project.metadata
    down = lineage.downstream(store, history.jan)
    assert _ids(down, "model") == {"model:churn/1", "model:churn/3"}
    assert lineage.models_using(store, history.jan) == {
        "training": ["model:churn/1", "model:churn/3"],
        "evaluation": [],
    }
    assert lineage.models_using(store, history.feature) == {
        "training": ["model:churn/1"],
        "evaluation": [],
    }
    assert lineage.models_using(store, history.holdout) == {
        "training": [],
        "evaluation": ["model:churn/1", "model:churn/3"],
    }
    with pytest.raises(NotFoundError, match="not in the lineage graph"):
        lineage.downstream(store, "dataset:blake3:" + "1" * 64)


def test_evaluated_on(history: History) -> None:
    store = history.project.metadata
    (found,) = lineage.evaluated_on(store, "churn", 3)
    assert found.id == history.holdout
    assert found.details["evaluation"].startswith("evaluation:")
    assert lineage.evaluated_on(store, "churn", 2) == []
    with pytest.raises(NotFoundError):
        lineage.evaluated_on(store, "churn", 9)


def test_what_was_in_production_at_a_moment(history: History) -> None:
    store = history.project.metadata
    at = lineage.in_production_at
    assert at(store, history.before_v1) == {}
    assert at(store, history.before_v1, model="churn") == {"churn": None}
    assert at(store, history.v1_live) == {"churn": 1}
    assert at(store, history.v2_live) == {"churn": 2}
    assert at(store, history.after_rollback) == {"churn": 1}
    with pytest.raises(UsageError, match="timezone"):
        at(store, dt.datetime(2026, 3, 1, 14, 0))
    with pytest.raises(NotFoundError):
        at(store, history.v1_live, model="nope")


def test_what_changed_between_versions(history: History) -> None:
    store = history.project.metadata
    months = lineage.diff_versions(store, "churn", 1, 2)
    assert [d.split()[0] for d in months.data["added"]] == [history.feb]
    assert [d.split()[0] for d in months.data["removed"]] == [history.jan]
    assert months.params == {"data_path": ("data/jan.csv", "data/feb.csv")}
    assert months.code == {}
    assert months.metrics["rows"] == (120.0, 150.0)
    tuned = lineage.diff_versions(store, "churn", 1, 3)
    assert tuned.data == {"added": [], "removed": []}
    assert tuned.params == {"c": (1.0, 0.5)}
    assert tuned.environment[0] == tuned.environment[1]
    assert not tuned.unchanged
    assert lineage.diff_versions(store, "churn", 3, 3).unchanged


def test_changelog_tells_the_history_newest_first(history: History) -> None:
    store = history.project.metadata
    entries = changelog(store, "churn")
    assert [e.version.version for e in entries] == [3, 2, 1]
    text = render_markdown("churn", entries)
    v3, v2, v1 = text.split("\n## ")[1:]
    assert v3.startswith("v3 — experimental")
    assert "`c` 1.0 → 0.5" in v3
    assert "Data added vs v2" in v3
    assert v2.startswith("v2 — archived")
    assert "`data_path` 'data/jan.csv' → 'data/feb.csv'" in v2
    assert "rows 120 → 150 (+30)" in v2
    assert "rolled back: feb model misbehaves" in v2
    assert "First version." in v1
    assert "restored by rollback from v2: feb model misbehaves" in v1
    assert f"{history.feature}" in v1
    assert entries[0].to_json()["changes"]["params"] == {
        "c": {"old": 1.0, "new": 0.5},
        "data_path": {"old": "data/feb.csv", "new": "data/jan.csv"},
    }


def test_graph_renderings(history: History) -> None:
    store = history.project.metadata
    up = lineage.upstream(store, "model:churn/1")
    dot = render(up, "dot")
    assert dot.startswith("digraph lineage {")
    assert dot.count(" -> ") == len(up.edges)
    assert dot.rstrip().endswith("}")
    mermaid = render(up, "mermaid")
    assert mermaid.startswith("flowchart LR")
    assert mermaid.count("-->|") == len(up.edges)
    for n in up.nodes:
        assert f"%% {n.id}" in mermaid
    table = render(up, "table")
    assert table.splitlines()[0] == f"upstream of model:churn/1: {len(up.nodes) - 1} nodes"
    import json

    assert json.loads(render(up, "json"))["start"] == "model:churn/1"


def test_parse_target() -> None:
    assert lineage.parse_target("churn/3") == "model:churn/3"
    assert lineage.parse_target("run:abc") == "run:abc"
    with pytest.raises(UsageError, match="not a lineage node"):
        lineage.parse_target("churn")


EDGES = sa.select(lineage_edge.c.src, lineage_edge.c.dst, lineage_edge.c.relation)


def test_the_migration_derives_the_same_edges_from_older_records(history: History) -> None:
    """Drop to the revision before lineage, upgrade again: the backfill rebuilds the edges the
    writers recorded (all but the ones no older table holds: the metrics run and features)."""
    from alembic import command
    from alembic.config import Config

    from conveyor.store.metadata import migrations_runner

    store = history.project.metadata
    with store.read() as conn:
        before = set(conn.execute(EDGES))
    engine = store.engine
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_runner._MIGRATIONS))
    with engine.connect() as raw:
        conn = raw.execution_options(conveyor_write=True)
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
    migrations_runner.upgrade(engine)
    with store.read() as conn:
        after = set(conn.execute(EDGES))
    derivable = {
        e
        for e in before
        if e[2] not in ("metrics", "computed_from") and not e[0].startswith("feature:")
    }
    assert after == derivable
