"""The server's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Built from the application's route table, so a route added to ``app._routes`` is documented
without touching this module: a route this module knows (by method and path template) gets its
protocol's request and response schemas; any other gets a generic entry from its handler's
docstring, so the document never omits a route that exists. Then, for each served model, the
concrete ``/v2/models/<name>/infer`` and ``/v2/models/<name>/invocations`` paths are added with
the model's own columns (from its signature): names, JSON types, nullability, and an example.

Generated per request from memory (no I/O); it is a few kilobytes per model.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from conveyor.packaging import ColumnSpec, Signature

__all__ = ["OPENAPI_VERSION", "openapi_document"]

#: The OpenAPI version of the document (3.1: its schemas are JSON Schema 2020-12).
OPENAPI_VERSION = "3.1.0"

_REF = "#/components/schemas/"
_JSON = "application/json"
_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
_DATATYPES += ["FP16", "FP32", "FP64", "BYTES"]
_PARAMETERS = {
    "type": "object",
    "description": "Free-form parameters; `content_type` selects how data is read "
    "(request: pd, np, str; input: np, str, base64).",
    "properties": {"content_type": {"type": "string"}},
    "additionalProperties": True,
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What went wrong; the fix."}},
    },
    "Parameters": _PARAMETERS,
    "LiveResponse": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "ReadyResponse": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "ModelReadyResponse": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "ServerMetadataResponse": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "MetadataTensor": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "parameters": {"$ref": f"{_REF}Parameters"},
        },
    },
    "ModelMetadataResponse": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": f"{_REF}MetadataTensor"}},
            "outputs": {"type": "array", "items": {"$ref": f"{_REF}MetadataTensor"}},
            "parameters": {"$ref": f"{_REF}Parameters"},
        },
    },
    "RequestInput": {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": {"$ref": f"{_REF}Parameters"},
            "data": {"type": "array", "description": "Row-major, flat or nested."},
        },
    },
    "RequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "parameters": {"$ref": f"{_REF}Parameters"},
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"$ref": f"{_REF}Parameters"},
            "inputs": {"type": "array", "items": {"$ref": f"{_REF}RequestInput"}, "minItems": 1},
            "outputs": {"type": "array", "items": {"$ref": f"{_REF}RequestOutput"}},
        },
    },
    "ResponseOutput": {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": {"$ref": f"{_REF}Parameters"},
            "data": {"type": "array"},
        },
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"$ref": f"{_REF}Parameters"},
            "outputs": {"type": "array", "items": {"$ref": f"{_REF}ResponseOutput"}},
        },
    },
    "InvocationsRequest": {
        "description": "MLflow's scoring request: exactly one of the four formats.",
        "type": "object",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "index": {"type": "array"},
                    "data": {"type": "array", "items": {"type": "array"}},
                },
            },
            "dataframe_records": {"type": "array", "items": {"type": "object"}},
            "instances": {"type": ["array", "object"]},
            "inputs": {"type": ["array", "object"]},
            "params": {"type": "object", "maxProperties": 0},
        },
        "oneOf": [
            {"required": ["dataframe_split"]},
            {"required": ["dataframe_records"]},
            {"required": ["instances"]},
            {"required": ["inputs"]},
        ],
    },
    "InvocationsResponse": {
        "type": "object",
        "required": ["predictions"],
        "properties": {
            "predictions": {
                "type": "array",
                "description": "One value per row: the model's `predict` output (the label).",
            }
        },
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {_JSON: {"schema": {"$ref": f"{_REF}Error"}}},
    }


def _json(description: str, schema: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, str):
        schema = {"$ref": f"{_REF}{schema}"}
    return {"description": description, "content": {_JSON: {"schema": schema}}}


_NOT_FOUND = _error("No such model or version.")
_NOT_READY = _error("The model is served but not loaded.")
_BAD_NAME = _error("The model name breaks the naming rule (1-128 letters, digits, '.', '_', '-').")
_SCORING_ERRORS = {
    "400": _error("The body cannot be read."),
    "404": _NOT_FOUND,
    "413": _error("The body is larger than the server accepts."),
    "422": _error(
        "The model name breaks the naming rule, or the request does not fit the model's "
        "signature; names the input."
    ),
    "503": _NOT_READY,
}
_PROBE = {
    "200": {"description": "Ready (the body is a newline)."},
    "503": {"description": "Not ready."},
}


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """Known routes (method, path template) -> their operation, without path parameters."""
    models = "/v2/models/{name}"
    versioned = f"{models}/versions/{{version}}"
    infer = {
        "summary": "Predict (Open Inference Protocol v2)",
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": {"$ref": f"{_REF}InferenceRequest"}}},
        },
        "responses": {"200": _json("The outputs.", "InferenceResponse"), **_SCORING_ERRORS},
    }
    invocations: dict[str, Any] = {
        "summary": "Predict (MLflow scoring protocol)",
        "requestBody": {
            "required": True,
            "content": {
                _JSON: {"schema": {"$ref": f"{_REF}InvocationsRequest"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "200": _json("The predictions.", "InvocationsResponse"),
            **_SCORING_ERRORS,
            "415": _error("The content type is neither application/json nor text/csv."),
        },
    }
    metadata = {
        "summary": "Model metadata",
        "responses": {
            "200": _json("The model.", "ModelMetadataResponse"),
            "404": _NOT_FOUND,
            "422": _BAD_NAME,
        },
    }
    model_ready = {
        "summary": "Model readiness",
        "responses": {
            "200": _json("Loaded.", "ModelReadyResponse"),
            "404": _NOT_FOUND,
            "422": _BAD_NAME,
            "503": _json("Not loaded.", "ModelReadyResponse"),
        },
    }
    return {
        ("get", "/v2/health/live"): {
            "summary": "Liveness",
            "responses": {"200": _json("The server is up.", "LiveResponse")},
        },
        ("get", "/v2/health/ready"): {
            "summary": "Readiness: every served model is loaded",
            "responses": {
                "200": _json("Ready.", "ReadyResponse"),
                "503": _json("Not ready.", "ReadyResponse"),
            },
        },
        ("get", "/v2"): {
            "summary": "Server metadata",
            "responses": {"200": _json("The server.", "ServerMetadataResponse")},
        },
        ("get", models): metadata,
        ("get", versioned): metadata,
        ("get", f"{models}/ready"): model_ready,
        ("get", f"{versioned}/ready"): model_ready,
        ("post", f"{models}/infer"): infer,
        ("post", f"{versioned}/infer"): infer,
        ("post", f"{models}/invocations"): invocations,
        ("post", f"{versioned}/invocations"): invocations,
        ("post", "/invocations"): {
            **invocations,
            "summary": "Predict with the one served model (MLflow scoring protocol)",
            "responses": {
                **invocations["responses"],
                "400": _error("The body cannot be read, or the server serves several models."),
            },
        },
        ("get", "/ping"): {"summary": "Readiness (MLflow's probe)", "responses": _PROBE},
        ("get", "/health"): {"summary": "Readiness (MLflow's probe)", "responses": _PROBE},
        ("get", "/metrics"): {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text format 0.0.4.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        },
        ("get", "/openapi.json"): {
            "summary": "This document",
            "responses": {"200": _json("OpenAPI 3.1.", {"type": "object"})},
        },
    }


_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def openapi_document(
    routes: Iterable[Any], models: Mapping[str, Signature], *, version: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``, with the columns of each model in ``models``.

    Args:
        routes: The application's routes (anything with ``path`` and ``methods``; Starlette's
            ``Route``); others, such as mounts, are skipped.
        models: Served model name -> its signature.
        version: The server's version.
    """
    known = _operations()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if not isinstance(path, str) or not methods:
            continue
        template = _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)
        for method in sorted(m.lower() for m in methods if m != "HEAD"):
            operation = known.get((method, template)) or _generic(route)
            operation = {**operation, "operationId": _operation_id(method, template)}
            parameters = [_path_parameter(name) for name in _PARAM.findall(path)]
            if parameters:
                operation["parameters"] = parameters
            paths.setdefault(template, {})[method] = operation
    schemas = dict(_SCHEMAS)
    for name, signature in sorted(models.items()):
        _add_model(paths, schemas, known, name, signature)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Conveyor inference server",
            "version": version,
            "description": "Open Inference Protocol v2 and MLflow's scoring protocol; every "
            'error is {"error": "..."}.',
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _generic(route: Any) -> dict[str, Any]:
    doc = (getattr(getattr(route, "endpoint", None), "__doc__", None) or "").strip()
    return {
        "summary": doc.splitlines()[0] if doc else f"{route.path}",
        "responses": {"200": {"description": "Success."}, "default": _error("An error.")},
    }


