"""A real model bundle for the monitoring tests: reference predictions need one to load."""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from conveyor.monitoring import InferenceLogger

if TYPE_CHECKING:
    import datetime as dt

    import pyarrow as pa

    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore


def reference_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"x": rng.normal(0, 1, rows), "c": rng.choice(["a", "b"], rows).astype(object)}
    )


@functools.cache
def fitted() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = reference_frame(300, seed=1)
    labels = ((frame["x"] + (frame["c"] == "a") * 0.8) > 0.5).astype(int)
    steps = ColumnTransformer(
        [("num", StandardScaler(), ["x"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["c"])]
    )
    return Pipeline([("features", steps), ("model", LogisticRegression())]).fit(frame, labels)


def register_bundle(
    metadata: MetadataStore, artifacts: ArtifactStore, estimator: Any = None
) -> tuple[int, str]:
    """A real bundle of ``estimator`` (default ``fitted()``), registered as churn and promoted
    to production."""
    from conveyor.packaging import Model, build_bundle
    from conveyor.registry import parse_policy, promote, register_version

    model = Model(estimator=estimator or fitted(), input_example=reference_frame(5, seed=2))
    bundle = build_bundle(artifacts, model, name="churn", metrics={"accuracy": 0.9})
    version, _ = register_version(
        metadata,
        model="churn",
        artifact_digest=bundle.digest,
        metrics={"accuracy": 0.9},
        run_id=None,
        actor="scientist",
    )
    policy = parse_policy("stages: {}\n")
    for stage in ("candidate", "production"):
        promote(
            metadata, model="churn", version=version.version, to=stage, policy=policy, actor="l"
        )
    return version.version, bundle.digest


class StalledLog(InferenceLogger):
    """A log whose writer hangs inside its first write until released, as on a hung disk."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        super().__init__(*args, **kwargs)

    def _write(
        self, model: str, start: dt.datetime, table: pa.Table, *, labels: bool = False
    ) -> None:
        self.entered.set()
        self.release.wait()
        super()._write(model, start, table, labels=labels)
