"""A changed feature transformation is caught when its model is deployed (issue 9).

The model is trained with ``spend@v1`` and records it in its bundle; the project then changes
the transformation, so ``conveyor features apply`` registers ``spend@v2`` as the service's
serving version. Promoting the model to production, or deploying it, is refused with a message
naming the feature and both versions, and nothing moves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.features import FeatureMismatchError, FeatureStore, load_definitions
from conveyor.packaging import Model, build_bundle
from conveyor.project import open_project
from conveyor.project._deploy import start_deploy
from conveyor.project._gates import promote
from conveyor.registry import production_version, register_version

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.features import FeatureService
    from conveyor.project import Project

DEFINITIONS = """
from conveyor.features import Feature, FeatureService

spend = Feature(
    "spend", entity="customer_id", dtype="float64", source="data/orders.parquet",
    transform=lambda df, factor: df["amount"] * factor, params={"factor": FACTOR},
)
churn = FeatureService("churn", [spend])
"""


def _write(root: Path, factor: float) -> None:
    (root / "features").mkdir(exist_ok=True)
    (root / "features" / "defs.py").write_text(DEFINITIONS.replace("FACTOR", str(factor)))


def _apply(project: Project) -> FeatureService:
    definitions = load_definitions(project.config.root)
    with FeatureStore(project.metadata, project.config.root) as store:
        store.apply(definitions, actor="scientist")
    [service] = definitions.services
    return service


def _register(project: Project, service: FeatureService) -> int:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"spend": rng.normal(200, 50, 200)})
    y = (x["spend"] > 200).astype(int).to_numpy()
    model = Model(LogisticRegression().fit(x, y), input_example=x.head(5), features=service)
    bundle = build_bundle(project.artifacts, model, name="churn", metrics={})
    assert bundle.manifest.features is not None
    assert bundle.manifest.features["features"] == [service.features[0].ref]
    version, _ = register_version(
        project.metadata,
        model="churn",
        artifact_digest=bundle.digest,
        metrics={},
        run_id=None,
        actor="scientist",
    )
    return version.version


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "conveyor.yaml").write_text("project: p\n")
    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(1)
    pd.DataFrame(
        {
            "customer_id": np.arange(30) % 10,
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86_400 * 30, 30), unit="s"),
            "amount": rng.normal(100, 20, 30),
        }
    ).to_parquet(tmp_path / "data" / "orders.parquet")
    _write(tmp_path, 2.0)
    return open_project(tmp_path)


def test_the_same_feature_versions_deploy(project: Project) -> None:
    version = _register(project, _apply(project))
    promote(project, model="churn", version=version, to="candidate", actor="lead")
    promote(project, model="churn", version=version, to="production", actor="lead")
    found = production_version(project.metadata, "churn")
    assert found is not None
    assert found.version == version


def test_a_changed_transformation_is_refused_at_promotion_and_deploy(project: Project) -> None:
    trained = _apply(project)
    version = _register(project, trained)
    promote(project, model="churn", version=version, to="candidate", actor="lead")

    _write(project.config.root, 3.0)  # the transformation's parameter changes
    serving = _apply(project)
    old, new = trained.features[0].version, serving.features[0].version
    assert old != new

    with pytest.raises(FeatureMismatchError) as refused:
        promote(project, model="churn", version=version, to="production", actor="lead")
    message = str(refused.value)
    assert "spend" in message
    short = lambda ref: ref.removeprefix("blake3:")[:12]  # noqa: E731 (as the message shows them)
    assert f"spend (trained {short(old)}, serving {short(new)})" in message
    assert refused.value.details["mismatches"] == [
        {"feature": "spend", "trained": old, "serving": new}
    ]
    assert production_version(project.metadata, "churn") is None  # nothing moved

    with pytest.raises(FeatureMismatchError):
        start_deploy(
            project,
            model="churn",
            version=version,
            strategy="canary",
            canary="50,100",
            shadow_sample=1.0,
            actor="lead",
        )
