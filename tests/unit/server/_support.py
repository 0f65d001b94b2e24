"""Support for the server tests: small real models (trained once, packaged, registered,
promoted), request bodies, and polling with a deadline.

Shared by the in-process tests (``tests/unit/server``) and the real-process test
(``tests/integration/test_server_process.py``).
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x asks for `httpx2` in its test client; `httpx` (already a dependency of
    # Conveyor) still works, and one HTTP client library is enough.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

if TYPE_CHECKING:
    from collections.abc import Callable

    from conveyor.packaging import Bundle
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

__all__ = [
    "MODEL",
    "TestClient",
    "expected_proba",
    "infer_body",
    "promote",
    "register",
    "rollback",
    "rows",
    "training_frame",
    "wait_for",
]

MODEL = "churn"
COLUMNS = ("age", "tenure", "plan")
PLANS = ("basic", "plus", "pro")


def training_frame(seed: int = 0, rows: int = 200) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, rows).round(1),
            "tenure": rng.uniform(0, 72, rows).round(1),
            "plan": rng.choice(PLANS, rows).astype(object),
        }
    )
    score = 0.04 * (40 - frame["age"]) - 0.05 * frame["tenure"] + (frame["plan"] == "basic") * 1.5
    labels = (score + rng.normal(0, 0.5, rows) > 0).astype(int).to_numpy()
    return frame, labels


@functools.cache
def estimator(c: float) -> Any:
    """A fitted scikit-learn pipeline; ``c`` (regularisation) makes versions answer differently."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, labels = training_frame()
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "tenure"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(C=c)),
        ]
    )
    return pipeline.fit(frame, labels)


def register(
    metadata: MetadataStore, artifacts: ArtifactStore, *, c: float, name: str = MODEL
) -> tuple[int, Bundle]:
    """Package the model trained with ``c`` and register it: its version number and bundle."""
    from conveyor.packaging import Model, build_bundle
    from conveyor.registry import register_version

    frame, _ = training_frame()
    model = Model(estimator=estimator(c), input_example=frame.head(5))
    metrics = {"roc_auc": 0.8}
    bundle = build_bundle(artifacts, model, name=name, metrics=metrics)
    version, _ = register_version(
        metadata,
        model=name,
        artifact_digest=bundle.digest,
        metrics=metrics,
        run_id=None,
        actor="alice",
    )
    return version.version, bundle


def promote(metadata: MetadataStore, version: int, *, name: str = MODEL) -> None:
    """Move experimental ``version`` to candidate, then to production, with no checks (an empty
    policy): promotion never skips a stage."""
    from conveyor import registry

    policy = registry.load_policy(None)
    for stage in ("candidate", "production"):
        registry.promote(
            metadata,
            model=name,
            version=version,
            to=stage,
            policy=policy,
            actor="bob",
            reason="test",
        )


def rollback(metadata: MetadataStore, *, name: str = MODEL) -> None:
    from conveyor import registry

    registry.rollback(metadata, model=name, actor="carol", reason="test")


def rows(n: int = 3) -> pd.DataFrame:
    """``n`` rows of model input that no version was trained on."""
    frame, _ = training_frame(seed=42, rows=n)
    return frame


def infer_body(frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """An Open Inference Protocol request with one tensor per column."""
    datatypes = {"age": "FP64", "tenure": "FP64", "plan": "BYTES"}
    inputs = [
        {
            "name": column,
            "shape": [len(frame)],
            "datatype": datatypes[column],
            "data": frame[column].tolist(),
        }
        for column in COLUMNS
    ]
    return {"inputs": inputs, **extra}


def expected_proba(c: float, frame: pd.DataFrame) -> list[float]:
    """What the model trained with ``c`` says: the probability of the positive class."""
    return [float(p) for p in estimator(c).predict_proba(frame[list(COLUMNS)])[:, 1]]


def wait_for(condition: Callable[[], bool], *, timeout: float = 15.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.01)
