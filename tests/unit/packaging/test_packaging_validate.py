"""Coercing request frames to a signature, and the errors that name the offending column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conveyor.core.errors import ValidationError
from conveyor.packaging import ColumnSpec
from conveyor.packaging._validate import coerce_frame

INPUTS = (
    ColumnSpec("age", "FP64"),
    ColumnSpec("support_calls", "INT64"),
    ColumnSpec("plan", "BYTES"),
    ColumnSpec("vip", "BOOL"),
    ColumnSpec("score", "FP32", nullable=True),
    ColumnSpec("region", "BYTES", nullable=True),
)


def _frame(**overrides: object) -> pd.DataFrame:
    columns: dict[str, object] = {
        "age": [31.5, 40.0],
        "support_calls": [1, 4],
        "plan": ["basic", "pro"],
        "vip": [True, False],
        "score": [0.5, 0.25],
        "region": ["north", "south"],
    }
    columns.update(overrides)
    return pd.DataFrame(columns)


def _coerce(frame: pd.DataFrame) -> pd.DataFrame:
    return coerce_frame(frame, INPUTS, model="model 'churn'")


def test_a_valid_frame_gets_the_signature_dtypes_and_order() -> None:
    frame = _frame()[["region", "vip", "plan", "score", "support_calls", "age"]]

    out = _coerce(frame)

    assert list(out.columns) == [spec.name for spec in INPUTS]
    assert [str(t) for t in out.dtypes] == [
        "float64",
        "int64",
        "object",
        "bool",
        "float32",
        "object",
    ]
    assert out["plan"].tolist() == ["basic", "pro"]


def test_the_input_frame_is_not_modified() -> None:
    frame = _frame(age=["31.5", "40"])

    _coerce(frame)

    assert frame["age"].tolist() == ["31.5", "40"]


def test_numbers_sent_as_text_are_parsed() -> None:
    out = _coerce(_frame(age=["31.5", "40"], support_calls=["1", 4.0]))

    assert out["age"].tolist() == [31.5, 40.0]
    assert out["support_calls"].tolist() == [1, 4]


def test_a_missing_column_is_named() -> None:
    with pytest.raises(ValidationError, match="input column 'plan' is missing") as info:
        _coerce(_frame().drop(columns=["plan"]))
    assert info.value.details["column"] == "plan"
    assert info.value.details["expected"] == "a column of text (BYTES)"


def test_an_unexpected_column_is_named() -> None:
    with pytest.raises(ValidationError, match="column 'gender' is not an input of this model"):
        _coerce(_frame(gender=["f", "m"]))


def test_text_that_is_not_a_number_is_named_with_its_row() -> None:
    with pytest.raises(ValidationError) as info:
        _coerce(_frame(age=[31.5, "forty"]))

    assert "input column 'age' holds 'forty' at row 1; expected numbers (FP64)" in str(info.value)
    assert info.value.details == {
        "column": "age",
        "expected": "numbers (FP64)",
        "row": 1,
        "value": "'forty'",
    }


def test_a_fraction_in_an_integer_column_is_refused() -> None:
    with pytest.raises(
        ValidationError, match=r"'support_calls' holds 2.5 at row 1; expected whole"
    ):
        _coerce(_frame(support_calls=[1.0, 2.5]))


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(ValidationError, match="'age' holds true/false values"):
        _coerce(_frame(age=[True, False]))


def test_a_null_in_a_non_nullable_column_is_refused() -> None:
    with pytest.raises(ValidationError, match="input column 'age' is null at row 0"):
        _coerce(_frame(age=[None, 40.0]))


def test_nulls_pass_where_the_signature_allows_them() -> None:
    out = _coerce(_frame(score=[None, 0.5], region=[None, "north"]))

    assert np.isnan(out["score"].iloc[0])
    assert out["region"].isna().tolist() == [True, False]
    assert out["region"].dtype == object


def test_text_columns_take_integer_codes_but_not_floats() -> None:
    assert _coerce(_frame(region=[3, "north"]))["region"].tolist() == ["3", "north"]
    with pytest.raises(
        ValidationError, match=r"'plan' holds 1.5 \(float\) at row 0; expected text"
    ):
        _coerce(_frame(plan=[1.5, "pro"]))


def test_pandas_string_dtype_becomes_object_text() -> None:
    out = _coerce(_frame(plan=pd.Series(["basic", "pro"], dtype="string")))

    assert out["plan"].dtype == object
    assert out["plan"].tolist() == ["basic", "pro"]


def test_a_bool_column_refuses_other_values() -> None:
    assert _coerce(_frame(vip=[1, 0]))["vip"].tolist() == [True, False]
    with pytest.raises(ValidationError, match="'vip' holds 'yes' at row 0; expected true/false"):
        _coerce(_frame(vip=["yes", False]))


def test_large_integers_keep_their_precision() -> None:
    big = 2**53 + 1
    assert _coerce(_frame(support_calls=[big, 1]))["support_calls"].iloc[0] == big


def test_an_int32_overflow_is_refused() -> None:
    inputs = (ColumnSpec("n", "INT32"),)
    with pytest.raises(ValidationError, match="'n' holds 4294967296 at row 0; expected whole"):
        coerce_frame(pd.DataFrame({"n": [2**32]}), inputs, model="model 'm'")


def test_something_other_than_a_frame_is_refused() -> None:
    with pytest.raises(ValidationError, match="takes a pandas DataFrame, not dict"):
        coerce_frame({"age": [1.0]}, INPUTS, model="model 'churn'")
