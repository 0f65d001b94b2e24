"""The rest of the Open Inference Protocol v2: parameters and content types, every datatype,
metadata parameters and server extensions; through the app, on real models."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest
from tests.unit.server._support import MODEL, expected_proba, infer_body, rows
from tests.unit.server.conftest import C1

from conveyor.core.errors import ValidationError
from conveyor.packaging import ColumnSpec, Signature
from conveyor.server.tensors import decode_request

if TYPE_CHECKING:
    import pandas as pd
    from tests.unit.server._support import TestClient
    from tests.unit.server.conftest import Stores


@pytest.fixture
def stores(shared: tuple[Stores, TestClient]) -> Stores:
    return shared[0]


@pytest.fixture
def client(shared: tuple[Stores, TestClient]) -> TestClient:
    return shared[1]


def _infer(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post(f"/v2/models/{MODEL}/infer", json=body)


def _proba(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    data: list[float] = outputs["predict_proba"]["data"]
    return data


def _error(response: Any, status: int = 422) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    message: str = body["error"]
    return message


def _set(body: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            tensor.update(changes)
    return body


# -- parameters and content types ---------------------------------------------------------------


def test_id_is_echoed_and_outputs_carry_their_content_type(client: TestClient) -> None:
    frame = rows(4)
    response = _infer(client, infer_body(frame, id="abc-1", parameters={"content_type": "pd"}))
    answer = response.json()
    assert answer["id"] == "abc-1"
    params = {o["name"]: o["parameters"] for o in answer["outputs"]}
    assert params == {"predict": {"content_type": "np"}, "predict_proba": {"content_type": "np"}}
    assert _proba(response) == pytest.approx(expected_proba(C1, frame), abs=1e-12)


def test_per_input_str_and_np_content_types_are_honoured(client: TestClient) -> None:
    frame = rows(3)
    body = infer_body(frame)
    _set(body, "plan", parameters={"content_type": "str"})
    _set(body, "age", parameters={"content_type": "np"})
    assert _proba(_infer(client, body)) == pytest.approx(expected_proba(C1, frame), abs=1e-12)


def test_base64_text_is_decoded(client: TestClient) -> None:
    frame = rows(3)
    encoded = [base64.b64encode(p.encode()).decode() for p in frame["plan"]]
    body = _set(infer_body(frame), "plan", data=encoded, parameters={"content_type": "base64"})
    assert _proba(_infer(client, body)) == pytest.approx(expected_proba(C1, frame), abs=1e-12)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            infer_body(rows(1), parameters={"content_type": "hf"}),
            "the request's content_type 'hf' is not supported",
        ),
        (
            infer_body(rows(1), parameters={"content_type": "np"}),
            "the request's content_type 'np' needs exactly one input, it has 3",
        ),
        (
            _set(infer_body(rows(1)), "plan", parameters={"content_type": "pd"}),
            "input 'plan': content_type 'pd' is not supported on an input; 'pd' is a "
            "request-level content type",
        ),
        (
            _set(infer_body(rows(1)), "plan", parameters={"content_type": "datetime"}),
            "input 'plan': content_type 'datetime' is not supported on an input",
        ),
        (
            _set(infer_body(rows(1)), "age", parameters={"content_type": "str"}),
            "input 'age': content_type 'str' needs datatype BYTES, not FP64",
        ),
        (
            _set(infer_body(rows(1)), "plan", parameters={"content_type": "base64"}),
            "input 'plan': element 0 is not base64 of UTF-8 text",
        ),
        (
            _set(infer_body(rows(1)), "plan", parameters=["str"]),
            "input 'plan': 'parameters' must be an object",
        ),
    ],
)
def test_content_types_that_cannot_be_honoured_are_422(
    client: TestClient, body: dict[str, Any], expected: str
) -> None:
    assert expected in _error(_infer(client, body))


# -- datatypes -----------------------------------------------------------------------------------


def _integral(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["age"] = frame["age"].round().astype(int)
    frame["tenure"] = frame["tenure"].round().astype(int)
    return frame


@pytest.mark.parametrize(
    "datatype",
    ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"],
)
def test_every_integer_datatype_feeds_a_float_column(client: TestClient, datatype: str) -> None:
    frame = _integral(rows(5))
    body = infer_body(frame)
    _set(body, "age", datatype=datatype, data=[int(v) for v in frame["age"]])
    _set(body, "tenure", datatype=datatype, data=[int(v) for v in frame["tenure"]])
    assert _proba(_infer(client, body)) == pytest.approx(expected_proba(C1, frame), abs=1e-12)


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_every_float_datatype_feeds_a_float_column(client: TestClient, datatype: str) -> None:
    # Halves are exact in every float width, so the model sees exactly these values.
    frame = rows(5)
    frame["age"] = [20.5, 33.0, 47.5, 61.0, 75.5]
    body = _set(infer_body(frame), "age", datatype=datatype)
    assert _proba(_infer(client, body)) == pytest.approx(expected_proba(C1, frame), abs=1e-12)


@pytest.mark.parametrize(
    ("datatype", "value", "expected"),
    [
        ("UINT8", -1, "input 'age': a value does not fit UINT8"),
        ("INT8", 300, "input 'age': a value does not fit INT8"),
        ("UINT16", 70000, "input 'age': a value does not fit UINT16"),
        ("INT32", 2**31, "input 'age': a value does not fit INT32"),
        ("INT64", 30.5, "input 'age': element 0 is 30.5, not an integer (INT64)"),
        ("BOOL", True, "input 'age' is BOOL but the model expects FP64"),
    ],
)
def test_values_must_fit_their_declared_datatype(
    client: TestClient, datatype: str, value: Any, expected: str
) -> None:
    body = _set(infer_body(rows(1)), "age", datatype=datatype, data=[value])
    assert expected in _error(_infer(client, body))


SIGNATURE = Signature(
    inputs=(
        ColumnSpec("f32", "FP32"),
        ColumnSpec("i32", "INT32"),
        ColumnSpec("i64", "INT64"),
        ColumnSpec("flag", "BOOL"),
        ColumnSpec("text", "BYTES"),
    ),
    outputs=(ColumnSpec("predict", "INT64"),),
)


def _tensor(name: str, datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [len(data)], "data": data}


def test_columns_take_the_signature_dtypes_whatever_width_was_sent() -> None:
    body = {
        "inputs": [
            _tensor("f32", "FP64", [0.5, 1.25]),
            _tensor("i32", "INT8", [-3, 4]),
            _tensor("i64", "UINT32", [4_000_000_000, 0]),
            _tensor("flag", "BOOL", [True, False]),
            _tensor("text", "BYTES", ["a", "b"]),
        ]
    }
    frame = decode_request(body, SIGNATURE).frame()
    assert frame.dtypes.astype(str).tolist()[:4] == ["float32", "int32", "int64", "bool"]
    assert frame["text"].tolist() == ["a", "b"]
    assert frame["i64"].tolist() == [4_000_000_000, 0]
    assert frame["i32"].tolist() == [-3, 4]


def test_a_value_that_fits_the_sent_datatype_but_not_the_column_is_422() -> None:
    body = {
        "inputs": [
            _tensor("f32", "FP32", [0.5]),
            _tensor("i32", "INT64", [2**40]),
            _tensor("i64", "INT64", [1]),
            _tensor("flag", "BOOL", [True]),
            _tensor("text", "BYTES", ["a"]),
        ]
    }
    with pytest.raises(ValidationError, match="input 'i32': a value does not fit INT32"):
        decode_request(body, SIGNATURE)


def test_request_content_type_np_takes_the_one_matrix() -> None:
    numeric = Signature(
        inputs=(ColumnSpec("a", "FP64"), ColumnSpec("b", "FP64")),
        outputs=(ColumnSpec("predict", "INT64"),),
    )
    body = {
        "parameters": {"content_type": "np"},
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}],
    }
    frame = decode_request(body, numeric).frame()
    assert frame["a"].tolist() == [1.0, 3.0]
    assert frame["b"].tolist() == [2.0, 4.0]


def test_request_content_type_str_needs_one_bytes_input() -> None:
    text = Signature(inputs=(ColumnSpec("t", "BYTES"),), outputs=(ColumnSpec("predict", "INT64"),))
    body = {"parameters": {"content_type": "str"}, "inputs": [_tensor("t", "BYTES", ["x", "y"])]}
    assert decode_request(body, text).frame()["t"].tolist() == ["x", "y"]
    numbers = Signature(
        inputs=(ColumnSpec("t", "FP64"),), outputs=(ColumnSpec("predict", "INT64"),)
    )
    body = {"parameters": {"content_type": "str"}, "inputs": [_tensor("t", "FP64", [1.0])]}
    with pytest.raises(ValidationError, match="content_type 'str' needs a BYTES input"):
        decode_request(body, numbers)


def test_null_base64_element_stays_null_for_a_nullable_column() -> None:
    nullable = Signature(
        inputs=(ColumnSpec("t", "BYTES", nullable=True),), outputs=(ColumnSpec("predict", "INT64"),)
    )
    tensor = _tensor("t", "BYTES", [None, base64.b64encode("é".encode()).decode()])
    tensor["parameters"] = {"content_type": "base64"}
    frame = decode_request({"inputs": [tensor]}, nullable).frame()
    assert frame["t"].tolist()[1] == "é"
    assert frame["t"].isna().tolist() == [True, False]


# -- metadata ------------------------------------------------------------------------------------


def test_model_metadata_has_the_parameters_where_mlserver_puts_them(client: TestClient) -> None:
    body = client.get(f"/v2/models/{MODEL}").json()
    assert body["parameters"] == {"content_type": "pd"}
    assert {i["name"]: i["parameters"]["content_type"] for i in body["inputs"]} == {
        "age": "np",
        "tenure": "np",
        "plan": "str",
    }
    assert all(o["parameters"] == {"content_type": "np"} for o in body["outputs"])


def test_server_metadata_lists_the_extensions(client: TestClient) -> None:
    body = client.get("/v2").json()
    assert body["extensions"] == ["parameters", "mlflow_invocations", "metrics", "openapi"]
    # Each extension named is there.
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert (
        client.post("/invocations", json={"instances": [[30.0, 5.0, "basic"]]}).status_code == 200
    )


def test_the_metadata_tells_a_client_how_to_build_a_request(client: TestClient) -> None:
    # A client that builds its request from the metadata alone (names, datatypes, content
    # types) gets the model's answer.
    metadata = client.get(f"/v2/models/{MODEL}").json()
    frame = rows(3)
    body = {
        "parameters": metadata["parameters"],
        "inputs": [
            {
                "name": i["name"],
                "datatype": i["datatype"],
                "shape": [3],
                "parameters": i["parameters"],
                "data": frame[i["name"]].tolist(),
            }
            for i in metadata["inputs"]
        ],
    }
    assert _proba(_infer(client, body)) == pytest.approx(expected_proba(C1, frame), abs=1e-12)
