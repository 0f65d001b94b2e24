"""The churn pipeline: the plain functions of ``steps.py`` wired into Conveyor steps.

Each step's output is named after the function; a parameter is either an upstream output of that
name or a key of ``params:`` in conveyor.yaml. ``files=`` names parameters holding data files,
whose content is part of the step's cache key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import Model, Pipeline, step
from training import steps

if TYPE_CHECKING:
    import pandas as pd


@step(files=("data_path",))
def raw(data_path: str) -> pd.DataFrame:
    """The month's customer records."""
    return steps.raw(data_path)


@step
def validated(raw: pd.DataFrame) -> pd.DataFrame:
    """The records, checked: columns present, labels binary, ids not null."""
    return steps.validated(raw)


@step
def train_set(validated: pd.DataFrame, test_size: float, seed: int) -> pd.DataFrame:
    """Training rows: a stable split by customer id."""
    return steps.train_set(validated, test_size, seed)


@step
def model(train_set: pd.DataFrame, n_estimators: int, learning_rate: float, seed: int) -> Model:
    """The fitted preprocessing + classifier, with an input example that fixes its signature."""
    estimator = steps.model(train_set, n_estimators, learning_rate, seed)
    return Model(estimator=estimator, input_example=steps.feature_frame(train_set.head(5)))


@step(files=("eval_path",))
def eval_set(eval_path: str) -> pd.DataFrame:
    """The fixed evaluation set: every version is measured on the same data, so gates compare
    like with like."""
    return steps.validated(steps.raw(eval_path))


@step
def metrics(model: Model, eval_set: pd.DataFrame) -> dict[str, float]:
    """Classification metrics on the evaluation set; the gates in policies.yaml read these."""
    return steps.metrics(model.estimator, eval_set)


@step
def data_report(train_set: pd.DataFrame, eval_set: pd.DataFrame) -> dict[str, Any]:
    """Schema, quality and leakage of the evaluation set against the training rows; a blocking
    finding stops the run, drift is reported for the promotion gates to judge."""
    return steps.data_report(train_set, eval_set)


pipeline = Pipeline(
    [raw, validated, train_set, model, eval_set, metrics, data_report], name="churn"
)
