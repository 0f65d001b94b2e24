"""Support for the inference-test tests: a registry on disk holding a fast and a slow model.

Both models are real scikit-learn estimators, packaged with :func:`conveyor.packaging.build_bundle`
and registered (experimental, never promoted: the test serves a version by number). The slow one
is a random forest of many deep trees: scikit-learn walks every tree for every ``predict`` call
(and again for ``predict_proba``), so each call truly takes tens of milliseconds, with no sleep.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.packaging import Bundle

__all__ = ["MODEL", "Registered", "fast_estimator", "feature_rows", "register", "slow_estimator"]

MODEL = "churn"
#: Trees of the slow forest; measured ~38 ms per predict call of one row on the 2-core machine.
SLOW_TREES = 600


def feature_rows(n: int = 500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    """Numeric and text columns with a label that depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n).round(1),
            "tenure": rng.integers(0, 72, n),
            "plan": rng.choice(["basic", "plus", "pro"], n).astype(object),
        }
    )
    score = 0.04 * (40 - frame["age"]) - 0.05 * frame["tenure"] + (frame["plan"] == "basic") * 1.5
    labels = (score + rng.normal(0, 0.5, n) > 0).astype(int).to_numpy()
    return frame, labels


def _pipeline(model: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "tenure"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    return Pipeline([("features", features), ("model", model)])


@functools.cache
def fast_estimator() -> Any:
    from sklearn.linear_model import LogisticRegression

    frame, labels = feature_rows()
    return _pipeline(LogisticRegression()).fit(frame, labels)


@functools.cache
def slow_estimator() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    frame, labels = feature_rows()
    forest = RandomForestClassifier(n_estimators=SLOW_TREES, random_state=0)
    return _pipeline(forest).fit(frame, labels)


@dataclass(frozen=True)
class Registered:
    """A registered version and where a server finds it."""

    store: str
    artifacts: str
    version: int
    bundle: Bundle


def register(root: Path, estimator: Any) -> Registered:
    """Package ``estimator`` as a version of ``MODEL`` in a SQLite registry under ``root``."""
    from conveyor.packaging import Model, build_bundle
    from conveyor.registry import register_version
    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

    frame, _ = feature_rows()
    store_url = f"sqlite:///{root / 'metadata.db'}"
    artifacts = LocalArtifactStore(root / "artifacts")
    metadata = MetadataStore.open(store_url)
    try:
        model = Model(estimator=estimator, input_example=frame.head(5))
        bundle = build_bundle(artifacts, model, name=MODEL, metrics={})
        version, _ = register_version(
            metadata,
            model=MODEL,
            artifact_digest=bundle.digest,
            metrics={},
            run_id=None,
            actor="alice",
        )
    finally:
        metadata.close()
    return Registered(store_url, str(artifacts.root), version.version, bundle)
