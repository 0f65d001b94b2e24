"""Realistic data for the evaluation tests: the churn example's generator, two fitted models."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

_GENERATE = Path(__file__).parents[3] / "examples" / "churn" / "data" / "generate.py"


@cache
def churn() -> dict[str, Any]:
    """4,000 churn rows with two models' probabilities: a good one and a weaker one."""
    from sklearn.linear_model import LogisticRegression

    spec = importlib.util.spec_from_file_location("churn_generate_for_evaluation", _GENERATE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    frame = module.generate("2026-01", rows=8000, seed=7)
    y = frame["churned"].to_numpy().astype(int)
    numeric = ["tenure_months", "monthly_charges", "support_calls", "late_payments", "age"]
    X = frame[numeric].to_numpy(dtype=float)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    train, test = slice(0, 4000), slice(4000, 8000)
    good = LogisticRegression().fit(X[train], y[train]).predict_proba(X[test])[:, 1]
    weak = LogisticRegression().fit(X[train][:, 2:], y[train]).predict_proba(X[test][:, 2:])[:, 1]
    return {
        "frame": frame.iloc[test].reset_index(drop=True),
        "y": y[test],
        "good": good,
        "weak": weak,
    }


def rng_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    return y, p
