"""The steps of the churn training pipeline, as plain functions.

The wiring follows Hamilton: each function's output is named after the function, and each
parameter is either the output of the upstream function of the same name or a parameter from
the configuration (``data_path``, ``test_size``, ``seed``, ``n_estimators``, ``learning_rate``)::

    raw -> validated -> train_set -> model -> metrics
                     -> test_set  ---------->

Annotations are imported at runtime rather than under ``TYPE_CHECKING`` on purpose: a pipeline
framework resolves them with ``typing.get_type_hints`` to learn each step's inputs and outputs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline as SklearnPipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

ENTITY = "customer_id"
EVENT_TIME = "event_time"
LABEL = "churned"
# Kept in the data for fairness slices only; a model must never see it.
SENSITIVE = "gender"
NUMERIC_FEATURES = (
    "age",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "data_usage_gb",
    "support_calls",
    "late_payments",
)
CATEGORICAL_FEATURES = ("contract", "payment_method", "region")
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
REQUIRED_COLUMNS = (ENTITY, EVENT_TIME, *FEATURES, SENSITIVE, LABEL)

# Churn is the positive class, and a threshold of 0.5 is what the thresholded metrics report.
_THRESHOLD = 0.5
# The boosted trees use OpenMP, whose threads busy-wait. On 16k rows two threads were slower
# than one (0.9 s against 0.6 s), and with one other busy process on a 2-core machine a fit
# took 15 s instead of 0.6 s. Pipeline steps share the machine with other steps (--jobs N),
# a server or a database, so one thread is the predictable choice.
_OPENMP_THREADS = 1


def feature_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Select the model's input columns, in a fixed order and with fixed dtypes.

    Numeric features become ``float64`` and categorical ones ``object`` holding ``str``, whatever
    the reader inferred (pandas 3 reads text as its ``str`` dtype, pandas 2 as ``object``), so
    the training input, the model input example and the served signature always agree.

    Args:
        df: A frame holding at least the columns of ``FEATURES``; others are dropped.

    Returns:
        The columns of ``NUMERIC_FEATURES`` then ``CATEGORICAL_FEATURES``.

    Raises:
        ValueError: If a feature column is missing.
    """
    missing = [col for col in FEATURES if col not in df.columns]
    if missing:
        msg = f"the model needs feature column(s) {_quoted(missing)}, which the frame lacks"
        raise ValueError(msg)
    out = pd.DataFrame(index=df.index)
    for col in NUMERIC_FEATURES:
        out[col] = df[col].astype(np.float64)
    for col in CATEGORICAL_FEATURES:
        out[col] = df[col].astype(str).astype(object)
    return out


def raw(data_path: str) -> pd.DataFrame:
    """Read the month's data set.

    Args:
        data_path: Path of a CSV written by ``data/generate.py`` (or shaped like one).

    Returns:
        The rows as read, with ``event_time`` parsed to timestamps when present.
    """
    df = pd.read_csv(data_path)
    # Parsed here rather than with ``parse_dates`` so that a missing column is reported by
    # ``validated`` with the others, not as a reader error.
    if EVENT_TIME in df.columns:
        df[EVENT_TIME] = pd.to_datetime(df[EVENT_TIME])
    return df


def validated(raw: pd.DataFrame) -> pd.DataFrame:
    """Check that the data set can be trained and evaluated on.

    Args:
        raw: The data set as read.

    Returns:
        ``raw`` itself, unchanged.

    Raises:
        ValueError: If a required column is missing, the frame is empty, an entity id is null,
            a numeric feature is not numeric, or a label is not 0 or 1.
    """
    missing = [col for col in REQUIRED_COLUMNS if col not in raw.columns]
    if missing:
        msg = (
            f"data set is missing required column(s) {_quoted(missing)}; "
            f"expected {_quoted(REQUIRED_COLUMNS)}"
        )
        raise ValueError(msg)
    if raw.empty:
        msg = "data set has no rows"
        raise ValueError(msg)
    null_ids = raw[ENTITY].isna()
    if null_ids.any():
        msg = (
            f"column {ENTITY!r} has {int(null_ids.sum())} null value(s), "
            f"first at row {raw.index[null_ids.to_numpy()][0]}; every row needs an entity id"
        )
        raise ValueError(msg)
    not_numeric = [c for c in NUMERIC_FEATURES if not pd.api.types.is_numeric_dtype(raw[c])]
    if not_numeric:
        msg = f"numeric feature column(s) {_quoted(not_numeric)} hold non-numeric values"
        raise ValueError(msg)
    bad_labels = ~raw[LABEL].isin([0, 1])
    if bad_labels.any():
        values = sorted({str(v) for v in raw.loc[bad_labels, LABEL].unique()})[:5]
        msg = (
            f"column {LABEL!r} must hold only 0 or 1, but {int(bad_labels.sum())} row(s) hold "
            f"other values, e.g. {', '.join(values)}"
        )
        raise ValueError(msg)
    return raw


