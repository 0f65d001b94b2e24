"""Every route of the Open Inference Protocol v2 server, in process, on real stores and models.

These tests only read, so they share one registry (see ``shared``); swaps and failures, which
change the stores, are in ``test_swap.py`` and run on every backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from tests.unit.server._support import MODEL, expected_proba, infer_body, rows
from tests.unit.server.conftest import C1, C2

import conveyor

if TYPE_CHECKING:
    from tests.unit.server._support import TestClient
    from tests.unit.server.conftest import Stores


@pytest.fixture
def stores(shared: tuple[Stores, TestClient]) -> Stores:
    return shared[0]


@pytest.fixture
def client(shared: tuple[Stores, TestClient]) -> TestClient:
    return shared[1]


NP = {"content_type": "np"}
STR = {"content_type": "str"}


def _outputs(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in answer["outputs"]}


def test_live(client: TestClient) -> None:
    response = client.get("/v2/health/live")
    assert response.status_code == 200
    assert response.json() == {"live": True}


def test_ready_when_production_version_is_loaded(client: TestClient) -> None:
    response = client.get("/v2/health/ready")
    assert response.status_code == 200
    assert response.json() == {"ready": True}


def test_server_metadata(client: TestClient) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    assert response.json() == {
        "name": "conveyor",
        "version": conveyor.__version__,
        "extensions": ["parameters", "mlflow_invocations", "metrics", "openapi"],
    }


def test_model_metadata_lists_versions_and_the_signature(client: TestClient) -> None:
    response = client.get(f"/v2/models/{MODEL}")
    assert response.status_code == 200
    assert response.json() == {
        "name": MODEL,
        "versions": ["1", "2"],
        "platform": "sklearn",
        "inputs": [
            {"name": "age", "datatype": "FP64", "shape": [-1], "parameters": NP},
            {"name": "tenure", "datatype": "FP64", "shape": [-1], "parameters": NP},
            {"name": "plan", "datatype": "BYTES", "shape": [-1], "parameters": STR},
        ],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1], "parameters": NP},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1], "parameters": NP},
        ],
        "parameters": {"content_type": "pd"},
    }


def test_versioned_model_metadata(client: TestClient, stores: Stores) -> None:
    response = client.get(f"/v2/models/{MODEL}/versions/{stores.v2}")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == MODEL
    assert [i["name"] for i in body["inputs"]] == ["age", "tenure", "plan"]


@pytest.mark.parametrize("suffix", ["", "/versions/1", "/versions/2", "/versions/v2"])
def test_model_ready(client: TestClient, suffix: str) -> None:
    response = client.get(f"/v2/models/{MODEL}{suffix}/ready")
    assert response.status_code == 200
    assert response.json() == {"name": MODEL, "ready": True}


def test_infer_one_tensor_per_column(client: TestClient) -> None:
    frame = rows(3)
    response = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(frame, id="req-7"))
    assert response.status_code == 200
    answer = response.json()
    assert answer["model_name"] == MODEL
    assert answer["model_version"] == "1"
    assert answer["id"] == "req-7"
    outputs = _outputs(answer)
    assert list(outputs) == ["predict", "predict_proba"]
    proba = outputs["predict_proba"]
    assert proba["datatype"] == "FP64"
    assert proba["shape"] == [3]
    assert proba["data"] == pytest.approx(expected_proba(C1, frame))
    assert outputs["predict"]["shape"] == [3]
    assert set(outputs["predict"]["data"]) <= {0, 1}


def test_infer_gives_an_id_when_the_request_has_none(client: TestClient) -> None:
    answer = client.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(1))).json()
    assert isinstance(answer["id"], str)
    assert answer["id"]


def test_2d_tensor_must_fit_every_column(client: TestClient) -> None:
    matrix = rows(2)[["age", "tenure", "plan"]].to_numpy(dtype=object).tolist()
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "BYTES", "data": matrix}]}
    # One datatype for the whole matrix: text cannot feed the model's number columns.
    response = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 422
    assert "column 'age' is BYTES but the model expects FP64" in response.json()["error"]


def test_infer_2d_tensor_flat_or_nested_equals_one_tensor_per_column(stores: Stores) -> None:
    from tests.unit.server._support import TestClient

    from conveyor.server import create_app

    # A numbers-only model, so that one FP64 matrix can carry every column.
    _register_numeric(stores)
    app = create_app(stores.metadata, stores.artifacts, models=["numeric"])
    with TestClient(app) as client:
        flat = client.post(
            "/v2/models/numeric/infer",
            json={
                "inputs": [
                    {
                        "name": "x",
                        "shape": [2, 2],
                        "datatype": "FP64",
                        "data": [30.0, 5.0, 60.0, 40.0],
                    }
                ]
            },
        )
        nested = client.post(
            "/v2/models/numeric/infer",
            json={
                "inputs": [
                    {
                        "name": "x",
                        "shape": [2, 2],
                        "datatype": "FP64",
                        "data": [[30.0, 5.0], [60.0, 40.0]],
                    }
                ]
            },
        )
        columns = client.post(
            "/v2/models/numeric/infer",
            json={
                "inputs": [
                    {"name": "age", "shape": [2], "datatype": "FP64", "data": [30.0, 60.0]},
                    {"name": "tenure", "shape": [2, 1], "datatype": "INT64", "data": [[5], [40]]},
                ]
            },
        )
    assert flat.status_code == nested.status_code == columns.status_code == 200, flat.text
    assert flat.json()["outputs"] == nested.json()["outputs"] == columns.json()["outputs"]


def _register_numeric(stores: Stores) -> None:
    from sklearn.linear_model import LogisticRegression
    from tests.unit.server._support import promote, training_frame

    from conveyor.packaging import Model, build_bundle
    from conveyor.registry import register_version

    frame, labels = training_frame()
    numeric = frame[["age", "tenure"]]
    estimator = LogisticRegression().fit(numeric, labels)
    bundle = build_bundle(
        stores.artifacts,
        Model(estimator=estimator, input_example=numeric.head(3)),
        name="numeric",
        metrics={},
    )
    version, _ = register_version(
        stores.metadata,
        model="numeric",
        artifact_digest=bundle.digest,
        metrics={},
        run_id=None,
        actor="alice",
    )
    promote(stores.metadata, version.version, name="numeric")


def test_infer_returns_only_the_requested_outputs(client: TestClient) -> None:
    body = infer_body(rows(2), outputs=[{"name": "predict_proba"}])
    answer = client.post(f"/v2/models/{MODEL}/infer", json=body).json()
    assert [o["name"] for o in answer["outputs"]] == ["predict_proba"]


def test_infer_an_explicit_version(client: TestClient, stores: Stores) -> None:
    frame = rows(3)
    response = client.post(f"/v2/models/{MODEL}/versions/{stores.v2}/infer", json=infer_body(frame))
    assert response.status_code == 200
    answer = response.json()
    assert answer["model_version"] == str(stores.v2)
    assert _outputs(answer)["predict_proba"]["data"] == pytest.approx(expected_proba(C2, frame))
    # The production version still answers the unversioned route.
    assert client.post(f"/v2/models/{MODEL}/infer", json=infer_body(frame)).json()[
        "model_version"
    ] == str(stores.v1)


# -- errors -------------------------------------------------------------------------------


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    message: str = body["error"]
    return message


def _infer(client: TestClient, body: Any) -> Any:
    return client.post(f"/v2/models/{MODEL}/infer", json=body)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b""])
def test_body_that_is_not_json_is_400(client: TestClient, content: bytes) -> None:
    response = client.post(f"/v2/models/{MODEL}/infer", content=content)
    assert "not valid JSON" in _error(response, 400)


def test_body_that_is_not_an_object_is_400(client: TestClient) -> None:
    assert "not an object" in _error(_infer(client, [1, 2]), 400)


def _with_input(name: str, **changes: Any) -> dict[str, Any]:
    body = infer_body(rows(2))
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            tensor.update(changes)
    return body


def _without(name: str) -> dict[str, Any]:
    body = infer_body(rows(2))
    body["inputs"] = [t for t in body["inputs"] if t["name"] != name]
    return body


def _plus(tensor: dict[str, Any]) -> dict[str, Any]:
    body = infer_body(rows(2))
    body["inputs"].append(tensor)
    return body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "no 'inputs'"),
        ({"inputs": []}, "no 'inputs'"),
        ({"inputs": "age"}, "no 'inputs'"),
        (_without("tenure"), "missing input 'tenure'"),
        (
            _plus({"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}),
            "input 'income' is not an input of the model",
        ),
        (_plus(infer_body(rows(2))["inputs"][0]), "input 'age' is given twice"),
        (_with_input("age", shape=[3]), "input 'age': shape [3] needs 3 elements, data has 2"),
        (_with_input("age", data=[1.0]), "input 'age': shape [2] needs 2 elements, data has 1"),
        (
            _with_input("tenure", shape=[2, 2], data=[1.0, 2.0, 3.0, 4.0]),
            "input 'tenure' has shape",
        ),
        (
            _with_input("age", datatype="BYTES", data=["a", "b"]),
            "input 'age' is BYTES but the model expects FP64",
        ),
        (
            _with_input("plan", datatype="FP64", data=[1.0, 2.0]),
            "input 'plan' is FP64 but the model expects BYTES",
        ),
        (_with_input("age", data=[30.0, "abc"]), "input 'age': element 1 is 'abc', not a number"),
        (_with_input("age", data=[True, 30.0]), "input 'age': element 0 is True, not a number"),
        (_with_input("age", data=[None, 30.0]), "input 'age': element 0 is null"),
        (_with_input("plan", data=["basic", 3]), "input 'plan': element 1 is 3, not a string"),
        (_with_input("age", datatype="FLOAT"), "input 'age': datatype 'FLOAT' is not"),
        (_with_input("age", shape=[-2]), "input 'age': shape [-2] is not a list"),
        (_with_input("age", shape=None), "input 'age': shape None"),
        (_with_input("age", data="30"), "input 'age': data must be a list"),
        (
            {"inputs": [{"shape": [1], "datatype": "FP64", "data": [1.0]}]},
            "inputs[0] has no 'name'",
        ),
        (
            {"inputs": [{"name": "age", "shape": [1], "data": [1.0]}]},
            "input 'age' has no 'datatype'",
        ),
        ({"inputs": ["age"]}, "inputs[0] is not an object"),
        ({**infer_body(rows(2)), "id": 7}, "'id' must be a string"),
        ({**infer_body(rows(2)), "parameters": []}, "'parameters' must be an object"),
        ({**infer_body(rows(2)), "outputs": [{"name": "explain"}]}, "no output 'explain'"),
        ({**infer_body(rows(2)), "outputs": ["predict"]}, "'outputs' must be a list of objects"),
        (
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]},
            "input 'x' has 2 columns, the model takes 3: age, tenure, plan",
        ),
    ],
)
def test_request_that_does_not_fit_is_422_naming_the_input(
    client: TestClient, body: Any, expected: str
) -> None:
    assert expected in _error(_infer(client, body), 422)


def test_rows_that_differ_between_inputs_are_422(client: TestClient) -> None:
    body = _with_input("tenure", shape=[3], data=[1.0, 2.0, 3.0])
    message = _error(_infer(client, body), 422)
    assert "input 'tenure' has 3 rows but input 'age' has 2" in message


def test_unknown_model_is_404(client: TestClient) -> None:
    message = _error(client.post("/v2/models/nope/infer", json=infer_body(rows(1))), 404)
    assert "no model 'nope'" in message
    assert _error(client.get("/v2/models/nope"), 404) == message
    _error(client.get("/v2/models/nope/ready"), 404)


def test_unknown_version_is_404(client: TestClient) -> None:
    message = _error(
        client.post(f"/v2/models/{MODEL}/versions/9/infer", json=infer_body(rows(1))), 404
    )
    assert "has no version 9" in message
    _error(client.get(f"/v2/models/{MODEL}/versions/9"), 404)
    _error(client.get(f"/v2/models/{MODEL}/versions/9/ready"), 404)


def test_version_that_is_not_a_number_is_404(client: TestClient) -> None:
    message = _error(client.get(f"/v2/models/{MODEL}/versions/latest"), 404)
    assert "has no version 'latest'" in message
    assert "versions are numbers" in message


def test_unknown_route_and_method_use_the_error_body(client: TestClient) -> None:
    _error(client.get("/v2/nothing/here"), 404)
    _error(client.get(f"/v2/models/{MODEL}/infer"), 405)


def test_large_request_is_answered_whole(client: TestClient) -> None:
    # Past the size parsed on the event loop, and past one batch's rows: it runs alone.
    frame = rows(3000)
    body = infer_body(frame, outputs=[{"name": "predict_proba"}])
    response = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200
    assert len(response.content) > 0
    proba = response.json()["outputs"][0]
    assert proba["shape"] == [3000]
    assert proba["data"] == pytest.approx(expected_proba(C1, frame))


def test_body_over_the_limit_is_413(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.server._support import TestClient

    from conveyor.server import app as app_module
    from conveyor.server import create_app

    monkeypatch.setattr(app_module, "MAX_BODY_BYTES", 1024)
    with TestClient(create_app(stores.metadata, stores.artifacts)) as small:
        response = small.post(f"/v2/models/{MODEL}/infer", json=infer_body(rows(100)))
    assert "more than the 1024 this server accepts" in _error(response, 413)
