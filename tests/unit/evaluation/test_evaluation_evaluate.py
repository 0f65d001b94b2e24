"""evaluate_predictions and predict_for_evaluation, end to end on the churn data."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_ratio
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression
from tests.unit.evaluation._evaluation_data import churn

import conveyor.evaluation as ev
from conveyor.core.errors import ValidationError
from conveyor.packaging import Model, build_bundle, load_bundle
from conveyor.store.artifacts import MemoryArtifactStore

if TYPE_CHECKING:
    from conveyor.packaging import LoadedModel


def test_report_of_a_binary_classifier() -> None:
    data = churn()
    frame, y, p = data["frame"], data["y"], data["good"]
    report = ev.evaluate_predictions(
        y,
        p,
        task="classification",
        frame=frame,
        slices=["contract"],
        sensitive=["gender", "region"],
        threshold=0.3,
    )
    assert report.n == 4000
    assert report.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
    pred = (p >= 0.3).astype(int)
    worst = max(
        demographic_parity_difference(y, pred, sensitive_features=frame[c])
        for c in ("gender", "region")
    )
    assert report.metrics["fairness.demographic_parity_difference"] == pytest.approx(
        worst, abs=1e-9
    )
    least = min(
        equalized_odds_ratio(y, pred, sensitive_features=frame[c]) for c in ("gender", "region")
    )
    assert report.metrics["fairness.equalized_odds_ratio"] == pytest.approx(least, abs=1e-9)
    body = report.to_dict()
    assert json.loads(json.dumps(body, allow_nan=False)) == body
    assert set(body) == {"task", "n", "metrics", "slices", "fairness", "calibration", "settings"}
    assert body["calibration"]["bins"][0].keys() == {
        "lower",
        "upper",
        "mean_predicted",
        "fraction_positive",
        "count",
    }
    assert ev.EvaluationReport.from_dict(body) == report


def test_fairness_needs_a_binary_classifier_and_a_real_column() -> None:
    data = churn()
    with pytest.raises(ValidationError, match="sensitive column 'ethnicity'") as info:
        ev.evaluate_predictions(
            data["y"],
            data["good"],
            task="classification",
            frame=data["frame"],
            sensitive=["ethnicity"],
        )
    assert "gender" in str(info.value)
    with pytest.raises(ValidationError, match="needs a binary classifier"):
        ev.evaluate_predictions(
            [1.0, 2.0],
            [1.0, 2.5],
            task="regression",
            frame=pd.DataFrame({"g": ["a", "b"]}),
            sensitive=["g"],
        )
    with pytest.raises(ValidationError, match="unknown evaluation task"):
        ev.evaluate_predictions([1.0], [1.0], task="ranking")


def _loaded(estimator: object, X: pd.DataFrame) -> LoadedModel:
    store = MemoryArtifactStore()
    bundle = build_bundle(store, Model(estimator, X.head(5)), name="m", metrics={})
    return load_bundle(store, bundle.digest)


def test_predict_for_evaluation_infers_the_task() -> None:
    data = churn()
    frame = data["frame"]
    X = frame[["tenure_months", "monthly_charges", "support_calls"]].astype(float)
    classifier = LogisticRegression(max_iter=500).fit(X, data["y"])
    scores, task = ev.predict_for_evaluation(_loaded(classifier, X), frame)
    assert task == "classification"
    assert scores.shape == (len(frame),)
    np.testing.assert_allclose(scores, classifier.predict_proba(X)[:, 1], atol=1e-12)
    assert ev.model_classes(_loaded(classifier, X)) == (0, 1)

    multi = LogisticRegression(max_iter=500).fit(X, frame["contract"])
    scores, task = ev.predict_for_evaluation(_loaded(multi, X), frame)
    assert task == "classification"
    assert scores.shape == (len(frame), 3)
    report = ev.evaluate_predictions(
        frame["contract"], scores, task=task, classes=ev.model_classes(_loaded(multi, X))
    )
    assert report.metrics["accuracy"] == pytest.approx(multi.score(X, frame["contract"]), abs=1e-9)
    assert report.calibration is None

    regressor = LinearRegression().fit(X, frame["total_charges"])
    scores, task = ev.predict_for_evaluation(_loaded(regressor, X), frame)
    assert task == "regression"
    np.testing.assert_allclose(scores, regressor.predict(X), atol=1e-9)

    with pytest.raises(ValidationError, match="lacks input column"):
        ev.predict_for_evaluation(_loaded(regressor, X), frame.drop(columns=["support_calls"]))
