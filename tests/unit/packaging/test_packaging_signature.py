"""Signatures: inferred from an input example, and the outputs inferred from the estimator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from conveyor.core.errors import ValidationError
from conveyor.packaging import ColumnSpec, Signature
from conveyor.packaging._signature import infer_outputs

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def test_datatypes_are_inferred_from_dtypes() -> None:
    df = pd.DataFrame(
        {
            "f64": np.array([1.5, 2.5], dtype=np.float64),
            "f32": np.array([1.5, 2.5], dtype=np.float32),
            "i64": np.array([1, 2], dtype=np.int64),
            "i32": np.array([1, 2], dtype=np.int32),
            "i8": np.array([1, 2], dtype=np.int8),
            "flag": [True, False],
            "obj": pd.Series(["a", "b"], dtype=object),
            "text": pd.Series(["a", "b"], dtype="string"),
            "cat": pd.Series(["a", "b"], dtype="category"),
        }
    )

    datatypes = {spec.name: spec.datatype for spec in Signature.from_frame(df).inputs}

    assert datatypes == {
        "f64": "FP64",
        "f32": "FP32",
        "i64": "INT64",
        "i32": "INT32",
        "i8": "INT64",
        "flag": "BOOL",
        "obj": "BYTES",
        "text": "BYTES",
        "cat": "BYTES",
    }


def test_a_column_is_nullable_only_if_the_example_holds_a_null() -> None:
    df = pd.DataFrame(
        {
            "full": [1.0, 2.0],
            "gap": [1.0, np.nan],
            "text_gap": pd.Series(["a", None], dtype=object),
            "int_gap": pd.Series([1, None], dtype="Int64"),
        }
    )

    specs = {spec.name: spec for spec in Signature.from_frame(df).inputs}

    assert [specs[n].nullable for n in ("full", "gap", "text_gap", "int_gap")] == [
        False,
        True,
        True,
        True,
    ]
    assert specs["int_gap"].datatype == "INT64"
    assert specs["text_gap"].datatype == "BYTES"


def test_inputs_keep_the_frame_column_order(frame: pd.DataFrame) -> None:
    signature = Signature.from_frame(frame[["plan", "age", "support_calls"]])

    assert signature.input_names == ("plan", "age", "support_calls")


def test_a_dtype_without_a_signature_type_names_the_column() -> None:
    df = pd.DataFrame({"age": [1.0], "signed_up": pd.to_datetime(["2026-01-01"])})

    with pytest.raises(ValidationError, match="column 'signed_up' has dtype datetime64"):
        Signature.from_frame(df)


def test_a_text_column_holding_numbers_is_refused() -> None:
    df = pd.DataFrame({"region": pd.Series([1, "north"], dtype=object)})

    with pytest.raises(ValidationError, match=r"column 'region' \(object\) holds mixed"):
        Signature.from_frame(df)


def test_column_names_must_be_strings() -> None:
    with pytest.raises(ValidationError, match="column 0 is not named by a string"):
        Signature.from_frame(pd.DataFrame(np.zeros((2, 2))))


def test_round_trip_through_plain_data() -> None:
    signature = Signature(
        (ColumnSpec("age", "FP64"), ColumnSpec("plan", "BYTES", nullable=True)),
        (ColumnSpec("predict_proba", "FP64", (-1, 3)),),
    )

    data = signature.to_dict()

    assert data["outputs"][0] == {
        "name": "predict_proba",
        "datatype": "FP64",
        "shape": [-1, 3],
        "nullable": False,
    }
    assert Signature.from_dict(data) == signature


def test_an_unknown_datatype_is_refused() -> None:
    with pytest.raises(ValidationError, match="column 'age' has datatype 'FLOAT'"):
        ColumnSpec("age", "FLOAT")


def test_duplicate_input_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="two inputs named 'age'"):
        Signature((ColumnSpec("age", "FP64"), ColumnSpec("age", "INT64")))


def test_binary_classifier_outputs(fitted: Pipeline, frame: pd.DataFrame) -> None:
    assert infer_outputs(fitted, frame.head(5)) == (
        ColumnSpec("predict", "INT64"),
        ColumnSpec("predict_proba", "FP64", (-1,)),
    )


def test_multiclass_and_text_label_outputs() -> None:
    x = np.arange(30.0).reshape(-1, 1)
    y = np.array(["low", "mid", "high"])[np.arange(30) // 10]
    clf = LogisticRegression().fit(x, y)

    assert infer_outputs(clf, x[:3]) == (
        ColumnSpec("predict", "BYTES"),
        ColumnSpec("predict_proba", "FP64", (-1, 3)),
    )


def test_regressor_outputs_only_predict() -> None:
    x = np.arange(10.0).reshape(-1, 1)
    reg = LinearRegression().fit(x, 2 * x[:, 0])

    assert infer_outputs(reg, x[:2]) == (ColumnSpec("predict", "FP64"),)


def test_an_estimator_that_cannot_predict_on_its_example_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match=r"LogisticRegression.*cannot predict"):
        infer_outputs(LogisticRegression(), frame.head(5))