def _in_test(ids: pd.Series, test_size: float, seed: int) -> np.ndarray:
    """Tell, per entity id, whether it belongs to the test set.

    The decision hashes the id with the seed, so it depends on neither the row order nor the
    other rows, and an entity stays on the same side of the split in every month's data.
    """
    if not 0.0 < test_size < 1.0:
        msg = f"test_size must be between 0 and 1 (exclusive), got {test_size}"
        raise ValueError(msg)
    salt = f"{seed}:".encode()
    cut = int(test_size * 2**64)
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(salt + str(i).encode(), digest_size=8).digest()) < cut
            for i in ids
        ),
        dtype=bool,
        count=len(ids),
    )


def train_set(validated: pd.DataFrame, test_size: float, seed: int) -> pd.DataFrame:
    """Select the training rows: the entities that do not hash into the test set.

    Args:
        validated: The validated data set.
        test_size: Expected fraction of entities held out for testing, in (0, 1).
        seed: Salt of the hash, so another seed draws another split.

    Returns:
        The training rows, in their original order and with their original index.
    """
    return validated[~_in_test(validated[ENTITY], test_size, seed)]


def test_set(validated: pd.DataFrame, test_size: float, seed: int) -> pd.DataFrame:
    """Select the held-out rows: the entities that hash into the test set.

    Args:
        validated: The validated data set.
        test_size: Expected fraction of entities held out for testing, in (0, 1).
        seed: Salt of the hash; must match the one given to ``train_set``.

    Returns:
        The test rows, in their original order and with their original index.
    """
    return validated[_in_test(validated[ENTITY], test_size, seed)]


# pytest would otherwise collect ``test_set`` as a test wherever this module is imported.
test_set.__test__ = False  # type: ignore[attr-defined]


def model(
    train_set: pd.DataFrame, n_estimators: int, learning_rate: float, seed: int
) -> SklearnPipeline:
    """Fit the churn classifier: scaling and one-hot encoding, then gradient-boosted trees.

    Args:
        train_set: The training rows.
        n_estimators: Number of boosting iterations.
        learning_rate: Shrinkage of each iteration.
        seed: Random state of the classifier.

    Returns:
        A fitted scikit-learn pipeline that takes ``feature_frame`` columns and whose
        ``predict_proba(...)[:, 1]`` is the churn probability.
    """
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(NUMERIC_FEATURES)),
            (
                "categorical",
                # Dense output because the boosted trees do not take sparse input; unknown
                # categories (a new payment method, say) encode as all zeros instead of failing.
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(CATEGORICAL_FEATURES),
            ),
        ],
        remainder="drop",
    )
    classifier = HistGradientBoostingClassifier(
        max_iter=n_estimators,
        learning_rate=learning_rate,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        # Early stopping would carve a random validation split out of the training rows and
        # make the number of trees depend on it; the configured count is what we fit.
        early_stopping=False,
        random_state=seed,
    )
    pipeline = SklearnPipeline([("preprocess", preprocess), ("classifier", classifier)])
    with threadpool_limits(limits=_OPENMP_THREADS, user_api="openmp"):
        pipeline.fit(feature_frame(train_set), train_set[LABEL].to_numpy())
    return pipeline


def metrics(model: SklearnPipeline, test_set: pd.DataFrame) -> dict[str, float]:
    """Score the model on held-out rows.

    Args:
        model: A fitted pipeline, as returned by ``model``.
        test_set: Labelled rows the model has not seen.

    Returns:
        ``accuracy``, ``precision``, ``recall`` and ``f1`` at a threshold of 0.5, and
        ``roc_auc``, ``log_loss`` and ``brier`` of the churn probability, as plain floats.
    """
    y_true = test_set[LABEL].to_numpy()
    with threadpool_limits(limits=_OPENMP_THREADS, user_api="openmp"):
        proba = model.predict_proba(feature_frame(test_set))[:, 1]
    y_pred = (proba >= _THRESHOLD).astype(np.int64)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, proba)),
    }


def _quoted(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def data_report(train_set: pd.DataFrame, eval_set: pd.DataFrame) -> dict[str, Any]:
    """Check the evaluation set against the training rows with ``conveyor.data``.

    Schema (inferred from the training rows), quality (missing values, duplicates, constant
    columns, outliers) and label leakage (a feature that gives the label away, rows shared by
    training and evaluation) stop the run: a model trained or measured on such data is
    meaningless. Drift is reported but does not stop the run: training on a new month is the
    point of a new version, and whether a drifted version may go on is the promotion gates'
    decision (``data_checks`` in policies.yaml).

    Args:
        train_set: The training rows (the reference).
        eval_set: The fixed evaluation set (the data checked).

    Returns:
        The validation report as JSON data: verdict, findings, and drift per column.

    Raises:
        ValueError: If a finding blocks, naming each one.
    """
    from conveyor.data import DataGateSettings, validate_frames

    settings = DataGateSettings(reference=Path("train_set"), target=LABEL, warn=("drift",))
    report = validate_frames(
        train_set.reset_index(drop=True),
        eval_set.reset_index(drop=True),
        settings,
        reference_name="train_set",
        current_name="eval_set",
    )
    if not report.passed:
        reasons = "; ".join(f"{f.check}: {f.message}" for f in report.blocking[:5])
        msg = f"the evaluation data failed {len(report.blocking)} data check(s): {reasons}"
        raise ValueError(msg)
    return report.to_dict()