def _operation_id(method: str, template: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", template).strip("_") or "root"
    return f"{method}_{words}"


def _path_parameter(name: str) -> dict[str, Any]:
    descriptions = {"name": "The model name.", "version": "A version number (`3` or `v3`)."}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": descriptions.get(name, name),
        "schema": {"type": "string"},
    }


def _add_model(
    paths: dict[str, dict[str, Any]],
    schemas: dict[str, Any],
    known: Mapping[tuple[str, str], dict[str, Any]],
    name: str,
    signature: Signature,
) -> None:
    """The model's concrete infer and invocations paths, where the server has those routes."""
    key = "model_" + re.sub(r"[^A-Za-z0-9._-]", "_", name)
    columns = signature.inputs
    schemas[f"{key}.record"] = {
        "type": "object",
        "description": f"One row of input of model '{name}'; other keys are ignored.",
        "properties": {c.name: _column_schema(c) for c in columns},
        "required": [c.name for c in columns if not c.nullable],
    }
    record = {"$ref": f"{_REF}{key}.record"}
    example_row = {c.name: _example(c) for c in columns}
    if "/v2/models/{name}/infer" in paths:
        infer = dict(known[("post", "/v2/models/{name}/infer")])
        infer["summary"] = f"Predict with model '{name}' (Open Inference Protocol v2)"
        infer["operationId"] = _operation_id("post", f"{key}_infer")
        example = {
            "inputs": [
                {
                    "name": c.name,
                    "shape": [1],
                    "datatype": c.datatype,
                    "data": [example_row[c.name]],
                }
                for c in columns
            ]
        }
        infer["requestBody"] = {
            "required": True,
            "content": {
                _JSON: {
                    "schema": {"$ref": f"{_REF}InferenceRequest"},
                    "example": example,
                }
            },
            "description": "Inputs: "
            + ", ".join(
                f"{c.name} ({c.datatype}{', nullable' if c.nullable else ''})" for c in columns
            ),
        }
        paths[f"/v2/models/{quote(name, safe='')}/infer"] = {"post": infer}
    if "/v2/models/{name}/invocations" in paths:
        invocations = dict(known[("post", "/v2/models/{name}/invocations")])
        invocations["summary"] = f"Predict with model '{name}' (MLflow scoring protocol)"
        invocations["operationId"] = _operation_id("post", f"{key}_invocations")
        names = [c.name for c in columns]
        rows = {
            "type": "array",
            "items": {"type": "array", "minItems": len(names), "maxItems": len(names)},
        }
        invocations["requestBody"] = {
            "required": True,
            "content": {
                _JSON: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "dataframe_split": {
                                "type": "object",
                                "required": ["data"],
                                "properties": {
                                    "columns": {"type": "array", "items": {"type": "string"}},
                                    "index": {"type": "array"},
                                    "data": rows,
                                },
                            },
                            "dataframe_records": {"type": "array", "items": record},
                            "instances": {"type": ["array", "object"]},
                            "inputs": {"type": ["array", "object"]},
                            "params": {"type": "object", "maxProperties": 0},
                        },
                        "oneOf": _SCHEMAS["InvocationsRequest"]["oneOf"],
                    },
                    "example": {"dataframe_records": [example_row]},
                },
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": ",".join(names)
                    + "\n"
                    + ",".join(_csv(v) for v in example_row.values())
                    + "\n",
                },
            },
        }
        paths[f"/v2/models/{quote(name, safe='')}/invocations"] = {"post": invocations}


def _column_schema(column: ColumnSpec) -> dict[str, Any]:
    datatype = column.datatype
    if datatype.startswith("FP"):
        kind = "number"
    elif datatype.startswith(("INT", "UINT")):
        kind = "integer"
    elif datatype == "BOOL":
        kind = "boolean"
    else:
        kind = "string"
    schema: dict[str, Any] = {"type": [kind, "null"] if column.nullable else kind}
    schema["description"] = datatype
    return schema


def _example(column: ColumnSpec) -> Any:
    datatype = column.datatype
    if datatype.startswith("FP"):
        return 1.5
    if datatype.startswith(("INT", "UINT")):
        return 1
    if datatype == "BOOL":
        return True
    return "text"


def _csv(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
