"""Step outputs to bytes and back: exact round trips, equal bytes for equal values, and a
clear error for anything else."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.core.errors import ValidationError
from conveyor.packaging import Model
from conveyor.pipeline import _codecs


def _frame() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "id": np.arange(6, dtype=np.int64),
            "name": ["a", "b", "c", "d", "e", None],
            # object dtype holding str: pandas 3 would read it back as its str dtype.
            "code": pd.Series(["u", "v", None, "w", "x", "y"], dtype=object),
            "lists": pd.Series([[1], [2, 3], [], [4], [5], [6]], dtype=object),
            "score": [0.5, 1.5, np.nan, 3.0, 4.25, 5.0],
            "flag": [True, False, True, True, False, True],
            "kind": pd.Categorical(["x", "y", "x", "x", "y", "y"]),
            "at": pd.date_range("2026-01-01", periods=6, freq="h", tz="UTC"),
        }
    )
    df = df[df["id"] % 2 == 0]  # a non-default index must survive too
    return df.set_index(pd.Index(["r0", "r2", "r4"], dtype=object, name="row"))


def _estimator() -> Any:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)


def test_a_frame_round_trips_through_parquet_with_its_index_and_dtypes() -> None:
    df = _frame()
    data, media_type = _codecs.encode(df, step="s")
    assert media_type == "application/vnd.apache.parquet"
    assert data[:4] == b"PAR1"
    decoded = _codecs.decode(data, media_type)
    pd.testing.assert_frame_equal(decoded, df)
    assert decoded["code"].dtype == object
    assert decoded["code"].iloc[1] is None
    assert decoded.index.dtype == object
    # And the decoded frame encodes to the same bytes: a cached frame is the fresh frame.
    assert _codecs.encode(decoded, step="s")[0] == data


def test_equal_frames_encode_to_equal_bytes() -> None:
    first, _ = _codecs.encode(_frame(), step="s")
    second, _ = _codecs.encode(_frame().copy(deep=True), step="s")
    assert first == second


def test_a_frame_of_mixed_column_types_is_refused_naming_the_step() -> None:
    df = pd.DataFrame({"mixed": [1, "two", 3.0]}, dtype=object)
    with pytest.raises(ValidationError, match=r"returned by step 'clean' cannot be stored"):
        _codecs.encode(df, step="clean")


def test_an_array_round_trips_through_npy_without_pickle() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    data, media_type = _codecs.encode(array, step="s")
    assert media_type == "application/x-npy"
    decoded = _codecs.decode(data, media_type)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, array)
    assert _codecs.encode(array.copy(), step="s")[0] == data


def test_an_object_array_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"step 'arr' returned a numpy array of dtype object"):
        _codecs.encode(np.array([{"a": 1}, None], dtype=object), step="arr")


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2.5, None, True, "x"], "a": {"nested": []}},
        [],
        "text",
        0,
        -3.25,
        False,
        None,
    ],
)
def test_json_values_round_trip(value: Any) -> None:
    data, media_type = _codecs.encode(value, step="s")
    assert media_type == "application/json"
    assert _codecs.decode(data, media_type) == value


def test_json_is_canonical_whatever_the_key_order() -> None:
    assert (
        _codecs.encode({"a": 1, "b": 2}, step="s")[0]
        == _codecs.encode({"b": 2, "a": 1}, step="s")[0]
        == b'{"a":1,"b":2}'
    )


def test_numpy_scalars_in_metrics_become_plain_numbers() -> None:
    metrics = {"auc": np.float64(0.75), "n": np.int64(3), "ok": np.bool_(True)}
    data, media_type = _codecs.encode(metrics, step="metrics")
    assert _codecs.decode(data, media_type) == {"auc": 0.75, "n": 3, "ok": True}


def test_nan_survives_json() -> None:
    data, media_type = _codecs.encode({"x": math.nan}, step="s")
    assert math.isnan(_codecs.decode(data, media_type)["x"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2), r"step 'bad' returned a tuple, which Conveyor cannot store"),
        ({1, 2}, r"step 'bad' returned a set, which Conveyor cannot store"),
        (object(), r"step 'bad' returned an object, which Conveyor cannot store"),
        (pd.Series([1, 2]), r"returned a pandas.Series"),
        ({"a": [1, (2, 3)]}, r"returned a dict holding a tuple at \['a'\]\[1\]"),
        ({"a": {1: "x"}}, r"returned a dict with the key 1 at \['a'\], but JSON keys must be"),
    ],
)
def test_other_values_are_refused_naming_the_step_and_type(value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        _codecs.encode(value, step="bad")
    assert "DataFrame" in (caught.value.hint or "")
    assert caught.value.details["step"] == "bad"


def test_an_estimator_round_trips_through_skops_with_its_trusted_types() -> None:
    estimator = _estimator()
    data, media_type = _codecs.encode(estimator, step="fit")
    assert media_type == "application/vnd.conveyor.sklearn+zip"
    decoded = _codecs.decode(data, media_type)
    x = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_array_equal(decoded.predict_proba(x), estimator.predict_proba(x))


def test_an_estimator_encodes_to_the_same_bytes_every_time() -> None:
    estimator = _estimator()
    assert _codecs.encode(estimator, step="fit")[0] == _codecs.encode(estimator, step="fit")[0]
    # A separately fitted but equal estimator, too.
    assert _codecs.encode(_estimator(), step="fit")[0] == _codecs.encode(estimator, step="fit")[0]


def test_a_model_round_trips_through_the_packaging_codec() -> None:
    estimator = _estimator()
    example = pd.DataFrame(np.zeros((2, 3)), columns=["a", "b", "c"])
    model = Model(estimator=estimator, input_example=example)
    data, media_type = _codecs.encode(model, step="model")
    assert media_type == "application/vnd.conveyor.model+zip"
    decoded = _codecs.decode(data, media_type)
    assert isinstance(decoded, Model)
    pd.testing.assert_frame_equal(decoded.input_example, example)
    assert _codecs.encode(model, step="model")[0] == data


def test_an_unknown_media_type_is_an_error() -> None:
    with pytest.raises(ValidationError, match="cannot read"):
        _codecs.decode(b"{}", "application/x-unknown")
