"""The realistic history the lineage tests query: a project trained on two months of data,
three versions, promotions and a rollback, evaluations on a hold-out, and a feature."""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from conveyor import registry
from conveyor.core.clock import utcnow
from conveyor.core.digest import digest_file
from conveyor.project import open_project, rollback, run
from conveyor.store.metadata.lineage import add_edges

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.project import Project

PIPELINE = """
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from conveyor import Model, Pipeline, step


    @step(files=("data_path",))
    def raw(data_path):
        return pd.read_csv(data_path)


    @step
    def model(raw, c):
        fitted = LogisticRegression(C=c).fit(raw[["x"]], raw["y"])
        return Model(estimator=fitted, input_example=raw[["x"]].head(3))


    @step
    def metrics(model, raw):
        proba = model.estimator.predict_proba(raw[["x"]])[:, 1]
        return {"mean_score": float(np.mean(proba)), "rows": float(len(raw))}


    pipeline = Pipeline([raw, model, metrics], name="churn")
"""


def _month(path: Path, seed: int, rows: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    y = (x + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    path.write_text("x,y\n" + "".join(f"{a:.6f},{b}\n" for a, b in zip(x, y, strict=True)))


@dataclass
class History:
    project: Project
    root: Path
    jan: str  # dataset node ids
    feb: str
    holdout: str
    feature: str
    before_v1: dt.datetime
    v1_live: dt.datetime
    v2_live: dt.datetime
    after_rollback: dt.datetime


def _set(root: Path, **params: object) -> None:
    import yaml

    path = root / "conveyor.yaml"
    data = yaml.safe_load(path.read_text())
    data["params"].update(params)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _moment() -> dt.datetime:
    at = utcnow()
    time.sleep(0.002)  # stage rows are stamped to the microsecond: keep the moments apart
    return at


@pytest.fixture
def history(tmp_path: Path, store_url: str) -> Iterator[History]:
    root = tmp_path / "project"
    (root / "flow").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "flow" / "__init__.py").write_text("")
    (root / "flow" / "pipe.py").write_text(textwrap.dedent(PIPELINE))
    (root / "conveyor.yaml").write_text(
        textwrap.dedent(
            f"""
            pipeline: flow.pipe:pipeline
            store: {store_url}
            params: {{data_path: data/jan.csv, c: 1.0}}
            model: {{name: churn, step: model, metrics: metrics}}
            """
        )
    )
    _month(root / "data" / "jan.csv", 1, 120)
    _month(root / "data" / "feb.csv", 2, 150)
    _month(root / "data" / "holdout.csv", 3, 80)
    policy = registry.load_policy(None)
    with open_project(root) as project:
        store = project.metadata

        def to_production(version: int) -> None:
            for stage in ("candidate", "production"):
                registry.promote(
                    store, model="churn", version=version, to=stage, policy=policy, actor="ops"
                )

        before_v1 = _moment()
        assert run(project, actor="sam").version.version == 1  # type: ignore[union-attr]
        to_production(1)
        v1_live = _moment()
        _set(root, data_path="data/feb.csv")
        project.config.params["data_path"] = "data/feb.csv"
        assert run(project, actor="sam").version.version == 2  # type: ignore[union-attr]
        to_production(2)
        v2_live = _moment()
        rollback(project, model="churn", actor="oncall", reason="feb model misbehaves")
        after_rollback = _moment()
        project.config.params.update(data_path="data/jan.csv", c=0.5)
        assert run(project, actor="sam").version.version == 3  # type: ignore[union-attr]

        holdout = f"dataset:{digest_file(root / 'data' / 'holdout.csv')}"
        for version in (1, 3):
            registry.record_evaluation(
                store,
                model="churn",
                version=version,
                dataset_version=holdout.removeprefix("dataset:"),
                config_digest="blake3:" + "0" * 64,
                metrics={"roc_auc": 0.8 + version / 100},
                report={},
                predictions_digest=None,
                actor="sam",
            )
        # A feature computed from January's data and read by v1's training run, as the
        # feature store records it (issue 9).
        jan = f"dataset:{digest_file(root / 'data' / 'jan.csv')}"
        v1_run = registry.get_version(store, "churn", 1).run_id
        feature = "feature:amount_30d@blake3:" + "f" * 64
        with store.write("sam") as tx:
            add_edges(
                tx.conn,
                [(jan, feature, "computed_from"), (feature, f"run:{v1_run}", "input")],
                tx.at,
            )
        yield History(
            project,
            root,
            jan,
            f"dataset:{digest_file(root / 'data' / 'feb.csv')}",
            holdout,
            feature,
            before_v1,
            v1_live,
            v2_live,
            after_rollback,
        )
