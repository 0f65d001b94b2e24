"""Request tensors -> model frames, and predictions -> response bytes, without a server."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conveyor.core.errors import ValidationError
from conveyor.packaging import ColumnSpec, Signature
from conveyor.server.errors import MalformedRequestError
from conveyor.server.tensors import decode_request, encode_response, parse_json, tensor_metadata

SIGNATURE = Signature(
    inputs=(
        ColumnSpec("x", "FP64"),
        ColumnSpec("n", "INT64"),
        ColumnSpec("flag", "BOOL"),
        ColumnSpec("name", "BYTES"),
        ColumnSpec("maybe", "FP64", nullable=True),
    ),
    outputs=(ColumnSpec("predict", "INT64"), ColumnSpec("predict_proba", "FP64", (-1, 3))),
)


def _tensor(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> Any:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


def _columns(**changes: Any) -> dict[str, Any]:
    tensors = {
        "x": _tensor("x", "FP64", [1.5, 2.0]),
        "n": _tensor("n", "INT64", [3, 4]),
        "flag": _tensor("flag", "BOOL", [True, False]),
        "name": _tensor("name", "BYTES", ["a", "b"]),
        "maybe": _tensor("maybe", "FP64", [None, 0.5]),
    }
    tensors.update(changes)
    return {"inputs": list(tensors.values())}


def test_one_tensor_per_column_gives_typed_columns_in_signature_order() -> None:
    body = _columns()
    body["inputs"].reverse()
    request = decode_request(body, SIGNATURE)
    frame = request.frame()
    assert list(frame.columns) == ["x", "n", "flag", "name", "maybe"]
    assert frame["x"].dtype == np.float64
    assert frame["n"].dtype == np.int64
    assert frame["flag"].dtype == np.bool_
    assert frame["name"].tolist() == ["a", "b"]
    assert frame["maybe"].isna().tolist() == [True, False]
    assert request.outputs == ("predict", "predict_proba")


def test_integers_widen_into_float_columns_but_not_the_reverse() -> None:
    frame = decode_request(_columns(x=_tensor("x", "INT32", [1, 2])), SIGNATURE).frame()
    assert frame["x"].tolist() == [1.0, 2.0]
    assert frame["x"].dtype == np.float64
    with pytest.raises(ValidationError, match="input 'n' is FP64 but the model expects INT64"):
        decode_request(_columns(n=_tensor("n", "FP64", [1.0, 2.0])), SIGNATURE)
    with pytest.raises(ValidationError, match=r"input 'n': element 1 is 2\.5, not an integer"):
        decode_request(_columns(n=_tensor("n", "INT64", [1, 2.5])), SIGNATURE)


def test_null_only_where_the_signature_allows_it() -> None:
    with pytest.raises(ValidationError, match="input 'x': element 0 is null") as info:
        decode_request(_columns(x=_tensor("x", "FP64", [None, 1.0])), SIGNATURE)
    assert "does not accept nulls" in str(info.value)


def test_column_tensor_of_shape_n_by_1_nested_or_flat() -> None:
    nested = _columns(x=_tensor("x", "FP64", [[1.0], [2.0]], shape=[2, 1]))
    flat = _columns(x=_tensor("x", "FP64", [1.0, 2.0], shape=[2, 1]))
    assert decode_request(nested, SIGNATURE).frame()["x"].tolist() == [1.0, 2.0]
    assert decode_request(flat, SIGNATURE).frame()["x"].tolist() == [1.0, 2.0]


def test_2d_tensor_must_match_every_column_datatype() -> None:
    data = [1.0, 2, True, "a", None]
    body = {"inputs": [_tensor("m", "FP64", data, shape=[1, 5])]}
    with pytest.raises(ValidationError, match="column 'n' is FP64 but the model expects INT64"):
        decode_request(body, SIGNATURE)


def test_2d_tensor_of_a_single_type_signature() -> None:
    signature = Signature(
        inputs=(ColumnSpec("a", "FP32"), ColumnSpec("b", "FP32")),
        outputs=(ColumnSpec("predict", "FP32"),),
    )
    body = {"inputs": [_tensor("m", "FP32", [[1, 2], [3, 4], [5, 6]], shape=[3, 2])]}
    frame = decode_request(body, signature).frame()
    assert frame["a"].tolist() == [1, 3, 5]
    assert frame["b"].tolist() == [2, 4, 6]
    assert frame["a"].dtype == np.float32


def test_a_request_with_no_rows_is_422() -> None:
    empty = [("x", "FP64"), ("n", "INT64"), ("flag", "BOOL"), ("name", "BYTES"), ("maybe", "FP64")]
    body = _columns(**{k: _tensor(k, t, []) for k, t in empty})
    with pytest.raises(ValidationError, match="the request has no rows"):
        decode_request(body, SIGNATURE)


def test_nullable_integers_and_booleans_keep_their_nulls() -> None:
    signature = Signature(
        inputs=(ColumnSpec("n", "INT64", nullable=True), ColumnSpec("b", "BOOL", nullable=True)),
        outputs=(ColumnSpec("predict", "FP64"),),
    )
    body = {"inputs": [_tensor("n", "INT64", [1, None]), _tensor("b", "BOOL", [None, True])]}
    frame = decode_request(body, signature).frame()
    assert frame["n"].isna().tolist() == [False, True]
    assert frame["b"].isna().tolist() == [True, False]
    assert frame["n"].iloc[0] == 1


def test_missing_inputs_are_all_named() -> None:
    body = {"inputs": [_tensor("x", "FP64", [1.0])]}
    with pytest.raises(ValidationError, match="missing inputs 'n', 'flag', 'name', 'maybe'"):
        decode_request(body, SIGNATURE)


@pytest.mark.parametrize("body", [b"[1]", b"3", b'"text"'])
def test_json_that_is_not_an_object(body: bytes) -> None:
    with pytest.raises(MalformedRequestError, match="not an object"):
        parse_json(body)


def test_response_bytes_follow_the_protocol() -> None:
    request = decode_request({**_columns(), "id": "abc"}, SIGNATURE)
    predictions = {
        "predict": np.array([1, 0]),
        "predict_proba": np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]),
    }
    body = json.loads(
        encode_response(
            model="m", version=3, request=request, predictions=predictions, signature=SIGNATURE
        )
    )
    assert body == {
        "model_name": "m",
        "model_version": "3",
        "id": "abc",
        "outputs": [
            {
                "name": "predict",
                "shape": [2],
                "datatype": "INT64",
                "parameters": {"content_type": "np"},
                "data": [1, 0],
            },
            {
                "name": "predict_proba",
                "shape": [2, 3],
                "datatype": "FP64",
                "parameters": {"content_type": "np"},
                "data": [0.1, 0.2, 0.7, 0.5, 0.25, 0.25],
            },
        ],
    }


def test_text_labels_are_bytes_outputs() -> None:
    signature = Signature(inputs=SIGNATURE.inputs, outputs=(ColumnSpec("predict", "BYTES"),))
    request = decode_request(_columns(), signature)
    body = json.loads(
        encode_response(
            model="m",
            version=1,
            request=request,
            predictions={"predict": np.array(["yes", "no"], dtype=object)},
            signature=signature,
        )
    )
    assert body["outputs"] == [
        {
            "name": "predict",
            "shape": [2],
            "datatype": "BYTES",
            "parameters": {"content_type": "str"},
            "data": ["yes", "no"],
        }
    ]


def test_tensor_metadata() -> None:
    assert tensor_metadata(SIGNATURE.outputs) == [
        {
            "name": "predict",
            "datatype": "INT64",
            "shape": [-1],
            "parameters": {"content_type": "np"},
        },
        {
            "name": "predict_proba",
            "datatype": "FP64",
            "shape": [-1, 3],
            "parameters": {"content_type": "np"},
        },
    ]


def test_frame_is_a_dataframe_with_one_row_per_value() -> None:
    request = decode_request(_columns(), SIGNATURE)
    assert request.rows == 2
    assert isinstance(request.frame(), pd.DataFrame)
    assert len(request.frame()) == 2


def test_a_scalar_tensor_is_not_a_column() -> None:
    body = _columns(x={"name": "x", "datatype": "FP64", "shape": [], "data": [1.0]})
    with pytest.raises(ValidationError, match=r"input 'x' has shape \[\]"):
        decode_request(body, SIGNATURE)
