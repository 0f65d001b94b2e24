"""MLflow's scoring protocol (``POST /invocations``, ``GET /ping``), in process, on real models.

Every body format ``mlflow models serve`` reads is sent through the app, and the predictions are
compared with the scikit-learn estimator's own ``predict`` on the same rows.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.unit.server._support import COLUMNS, MODEL, TestClient, estimator, rows
from tests.unit.server.conftest import C1, C2, two_versions

from conveyor.core.errors import UsageError, ValidationError
from conveyor.packaging import ColumnSpec, Signature
from conveyor.server import create_app
from conveyor.server.errors import MalformedRequestError
from conveyor.server.invocations import (
    UnsupportedMediaTypeError,
    decode_invocations,
    label_output,
)

if TYPE_CHECKING:
    import pandas as pd
    from tests.unit.server.conftest import Stores

    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore


@pytest.fixture
def stores(shared: tuple[Stores, TestClient]) -> Stores:
    return shared[0]


@pytest.fixture
def client(shared: tuple[Stores, TestClient]) -> TestClient:
    return shared[1]


def _labels(c: float, frame: pd.DataFrame) -> list[int]:
    """What MLflow's sklearn flavor answers: the estimator's own predict, one label per row."""
    return [int(v) for v in estimator(c).predict(frame[list(COLUMNS)])]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: row[k] for k in COLUMNS} for row in frame.to_dict(orient="records")]


def _matrix(frame: pd.DataFrame) -> list[list[Any]]:
    return [[row[k] for k in COLUMNS] for row in _records(frame)]


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    return {k: frame[k].tolist() for k in COLUMNS}


def _bodies(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    split = {"columns": list(COLUMNS), "data": _matrix(frame)}
    return {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_split_with_index": {
            "dataframe_split": {**split, "index": list(range(10, 10 + len(frame)))}
        },
        # Columns in another order than the signature's: matched by name.
        "dataframe_split_reordered": {
            "dataframe_split": {
                "columns": ["plan", "age", "tenure"],
                "data": [[r["plan"], r["age"], r["tenure"]] for r in _records(frame)],
            }
        },
        "dataframe_split_positional": {"dataframe_split": {"data": _matrix(frame)}},
        "dataframe_records": {"dataframe_records": _records(frame)},
        "instances_rows": {"instances": _matrix(frame)},
        "instances_records": {"instances": _records(frame)},
        "instances_columns": {"instances": _columns(frame)},
        "inputs_rows": {"inputs": _matrix(frame)},
        "inputs_records": {"inputs": _records(frame)},
        "inputs_columns": {"inputs": _columns(frame)},
        "empty_params": {"dataframe_records": _records(frame), "params": {}},
    }


FORMATS = sorted(_bodies(rows(1)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_json_format_predicts_what_the_model_predicts(client: TestClient, fmt: str) -> None:
    frame = rows(7)
    response = client.post("/invocations", json=_bodies(frame)[fmt])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"predictions": _labels(C1, frame)}


def test_named_model_route_and_versioned_route(client: TestClient, stores: Stores) -> None:
    frame = rows(25)
    body = {"dataframe_records": _records(frame)}
    named = client.post(f"/v2/models/{MODEL}/invocations", json=body)
    assert named.json() == {"predictions": _labels(C1, frame)}
    versioned = client.post(f"/v2/models/{MODEL}/versions/{stores.v2}/invocations", json=body)
    assert versioned.status_code == 200, versioned.text
    assert versioned.json() == {"predictions": _labels(C2, frame)}
    # The two versions disagree somewhere on these rows, so the route did pick the version.
    assert _labels(C1, frame) != _labels(C2, frame)


def _csv(frame: pd.DataFrame, header: list[str] | None = None) -> bytes:
    text: str = frame.to_csv(index=False, columns=header or list(COLUMNS))
    return text.encode()


@pytest.mark.parametrize(
    "content_type", ["text/csv", "text/csv; charset=utf-8", "TEXT/CSV;charset=UTF-8"]
)
def test_csv_with_a_header_row(client: TestClient, content_type: str) -> None:
    frame = rows(9)
    response = client.post(
        "/invocations", content=_csv(frame), headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": _labels(C1, frame)}


def test_csv_columns_in_any_order_and_extra_columns_ignored(client: TestClient) -> None:
    frame = rows(4)
    frame["customer_id"] = ["a", "b", "c", "d"]
    body = _csv(frame, ["customer_id", "plan", "tenure", "age"])
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert response.json() == {"predictions": _labels(C1, frame)}


def test_json_with_a_charset(client: TestClient) -> None:
    frame = rows(3)
    body = json.dumps({"dataframe_records": _records(frame)}).encode("utf-16")
    response = client.post(
        "/invocations",
        content=body,
        headers={"content-type": "application/json; charset=utf-16"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": _labels(C1, frame)}


def test_extra_json_column_is_ignored_as_mlflow_does(client: TestClient) -> None:
    frame = rows(5)
    records = [{**r, "customer_id": i} for i, r in enumerate(_records(frame))]
    response = client.post("/invocations", json={"dataframe_records": records})
    assert response.json() == {"predictions": _labels(C1, frame)}


def test_integers_widen_into_float_columns(client: TestClient) -> None:
    frame = rows(3)
    frame["age"] = [30, 45, 61]
    records = [{**r, "age": int(r["age"])} for r in _records(frame)]
    response = client.post("/invocations", json={"dataframe_records": records})
    assert response.json() == {"predictions": _labels(C1, frame)}


def test_a_body_past_the_inline_decode_size_is_answered_whole(client: TestClient) -> None:
    frame = rows(5000)
    body = _csv(frame)
    assert len(body) > 64 * 1024
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert response.json() == {"predictions": _labels(C1, frame)}


# -- errors ---------------------------------------------------------------------------------------


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    message: str = body["error"]
    return message


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""]
)
def test_other_content_types_are_415(client: TestClient, content_type: str) -> None:
    body = json.dumps({"dataframe_records": _records(rows(1))}).encode()
    headers = {"content-type": content_type} if content_type else {}
    message = _error(client.post("/invocations", content=body, headers=headers), 415)
    assert "is not supported" in message
    assert "application/json or text/csv" in message


def test_unknown_charset_is_415(client: TestClient) -> None:
    response = client.post(
        "/invocations", content=b"{}", headers={"content-type": "application/json; charset=nope"}
    )
    assert "charset 'nope'" in _error(response, 415)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b"{}", "exactly one of dataframe_split, dataframe_records, instances, inputs"),
        (b'{"data": [[1]]}', "it has data"),
        (
            json.dumps({"instances": [[1, 2, "a"]], "inputs": [[1, 2, "a"]]}).encode(),
            "it has instances, inputs",
        ),
        (
            json.dumps({"dataframe_records": [], "params": {"top_k": 3, "temp": 1}}).encode(),
            "unknown params: 'top_k', 'temp'",
        ),
        (json.dumps({"instances": [[1, 2, "a"]], "params": [1]}).encode(), "'params' must be"),
    ],
)
def test_unreadable_bodies_are_400(client: TestClient, body: bytes, expected: str) -> None:
    response = client.post(
        "/invocations", content=body, headers={"content-type": "application/json"}
    )
    assert expected in _error(response, 400)


def _without(frame: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != column} for r in _records(frame)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"dataframe_records": _without(rows(2), "tenure")}, "missing column 'tenure'"),
        (
            {"dataframe_split": {"columns": ["age"], "data": [[30.0]]}},
            "missing columns 'tenure', 'plan'",
        ),
        (
            {"dataframe_records": [{"age": "old", "tenure": 3.0, "plan": "basic"}]},
            "column 'age': element 0 is 'old', not a number (FP64)",
        ),
        (
            {"dataframe_records": [{"age": 30.0, "tenure": 3.0, "plan": 7}]},
            "column 'plan': element 0 is 7, not a string (BYTES)",
        ),
        (
            {"dataframe_records": [{"age": True, "tenure": 3.0, "plan": "basic"}]},
            "column 'age': element 0 is True, not a number",
        ),
        (
            {"dataframe_records": [{"age": 30.0, "tenure": 3.0, "plan": "basic"}, {"age": 1.0}]},
            "column 'tenure': element 1 is null",
        ),
        ({"instances": [[30.0, 3.0]]}, "'instances' row 0 has 2 values, not 3 (age, tenure, plan)"),
        ({"inputs": {"age": [1.0], "tenure": [1.0, 2.0], "plan": ["a"]}}, "all of one length"),
        ({"dataframe_records": []}, "the request has no rows"),
        ({"dataframe_split": [[1, 2, "a"]]}, "'dataframe_split' must be an object with 'data'"),
        ({"dataframe_records": [[1, 2, "a"]]}, "'dataframe_records' row 0 is not an object"),
    ],
)
def test_rows_that_do_not_fit_the_signature_are_422_naming_the_column(
    client: TestClient, body: dict[str, Any], expected: str
) -> None:
    assert expected in _error(client.post("/invocations", json=body), 422)


def test_csv_value_of_the_wrong_type_is_422_naming_the_column(client: TestClient) -> None:
    body = b"age,tenure,plan\n30.5,12,basic\nold,3,pro\n"
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert "column 'age': element 1 is 'old', not a number (FP64)" in _error(response, 422)


def test_csv_empty_field_is_a_null(client: TestClient) -> None:
    body = b"age,tenure,plan\n30.5,,basic\n"
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert "column 'tenure': element 0 is null" in _error(response, 422)


def test_csv_row_with_the_wrong_number_of_fields_is_422(client: TestClient) -> None:
    body = b"age,tenure,plan\n30.5,12\n"
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert "CSV row 0 has 2 fields, the header has 3" in _error(response, 422)


@pytest.mark.parametrize("body", [b"", b"\n\n"])
def test_empty_csv_is_400(client: TestClient, body: bytes) -> None:
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert "the CSV body is empty" in _error(response, 400)


def test_csv_that_is_not_utf8_is_400(client: TestClient) -> None:
    response = client.post(
        "/invocations", content=b"age\xff\n1\n", headers={"content-type": "text/csv"}
    )
    assert "not valid UTF-8" in _error(response, 400)


def test_unknown_model_on_the_named_route_is_404(client: TestClient) -> None:
    response = client.post("/v2/models/nope/invocations", json={"instances": [[1.0, 2.0, "a"]]})
    assert "no model 'nope'" in _error(response, 404)


# -- ping, readiness, several models, metrics ----------------------------------------------------


def test_ping_and_health_are_200_when_ready(client: TestClient) -> None:
    for path in ("/ping", "/health"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.content == b"\n"


def test_ping_is_503_when_not_ready(stores: Stores) -> None:
    # A server told to serve a model that does not exist is never ready.
    with TestClient(create_app(stores.metadata, stores.artifacts, models=["other"])) as client:
        assert client.get("/ping").status_code == 503
        assert client.get("/health").status_code == 503
        response = client.post("/invocations", json={"instances": [[1.0, 2.0, "a"]]})
        assert "no model 'other'" in _error(response, 404)


def test_ping_is_503_before_the_registry_is_read(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor import registry
    from conveyor.core.errors import InfrastructureError

    def routing_token(_store: Any) -> int:
        raise InfrastructureError("metadata store is unavailable: connection refused")

    monkeypatch.setattr(registry, "routing_token", routing_token)
    with TestClient(create_app(stores.metadata, stores.artifacts)) as client:
        assert client.get("/ping").status_code == 503
        response = client.post("/invocations", json={"instances": [[1.0, 2.0, "a"]]})
        assert "has not read the registry" in _error(response, 503)


def test_a_server_of_several_models_sends_invocations_to_the_named_route(
    metadata_store: MetadataStore, artifact_store: LocalArtifactStore
) -> None:
    from tests.unit.server._support import promote, register

    # Fresh stores on each backend: the shared registry must keep serving one model.
    stores = two_versions(metadata_store, artifact_store)
    frame = rows(6)
    version, _ = register(stores.metadata, stores.artifacts, c=C2, name="churn_b")
    promote(stores.metadata, version, name="churn_b")
    with TestClient(create_app(stores.metadata, stores.artifacts)) as client:
        message = _error(client.post("/invocations", json={"instances": _matrix(frame)}), 400)
        assert "serves 2 models (churn, churn_b)" in message
        assert "POST /v2/models/churn/invocations" in message
        named = client.post("/v2/models/churn_b/invocations", json={"instances": _matrix(frame)})
        assert named.json() == {"predictions": _labels(C2, frame)}
    # Served alone, the same registry answers /invocations with that model.
    with TestClient(create_app(stores.metadata, stores.artifacts, models=["churn_b"])) as client:
        alone = client.post("/invocations", json={"instances": _matrix(frame)})
        assert alone.json() == {"predictions": _labels(C2, frame)}


def test_invocations_are_counted_in_the_metrics(stores: Stores) -> None:
    with TestClient(create_app(stores.metadata, stores.artifacts, models=[MODEL])) as client:
        client.post("/invocations", json={"instances": _matrix(rows(2))})
        client.post("/invocations", json={"instances": [[1.0]]})
        client.post("/invocations", content=b"x", headers={"content-type": "text/plain"})
        exposition = client.get("/metrics").text
    counts = {
        (s.labels["status"], s.labels["version"]): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == "conveyor_inference_requests_total" and s.labels["model"] == MODEL
    }
    assert counts == {("200", "1"): 1.0, ("422", "1"): 1.0, ("415", "1"): 1.0}


# -- decode_invocations, without a server -------------------------------------------------------

SIGNATURE = Signature(
    inputs=(
        ColumnSpec("x", "FP64"),
        ColumnSpec("n", "INT64"),
        ColumnSpec("flag", "BOOL"),
        ColumnSpec("name", "BYTES"),
        ColumnSpec("maybe", "FP64", nullable=True),
        ColumnSpec("count", "INT64", nullable=True),
    ),
    outputs=(ColumnSpec("predict", "INT64"), ColumnSpec("predict_proba", "FP64")),
)


def test_csv_cells_are_parsed_as_their_column_says() -> None:
    body = b"x,n,flag,name,maybe,count\n1.5,3,true,a,,\n-2,4,FALSE,b b,0.25,7\n"
    request = decode_invocations(body, "text/csv", SIGNATURE)
    frame = request.frame()
    assert request.protocol == "mlflow"
    assert request.outputs == ("predict",)
    assert frame["x"].tolist() == [1.5, -2.0]
    assert frame["n"].dtype == np.int64
    assert frame["flag"].tolist() == [True, False]
    assert frame["name"].tolist() == ["a", "b b"]
    assert frame["maybe"].isna().tolist() == [True, False]
    assert frame["count"].isna().tolist() == [True, False]
    assert frame["count"][1] == 7


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1.5,3.0,true,a,,", "column 'n': element 0 is '3.0', not an integer (INT64)"),
        ("1.5,3,yes,a,,", "column 'flag': element 0 is 'yes', not a boolean (BOOL)"),
        ("1.5,3,true,,,", "column 'name': element 0 is null"),
    ],
)
def test_csv_cells_that_do_not_parse_are_named(line: str, expected: str) -> None:
    body = f"x,n,flag,name,maybe,count\n{line}\n".encode()
    with pytest.raises(ValidationError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        decode_invocations(body, "text/csv", SIGNATURE)


def test_latin1_csv_is_read_with_its_charset() -> None:
    body = "x,n,flag,name,maybe,count\n1,2,true,café,,\n".encode("latin-1")
    request = decode_invocations(body, "text/csv; charset=latin-1", SIGNATURE)
    assert request.frame()["name"].tolist() == ["café"]


def test_records_missing_a_nullable_column_give_nulls() -> None:
    body = json.dumps(
        {"dataframe_records": [{"x": 1, "n": 2, "flag": True, "name": "a", "count": 5}]}
    ).encode()
    frame = decode_invocations(body, "application/json", SIGNATURE).frame()
    assert frame["maybe"].isna().tolist() == [True]
    assert frame["x"].dtype == np.float64


def test_a_list_of_values_feeds_a_one_column_model() -> None:
    signature = Signature(
        inputs=(ColumnSpec("x", "FP64"),), outputs=(ColumnSpec("predict", "FP64"),)
    )
    request = decode_invocations(b'{"inputs": [1.5, 2, 3]}', "application/json", signature)
    assert request.frame()["x"].tolist() == [1.5, 2.0, 3.0]


def test_the_same_value_gets_the_same_message_from_both_protocols() -> None:
    from conveyor.server.tensors import decode_request

    tensors = {
        "inputs": [
            {"name": "x", "shape": [1], "datatype": "FP64", "data": ["abc"]},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "flag", "shape": [1], "datatype": "BOOL", "data": [True]},
            {"name": "name", "shape": [1], "datatype": "BYTES", "data": ["a"]},
            {"name": "maybe", "shape": [1], "datatype": "FP64", "data": [None]},
            {"name": "count", "shape": [1], "datatype": "INT64", "data": [None]},
        ]
    }
    with pytest.raises(ValidationError) as v2:
        decode_request(tensors, SIGNATURE)
    records = {"dataframe_records": [{t["name"]: t["data"][0] for t in tensors["inputs"]}]}
    with pytest.raises(ValidationError) as mlflow:
        decode_invocations(json.dumps(records).encode(), "application/json", SIGNATURE)
    assert str(v2.value).replace("input 'x'", "column 'x'") == str(mlflow.value)


def test_error_classes() -> None:
    with pytest.raises(UnsupportedMediaTypeError) as media:
        decode_invocations(b"{}", "text/html", SIGNATURE)
    assert media.value.http_status == 415
    with pytest.raises(MalformedRequestError):
        decode_invocations(b"{}", "application/json", SIGNATURE)
    with pytest.raises(UsageError, match="unknown params: 'k'") as params:
        decode_invocations(b'{"inputs": [], "params": {"k": 1}}', "application/json", SIGNATURE)
    assert params.value.http_status == 400


def test_label_output_is_predict_else_the_first_output() -> None:
    assert label_output(SIGNATURE) == "predict"
    proba_only = Signature(inputs=SIGNATURE.inputs, outputs=(ColumnSpec("predict_proba", "FP64"),))
    assert label_output(proba_only) == "predict_proba"
    with pytest.raises(ValidationError, match="declares no outputs"):
        label_output(Signature(inputs=SIGNATURE.inputs))
