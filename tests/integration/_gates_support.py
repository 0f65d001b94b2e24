"""Support for the promotion-gate tests: the example's data, real models of known character
(weak, strong, a near-twin of strong, biased by a sensitive attribute, miscalibrated, slow),
packaged and registered as versions of one model in a throwaway project.

Every model is a real scikit-learn pipeline trained on the churn example's generated data, so
the gates judge real predictions; nothing here fakes a number.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from conveyor.project import Project
    from conveyor.registry import ModelVersion

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
MODEL = "churn"
LABEL = "churned"
NUMERIC = ("age", "tenure_months", "monthly_charges", "data_usage_gb", "support_calls")
CATEGORICAL = ("contract", "payment_method", "region")
FEATURES = NUMERIC + CATEGORICAL
AUTHOR = "scientist"


@functools.cache
def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_gates_generate", EXAMPLE / "data" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training, evaluation) frames of the base regime, as a CSV round trip would give them."""
    gen = _generator()
    train = gen.generate("2026-01", rows=6000, seed=7, drift=False)
    evaluation = gen.generate("2026-01", rows=3000, seed=9, drift=False)
    return _as_read(train), _as_read(evaluation)


def _as_read(frame: pd.DataFrame) -> pd.DataFrame:
    import io

    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    buffer.seek(0)
    return pd.read_csv(buffer)


def _pipeline(estimator: Any, categorical: tuple[str, ...] = CATEGORICAL) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in NUMERIC]
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(categorical)),
        ]
    )
    return Pipeline([("pre", pre), ("model", estimator)])


def _inputs(frame: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    cols = [*FEATURES, *extra]
    out = frame[cols].copy()
    for c in NUMERIC:
        out[c] = out[c].astype(np.float64)
    for c in (*CATEGORICAL, *extra):
        out[c] = out[c].astype(str).astype(object)
    return out


@functools.cache
def trained(kind: str) -> tuple[Any, pd.DataFrame]:
    """A fitted estimator of ``kind`` and its input example."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    train, _ = frames()
    y = train[LABEL].to_numpy()
    extra: tuple[str, ...] = ()
    if kind == "weak":
        # Two weak numeric features only: clearly worse than the others.
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        est: Any = Pipeline(
            [
                ("pre", ColumnTransformer([("num", "passthrough", ["age", "data_usage_gb"])])),
                ("model", LogisticRegression()),
            ]
        )
    elif kind == "strong":
        est = _pipeline(LogisticRegression(C=1.0, max_iter=500))
    elif kind == "twin":
        # The strong model with a hair more regularisation: the same skill, within noise.
        est = _pipeline(LogisticRegression(C=0.9, max_iter=500))
    elif kind == "biased":
        # Sees gender and was trained on labels that favour one group: breaks parity.
        extra = ("gender",)
        rng = np.random.default_rng(3)
        male = (train["gender"] == "male").to_numpy()
        y = np.where(male & (rng.random(len(y)) < 0.6), 1, y)
        est = _pipeline(LogisticRegression(max_iter=500), (*CATEGORICAL, "gender"))
    elif kind == "miscalibrated":
        # Class weights inflate the positive class's probabilities: ranks well, calibrates badly.
        est = _pipeline(HistGradientBoostingClassifier(class_weight="balanced", random_state=0))
    elif kind == "slow":
        # Six hundred trees walked one after another: each predict call costs tens of ms of
        # real work (about 38 ms on the 2-core CI machine), no sleep involved.
        from sklearn.ensemble import RandomForestClassifier

        small = train.head(800)
        est = _pipeline(RandomForestClassifier(n_estimators=600, random_state=0))
        x = _inputs(small)
        est.fit(x, small[LABEL].to_numpy())
        return est, x.head(20)
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)
    x = _inputs(train, extra)
    est.fit(x, y)
    return est, x.head(20)


def register(project: Project, kind: str, *, actor: str = AUTHOR) -> ModelVersion:
    """Package the ``kind`` model into the project's stores and register it."""
    from conveyor.packaging import Model, build_bundle
    from conveyor.registry import register_version

    estimator, example = trained(kind)
    bundle = build_bundle(
        project.artifacts, Model(estimator, input_example=example), name=MODEL, metrics={}
    )
    version, _ = register_version(
        project.metadata,
        model=MODEL,
        artifact_digest=bundle.digest,
        metrics={},
        run_id=None,
        actor=actor,
    )
    return version


def write_project(root: Path, policy: str) -> Path:
    """A project folder with conveyor.yaml, the policy and the evaluation data."""
    _, evaluation = frames()
    (root / "data").mkdir(parents=True, exist_ok=True)
    evaluation.to_csv(root / "data" / "eval.csv", index=False)
    (root / "conveyor.yaml").write_text("project: churn\npolicies: policies.yaml\n")
    (root / "policies.yaml").write_text(policy)
    return root
