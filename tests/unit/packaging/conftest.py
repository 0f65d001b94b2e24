"""Fixtures of the packaging tests: a small fitted sklearn Pipeline on numeric and text columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from conveyor.packaging import Model
from conveyor.store.artifacts import LocalArtifactStore, MemoryArtifactStore

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.store.artifacts import ArtifactStore


def make_frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """Synthetic customers: float, int and text columns, as a training step would see them."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows).round(1),
            "support_calls": rng.integers(0, 8, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
        }
    )


def make_labels(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    score = (frame["age"] - 40) / 10 + frame["support_calls"] / 4 - (frame["plan"] == "pro")
    return (score + rng.normal(0, 0.5, len(frame)) > 0.5).astype(np.int64).to_numpy()


def make_pipeline() -> Pipeline:
    return Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), ["age", "support_calls"]),
                        ("text", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                    ]
                ),
            ),
            ("classifier", LogisticRegression()),
        ]
    )


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="session")
def fitted(frame: pd.DataFrame) -> Pipeline:
    return make_pipeline().fit(frame, make_labels(frame))


@pytest.fixture(scope="session")
def model(fitted: Pipeline, frame: pd.DataFrame) -> Model:
    return Model(estimator=fitted, input_example=frame.head(5))


@pytest.fixture
def memory_store() -> MemoryArtifactStore:
    return MemoryArtifactStore()


@pytest.fixture(params=["memory", "local"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each artifact store implementation a bundle must work with."""
    if request.param == "memory":
        return MemoryArtifactStore()
    return LocalArtifactStore(tmp_path / "artifacts")
