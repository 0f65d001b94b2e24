"""Open Inference Protocol v2 tensors <-> model frames: request checks, frames, responses.

A model's signature lists its input columns. A request sends either one tensor per column
(each of shape ``[n]`` or ``[n, 1]``) or one 2-D tensor of shape ``[n, k]`` whose ``k`` columns
are the signature's inputs in order. Every check here names the offending input or column and
raises :class:`~conveyor.core.errors.ValidationError` (422); a body that is not a JSON object
raises :class:`~conveyor.server.errors.MalformedRequestError` (400).

Content types (MLServer's ``parameters.content_type``) are honoured where they mean something
for a model that takes a frame of columns, and refused (422) where they do not:

- request level: ``pd`` (the inputs are the columns of a frame: what every request is here),
  ``np`` (one tensor holding the whole input: the ``[n, k]`` matrix, or the one column of a
  one-column model), ``str`` (one BYTES tensor: the text column of a one-column model);
- per input: ``np`` (any datatype), ``str`` (BYTES only: the strings are the values) and
  ``base64`` (BYTES only: each value is base64 of UTF-8 text, decoded before the checks).
  ``pd`` is a request-level content type and is refused on an input.

Each response output carries ``parameters.content_type``: ``str`` for BYTES, else ``np``.

Every request datatype of the protocol is accepted where the column can hold its values:
integers of any width (signed or not) feed integer and float columns, floats of any width feed
float columns, BOOL feeds BOOL and BYTES feeds BYTES. An integer tensor's values must fit its
own declared datatype (``-1`` is not a UINT8), checked only when it differs from the column's.

The per-column check (:func:`column_values`) is shared with the MLflow scoring face
(:mod:`conveyor.server.invocations`), so both protocols accept and refuse the same values with
the same messages; :func:`encode_response` answers in the protocol the request came in.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from conveyor.core.errors import ValidationError
from conveyor.core.ids import new_id
from conveyor.server.errors import MalformedRequestError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from conveyor.packaging import ColumnSpec, Signature

__all__ = [
    "InferRequest",
    "column_values",
    "content_type_of",
    "decode_request",
    "encode_response",
    "tensor_metadata",
]

_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_INTS = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
DATATYPES = _FLOATS | _INTS | {"BOOL", "BYTES"}
# Which request datatypes may feed a column of each datatype: integers widen into floats.
_ACCEPTS: dict[str, frozenset[str]] = {
    **{dt: _FLOATS | _INTS for dt in _FLOATS},
    **{dt: _INTS for dt in _INTS},
    "BOOL": frozenset({"BOOL"}),
    "BYTES": frozenset({"BYTES"}),
}
# Python types of JSON values allowed per request datatype (bool is not a number here).
_ELEMENT_TYPES: dict[str, tuple[type, ...]] = {
    **{dt: (int, float) for dt in _FLOATS},
    **{dt: (int,) for dt in _INTS},
    "BOOL": (bool,),
    "BYTES": (str,),
}
_NUMPY: dict[str, Any] = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    **{dt: getattr(np, dt.lower()) for dt in _INTS},
    "BOOL": np.bool_,
    "BYTES": object,
}
_KIND_TO_DATATYPE = {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL"}
#: Request-level content types a model taking a frame of columns can honour.
REQUEST_CONTENT_TYPES = ("pd", "np", "str")
#: Per-input content types honoured.
INPUT_CONTENT_TYPES = ("np", "str", "base64")


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A checked inference request: its id, its input columns, and the outputs wanted.

    ``columns`` maps every signature input, in signature order, to a 1-D array of ``rows``
    values (numpy, or a pandas nullable array for integer and boolean columns with nulls).
    ``protocol`` is the protocol to answer in: ``"v2"`` (Open Inference Protocol) or
    ``"mlflow"`` (MLflow's scoring server, see :mod:`conveyor.server.invocations`).
    """

    id: str
    columns: dict[str, Any]
    rows: int
    outputs: tuple[str, ...]
    protocol: str = "v2"

    def frame(self) -> pd.DataFrame:
        """The model's input frame for this request alone."""
        return pd.DataFrame(self.columns, copy=False)


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequestError(
            f"the request body is not valid JSON ({exc})",
            hint="send an Open Inference Protocol v2 request object",
        ) from exc
    if not isinstance(payload, dict):
        raise MalformedRequestError(
            f"the request body is a JSON {type(payload).__name__}, not an object",
            hint='send {"inputs": [{"name", "shape", "datatype", "data"}, ...]}',
        )
    return payload


