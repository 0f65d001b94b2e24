"""``GET /openapi.json``: a valid OpenAPI 3.1 document of every route and every served model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from tests.unit.server._support import COLUMNS, MODEL, TestClient, estimator, rows
from tests.unit.server.conftest import C1

from conveyor.packaging import ColumnSpec, Signature
from conveyor.server.openapi import OPENAPI_VERSION, openapi_document

if TYPE_CHECKING:
    from tests.unit.server.conftest import Stores


@pytest.fixture
def stores(shared: tuple[Stores, TestClient]) -> Stores:
    return shared[0]


@pytest.fixture
def client(shared: tuple[Stores, TestClient]) -> TestClient:
    return shared[1]


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == OPENAPI_VERSION


def test_every_route_of_the_app_is_documented_with_its_methods(
    client: TestClient, document: dict[str, Any]
) -> None:
    routes = [r for r in client.app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]
    assert routes
    for route in routes:
        documented = document["paths"][route.path]
        assert set(documented) == {m.lower() for m in route.methods or () if m != "HEAD"}
    for expected in ("/v2/health/ready", "/invocations", "/ping", "/metrics", "/openapi.json"):
        assert expected in document["paths"]


def test_protocol_routes_have_their_schemas(document: dict[str, Any]) -> None:
    paths = document["paths"]
    infer = paths["/v2/models/{name}/versions/{version}/infer"]["post"]
    schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/InferenceRequest"}
    assert {p["name"] for p in infer["parameters"]} == {"name", "version"}
    assert set(infer["responses"]) >= {"200", "400", "404", "422", "503"}
    invocations = paths["/invocations"]["post"]
    assert set(invocations["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert "415" in invocations["responses"]
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]


def test_each_served_model_has_its_columns(document: dict[str, Any]) -> None:
    record = document["components"]["schemas"][f"model_{MODEL}.record"]
    assert list(record["properties"]) == list(COLUMNS)
    assert record["properties"]["age"]["type"] == "number"
    assert record["properties"]["plan"]["type"] == "string"
    assert record["required"] == list(COLUMNS)
    infer = document["paths"][f"/v2/models/{MODEL}/infer"]["post"]
    assert "age (FP64)" in infer["requestBody"]["description"]


def test_the_examples_of_a_model_are_requests_it_answers(
    client: TestClient, document: dict[str, Any]
) -> None:
    infer = document["paths"][f"/v2/models/{MODEL}/infer"]["post"]["requestBody"]["content"]
    response = client.post(f"/v2/models/{MODEL}/infer", json=infer["application/json"]["example"])
    assert response.status_code == 200, response.text
    content = document["paths"][f"/v2/models/{MODEL}/invocations"]["post"]["requestBody"]["content"]
    as_json = client.post(
        f"/v2/models/{MODEL}/invocations", json=content["application/json"]["example"]
    )
    as_csv = client.post(
        f"/v2/models/{MODEL}/invocations",
        content=content["text/csv"]["example"].encode(),
        headers={"content-type": "text/csv"},
    )
    assert as_json.status_code == as_csv.status_code == 200, as_csv.text
    assert as_json.json() == as_csv.json()


def test_a_model_example_agrees_with_the_estimator(client: TestClient) -> None:
    # The route the example documents answers what the model says on the same row.
    frame = rows(1)
    response = client.post(
        f"/v2/models/{MODEL}/invocations",
        json={"dataframe_records": frame.to_dict(orient="records")},
    )
    assert response.json() == {"predictions": [int(estimator(C1).predict(frame)[0])]}


def test_document_from_routes_and_signatures_alone() -> None:
    async def custom(_request: Any) -> Any:
        """Something a later change adds."""

    signature = Signature(
        inputs=(
            ColumnSpec("x", "FP32"),
            ColumnSpec("n", "INT64", nullable=True),
            ColumnSpec("ok", "BOOL"),
        ),
        outputs=(ColumnSpec("predict", "FP64"),),
    )
    routes = [
        Route("/v2/models/{name}/infer", custom, methods=["POST"]),
        Route("/v2/models/{name}/invocations", custom, methods=["POST"]),
        Route("/v2/canary/{name:path}", custom, methods=["GET", "PUT"]),
    ]
    document = openapi_document(routes, {"a/b c": signature}, version="9.9")
    validate(document)
    assert document["info"]["version"] == "9.9"
    # An unknown route is documented from its handler's docstring, with its path parameter.
    canary = document["paths"]["/v2/canary/{name}"]
    assert set(canary) == {"get", "put"}
    assert canary["get"]["summary"] == "Something a later change adds."
    assert canary["get"]["parameters"][0]["name"] == "name"
    record = document["components"]["schemas"]["model_a_b_c.record"]
    assert record["properties"]["n"]["type"] == ["integer", "null"]
    assert record["properties"]["ok"]["type"] == "boolean"
    assert record["required"] == ["x", "ok"]
    assert "/v2/models/a%2Fb%20c/infer" in document["paths"]
    assert "/v2/models/a%2Fb%20c/invocations" in document["paths"]