def decode_request(payload: Mapping[str, Any], signature: Signature) -> InferRequest:
    """Check an inference request against ``signature``; its columns, typed, in signature order.

    Raises:
        ValidationError: naming the input, column or field that does not fit.
    """
    request_id = payload.get("id")
    if request_id is None:
        request_id = new_id()
    elif not isinstance(request_id, str):
        raise ValidationError("the request 'id' must be a string")
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise ValidationError("the request 'parameters' must be an object")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ValidationError(
            "the request has no 'inputs'",
            hint="send one tensor per input column; GET /v2/models/<name> lists them",
        )
    tensors = [_check_tensor(i, tensor) for i, tensor in enumerate(inputs)]
    if parameters:
        _check_request_content_type(parameters.get("content_type"), tensors)
    specs = signature.inputs
    if len(tensors) == 1 and _is_matrix(tensors[0], specs):
        columns, rows = _split_matrix(tensors[0], specs), tensors[0].shape[0]
    else:
        columns, rows = _match_columns(tensors, specs), tensors[0].shape[0]
    if rows == 0:
        raise ValidationError("the request has no rows", hint="send at least one row")
    outputs = _requested_outputs(payload.get("outputs"), signature)
    return InferRequest(request_id, columns, rows, outputs)


def _check_request_content_type(content_type: Any, tensors: list[_Tensor]) -> None:
    if content_type is None or content_type == "pd":
        return
    if content_type not in REQUEST_CONTENT_TYPES:
        raise ValidationError(
            f"the request's content_type {content_type!r} is not supported",
            hint=f"use one of {', '.join(REQUEST_CONTENT_TYPES)}, or none",
        )
    if len(tensors) != 1:
        raise ValidationError(
            f"the request's content_type {content_type!r} needs exactly one input, "
            f"it has {len(tensors)}",
            hint="send one tensor, or use content_type 'pd' for one tensor per column",
        )
    if content_type == "str" and tensors[0].datatype != "BYTES":
        raise ValidationError(
            f"the request's content_type 'str' needs a BYTES input, "
            f"input '{tensors[0].name}' is {tensors[0].datatype}"
        )


@dataclass(frozen=True, slots=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: list[Any]


def _check_tensor(index: int, tensor: Any) -> _Tensor:
    if not isinstance(tensor, dict):
        raise ValidationError(f"inputs[{index}] is not an object")
    name = tensor.get("name")
    if not isinstance(name, str):
        raise ValidationError(f"inputs[{index}] has no 'name'")
    for field in ("shape", "datatype", "data"):
        if field not in tensor:
            raise ValidationError(f"input '{name}' has no '{field}'")
    shape, datatype, data = tensor["shape"], tensor["datatype"], tensor["data"]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValidationError(
            f"input '{name}': shape {shape!r} is not a list of non-negative integers"
        )
    if datatype not in DATATYPES:
        raise ValidationError(
            f"input '{name}': datatype {datatype!r} is not an Open Inference Protocol datatype",
            hint=f"use one of {', '.join(sorted(DATATYPES))}",
        )
    if not isinstance(data, list):
        raise ValidationError(f"input '{name}': data must be a list")
    if data and type(data[0]) is list:
        data = _flatten(data)
    if len(data) != math.prod(shape):
        raise ValidationError(
            f"input '{name}': shape {shape} needs {math.prod(shape)} elements, data has {len(data)}"
        )
    parameters = tensor.get("parameters")
    if parameters is not None:
        data = _apply_content_type(name, datatype, parameters, data)
    return _Tensor(name, tuple(shape), datatype, data)


def _apply_content_type(name: str, datatype: str, parameters: Any, data: list[Any]) -> list[Any]:
    """The input's data as its ``parameters.content_type`` says to read it."""
    if not isinstance(parameters, dict):
        raise ValidationError(f"input '{name}': 'parameters' must be an object")
    content_type = parameters.get("content_type")
    if content_type is None or content_type == "np":
        return data
    if content_type not in INPUT_CONTENT_TYPES:
        hint = "'pd' is a request-level content type; " if content_type == "pd" else ""
        raise ValidationError(
            f"input '{name}': content_type {content_type!r} is not supported on an input",
            hint=f"{hint}use one of {', '.join(INPUT_CONTENT_TYPES)}, or none",
        )
    if datatype != "BYTES":
        raise ValidationError(
            f"input '{name}': content_type {content_type!r} needs datatype BYTES, not {datatype}"
        )
    if content_type == "str":
        return data
    decoded: list[Any] = []
    for i, value in enumerate(data):
        if value is None:
            decoded.append(None)
            continue
        try:
            decoded.append(base64.b64decode(value, validate=True).decode())
        except (TypeError, ValueError, binascii.Error) as exc:
            # binascii.Error and UnicodeDecodeError are ValueErrors; TypeError: not a string.
            raise ValidationError(
                f"input '{name}': element {i} is not base64 of UTF-8 text ({exc})"
            ) from exc
    return decoded


def _flatten(data: list[Any]) -> list[Any]:
    """Nested tensor data in row-major order, as the protocol allows."""
    flat: list[Any] = []
    for item in data:
        if type(item) is list:
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


def _is_matrix(tensor: _Tensor, columns: Sequence[ColumnSpec]) -> bool:
    if len(tensor.shape) != 2 or any(c.name == tensor.name for c in columns):
        return False
    if tensor.shape[1] != len(columns):
        raise ValidationError(
            f"input '{tensor.name}' has {tensor.shape[1]} columns, the model takes "
            f"{len(columns)}: {', '.join(c.name for c in columns)}",
            hint="send a [rows, columns] tensor with the columns in that order, or one tensor "
            "per column",
        )
    return True


def _split_matrix(tensor: _Tensor, columns: Sequence[ColumnSpec]) -> dict[str, Any]:
    k = len(columns)
    return {
        column.name: column_values(
            tensor.data[j::k], column, datatype=tensor.datatype, what=f"column '{column.name}'"
        )
        for j, column in enumerate(columns)
    }


def _match_columns(tensors: list[_Tensor], columns: Sequence[ColumnSpec]) -> dict[str, Any]:
    by_name = {c.name: c for c in columns}
    seen: dict[str, _Tensor] = {}
    for tensor in tensors:
        if tensor.name not in by_name:
            raise ValidationError(
                f"input '{tensor.name}' is not an input of the model",
                hint=f"its inputs are: {', '.join(by_name)}",
            )
        if tensor.name in seen:
            raise ValidationError(f"input '{tensor.name}' is given twice")
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise ValidationError(
                f"input '{tensor.name}' has shape {list(tensor.shape)}; "
                "a column must have shape [rows] or [rows, 1]"
            )
        seen[tensor.name] = tensor
    missing = [name for name in by_name if name not in seen]
    if missing:
        raise ValidationError(
            f"missing input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}",
            hint="send one tensor per input column; GET /v2/models/<name> lists them",
        )
    first = tensors[0]
    for tensor in tensors[1:]:
        if tensor.shape[0] != first.shape[0]:
            raise ValidationError(
                f"input '{tensor.name}' has {tensor.shape[0]} rows but input "
                f"'{first.name}' has {first.shape[0]}"
            )
    return {
        c.name: column_values(
            seen[c.name].data, c, datatype=seen[c.name].datatype, what=f"input '{c.name}'"
        )
        for c in columns
    }


def column_values(
    data: list[Any], column: ColumnSpec, *, datatype: str | None = None, what: str
) -> Any:
    """Check ``data`` (decoded JSON values) against ``column``; its typed 1-D array.

    Args:
        data: One value per row.
        column: The signature's column.
        datatype: The datatype the client declared for ``data``; default: the column's.
        what: How messages name the values, e.g. ``"input 'age'"``.

    Raises:
        ValidationError: naming ``what``, the datatype or the first element that does not fit.
    """
    if datatype is None:
        datatype = column.datatype
    elif datatype not in _ACCEPTS.get(column.datatype, ()):
        raise ValidationError(
            f"{what} is {datatype} but the model expects {column.datatype}",
            hint=f"send {column.datatype} data for '{column.name}'",
        )
    types = _ELEMENT_TYPES[datatype]
    nullable = bool(getattr(column, "nullable", False))
    for i, value in enumerate(data):
        # type() not isinstance(): True is an int to Python, but not a number to the model.
        if type(value) not in types and not (value is None and nullable):
            shown = "null" if value is None else repr(value)
            raise ValidationError(
                f"{what}: element {i} is {shown}, not {_describe(datatype)}",
                hint=None if value is not None else f"'{column.name}' does not accept nulls",
            )
    if datatype != column.datatype and datatype in _INTS:
        _check_range(data, datatype, what)
    if nullable and column.datatype in _NULLABLE and None in data:
        # Integers and booleans have no NaN: pandas' nullable arrays hold their missing values.
        return pd.array(data, dtype=_NULLABLE[column.datatype])
    try:
        # Floats turn None into NaN here.
        return np.asarray(data, dtype=_NUMPY[column.datatype])
    except OverflowError as exc:
        raise ValidationError(f"{what}: a value does not fit {column.datatype}") from exc


def _check_range(data: list[Any], datatype: str, what: str) -> None:
    """The integers fit the datatype the client declared, not only the column's wider one."""
    try:
        np.asarray([v for v in data if v is not None], dtype=_NUMPY[datatype])
    except OverflowError as exc:
        raise ValidationError(f"{what}: a value does not fit {datatype}") from exc


_NULLABLE = {**{dt: "Int64" for dt in _INTS}, "BOOL": "boolean"}


def _describe(datatype: str) -> str:
    if datatype in _FLOATS:
        return f"a number ({datatype})"
    if datatype in _INTS:
        return f"an integer ({datatype})"
    return "a boolean (BOOL)" if datatype == "BOOL" else "a string (BYTES)"


def _requested_outputs(requested: Any, signature: Signature) -> tuple[str, ...]:
    names = tuple(o.name for o in signature.outputs)
    if requested is None:
        return names
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise ValidationError("'outputs' must be a list of objects with a 'name'")
    wanted = tuple(o["name"] for o in requested)
    for name in wanted:
        if name not in names:
            raise ValidationError(
                f"the model has no output '{name}'", hint=f"its outputs are: {', '.join(names)}"
            )
    return wanted


def encode_response(
    *,
    model: str,
    version: int,
    request: InferRequest,
    predictions: Mapping[str, Any],
    signature: Signature,
) -> bytes:
    """The response to ``request`` as JSON bytes, in the protocol the request came in.

    Open Inference Protocol: the outputs in the order they were requested, each with its
    ``parameters.content_type``. MLflow: ``{"predictions": [...]}``, the values of the one
    output the request asked for (see :mod:`conveyor.server.invocations`).
    """
    if request.protocol == "mlflow":
        return _encode_mlflow(request, predictions, signature)
    declared = {o.name: o.datatype for o in signature.outputs}
    outputs = []
    for name in request.outputs:
        array = np.asarray(predictions[name])
        datatype = declared.get(name) or _datatype_of(array)
        data = array.ravel().tolist()
        if datatype == "BYTES":
            data = [str(v) for v in data]
        outputs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": _STR if datatype == "BYTES" else _NP,
                "data": data,
            }
        )
    body = {
        "model_name": model,
        "model_version": str(version),
        "id": request.id,
        "outputs": outputs,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


_STR = {"content_type": "str"}
_NP = {"content_type": "np"}


def _encode_mlflow(
    request: InferRequest, predictions: Mapping[str, Any], signature: Signature
) -> bytes:
    name = request.outputs[0]
    array = np.asarray(predictions[name])
    declared = {o.name: o.datatype for o in signature.outputs}
    data = array.tolist()
    if (declared.get(name) or _datatype_of(array)) == "BYTES":
        data = [str(v) for v in array.ravel().tolist()]
    return json.dumps({"predictions": data}, separators=(",", ":"), ensure_ascii=False).encode()


def content_type_of(datatype: str) -> str:
    """MLServer's content type of a tensor of ``datatype``: ``str`` for BYTES, else ``np``."""
    return "str" if datatype == "BYTES" else "np"


def _datatype_of(array: np.ndarray[Any, Any]) -> str:
    return _KIND_TO_DATATYPE.get(array.dtype.kind, "BYTES")


def tensor_metadata(columns: Sequence[ColumnSpec]) -> list[dict[str, Any]]:
    """The protocol's ``$metadata_tensor`` objects for signature columns.

    Each carries ``parameters.content_type`` as MLServer's model metadata does, so a client
    that picks its codec from the metadata encodes text as ``str`` and numbers as ``np``.
    """
    return [
        {
            "name": c.name,
            "datatype": c.datatype,
            "shape": list(getattr(c, "shape", None) or [-1]),
            "parameters": {"content_type": content_type_of(c.datatype)},
        }
        for c in columns
    ]
