"""MLflow's scoring protocol: the bodies ``mlflow models serve`` takes at ``POST /invocations``.

Clients written for an MLflow model server (``mlflow models predict``, SageMaker-style callers,
dashboards posting CSV) work unchanged against Conveyor. The request bodies are MLflow 2.x/3.x's:

- ``application/json``, an object with exactly one of
  ``dataframe_split`` (``{"columns": [...], "data": [[...], ...], "index": [...]}``; without
  ``columns`` the values are in the signature's column order),
  ``dataframe_records`` (``[{"age": 30, ...}, ...]``),
  ``instances`` or ``inputs`` (a list of rows, each a list in signature order or an object by
  column name; or an object of columns, ``{"age": [30, 41], ...}``; a list of plain values
  for a one-column model), and optionally ``params``. Other keys are ignored, as MLflow does.
- ``text/csv``, a header row of column names, then one line per row. As with pandas'
  ``read_csv`` (what MLflow uses), an empty field is a null; numbers are parsed as the
  column's datatype says, booleans are ``true``/``false`` in any case.

A ``charset`` parameter is honoured on both; any other media type is answered 415.

Choices where MLflow leaves room, or where we differ on purpose:

- **Output.** ``{"predictions": [...]}`` holds one value per row: the ``predict`` output of
  the signature, i.e. the class label of a classifier, as MLflow's sklearn flavor returns
  from ``pyfunc.predict`` (it calls the estimator's ``predict``, not ``predict_proba``). Only
  that output is computed. The probabilities are on the Open Inference Protocol route, with
  ``outputs: [{"name": "predict_proba"}]``. A model without ``predict`` answers its first output.
- **Schema.** Checked against the bundle's signature by the same per-column check as the Open
  Inference Protocol (:func:`~conveyor.server.tensors.column_values`), so both faces accept
  the same values: a missing column (a nullable one left out is all nulls, as an optional
  column is in MLflow), a null in a column that takes none, or a value of the wrong type
  (text for a number, a float for an integer, a number for a boolean; integers do widen into
  float columns, as MLflow's safe conversions allow) is a 422 naming the column.
  A column the signature does not have is ignored, as MLflow's schema enforcement does.
- **Params.** A Conveyor signature declares no inference params, so any key in ``params`` is
  refused with a 400 naming it (MLflow only logs a warning and drops them; a silently
  ignored setting is worse than an error). ``"params": {}`` is accepted.
- **Errors.** Every error is ``{"error": "..."}`` like the rest of the server (MLflow answers
  ``{"error_code", "message"}``); the status codes are MLflow's (400 for a body it cannot
  read, 415) except schema errors, which are 422 here as on the OIP routes.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import UsageError, ValidationError
from conveyor.core.ids import new_id
from conveyor.server.errors import MalformedRequestError
from conveyor.server.tensors import InferRequest, column_values

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from conveyor.packaging import ColumnSpec, Signature

__all__ = [
    "CONTENT_TYPES",
    "FORMATS",
    "UnsupportedMediaTypeError",
    "decode_invocations",
    "label_output",
]

#: The media types ``POST /invocations`` reads.
CONTENT_TYPES = ("application/json", "text/csv")
#: The JSON keys that each hold a whole request, exactly one per body.
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_HINT = 'send {"dataframe_split": {"columns": [...], "data": [[...]]}} or one of ' + ", ".join(
    FORMATS[1:]
)


class UnsupportedMediaTypeError(UsageError):
    """The request's ``Content-Type`` is not one the scoring protocol reads."""

    http_status = 415
    code = "unsupported_media_type"


def decode_invocations(body: bytes, content_type: str, signature: Signature) -> InferRequest:
    """Check an MLflow scoring request against ``signature``; the request to run.

    Args:
        body: The request body.
        content_type: Its ``Content-Type`` header (parameters such as ``charset`` allowed).
        signature: The served model's signature.

    Raises:
        UnsupportedMediaTypeError: the media type is neither JSON nor CSV (415).
        MalformedRequestError: the body cannot be read, or holds no format or two (400).
        UsageError: ``params`` names a parameter the model does not take (400).
        ValidationError: the rows do not fit the signature, naming the column (422).
    """
    media, charset = _media_type(content_type)
    if media == "text/csv":
        columns, rows = _csv_columns(_text(body, charset), signature)
    else:
        columns, rows = _json_columns(_json(body, charset), signature)
    return _request(columns, rows, signature)


def label_output(signature: Signature) -> str:
    """The output an MLflow client gets: ``predict`` (see the module docstring).

    Raises:
        ValidationError: the signature has no outputs.
    """
    names = [o.name for o in signature.outputs]
    if not names:
        raise ValidationError("the model's signature declares no outputs")
    return "predict" if "predict" in names else names[0]


def _media_type(header: str) -> tuple[str, str | None]:
    media, _, rest = header.partition(";")
    media = media.strip().lower()
    if media not in CONTENT_TYPES:
        raise UnsupportedMediaTypeError(
            f"content type {header or '(none)'!r} is not supported",
            hint=f"send the body as {' or '.join(CONTENT_TYPES)}",
        )
    charset = None
    for parameter in rest.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    if charset is not None:
        try:
            "".encode(charset)
        except LookupError as exc:
            raise UnsupportedMediaTypeError(
                f"charset {charset!r} is not supported", hint="send the body as UTF-8"
            ) from exc
    return media, charset


def _text(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(
            f"the request body is not valid {charset or 'UTF-8'} text ({exc})",
            hint="send the body as UTF-8",
        ) from exc


def _json(body: bytes, charset: str | None) -> dict[str, Any]:
    try:
        # Bytes: json detects UTF-8/16/32 itself; a declared charset is decoded first.
        payload = json.loads(body if charset is None else _text(body, charset))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequestError(
            f"the request body is not valid JSON ({exc})", hint=_HINT
        ) from exc
    if not isinstance(payload, dict):
        raise MalformedRequestError(
            f"the request body is a JSON {type(payload).__name__}, not an object", hint=_HINT
        )
    return payload


# -- JSON formats -> named columns -------------------------------------------------------------

_Columns = dict[Any, list[Any]]


def _json_columns(payload: Mapping[str, Any], signature: Signature) -> tuple[_Columns, int]:
    formats = [key for key in FORMATS if key in payload]
    if len(formats) != 1:
        found = f"it has {', '.join(formats or payload) or 'no keys'}"
        raise MalformedRequestError(
            f"the request must hold exactly one of {', '.join(FORMATS)}; {found}", hint=_HINT
        )
    _check_params(payload.get("params"))
    key = formats[0]
    value = payload[key]
    if key == "dataframe_split":
        return _split(value, signature)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise ValidationError("'dataframe_records' must be a list of objects")
        return _records(value, key)
    return _tensors(value, key, signature)


def _check_params(params: Any) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        raise MalformedRequestError("'params' must be an object")
    if params:
        raise UsageError(
            f"unknown params: {', '.join(map(repr, params))}; the model takes no params",
            hint="send the request without 'params'",
        )


def _split(value: Any, signature: Signature) -> tuple[_Columns, int]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise ValidationError(
            "'dataframe_split' must be an object with 'data', a list of rows",
            hint='send {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}',
        )
    names = value.get("columns")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
        raise ValidationError("'dataframe_split.columns' must be a list of column names")
    data: list[Any] = value["data"]
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise ValidationError(
            f"'dataframe_split.index' must be a list of {len(data)} labels, one per row"
        )
    return _rows(data, names, "dataframe_split.data", signature)


def _records(records: list[Any], where: str) -> tuple[_Columns, int]:
    columns: _Columns = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValidationError(f"'{where}' row {i} is not an object of column values")
        for name in record:
            if name not in columns:
                # A column first seen at row i was missing (null) in the rows before it.
                columns[name] = [None] * i
        for name, values in columns.items():
            values.append(record.get(name))
    return columns, len(records)


def _tensors(value: Any, where: str, signature: Signature) -> tuple[_Columns, int]:
    if isinstance(value, dict):
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if -1 in lengths or len(lengths) > 1:
            raise ValidationError(
                f"'{where}' as an object must map each column to a list, all of one length",
                hint=f'send {{"{where}": {{"a": [1, 2], "b": [3, 4]}}}}',
            )
        return dict(value), lengths.pop() if lengths else 0
    if not isinstance(value, list):
        raise ValidationError(
            f"'{where}' must be a list of rows or an object of columns", hint=_HINT
        )
    if value and isinstance(value[0], dict):
        return _records(value, where)
    if value and not isinstance(value[0], list) and len(signature.inputs) == 1:
        # A list of plain values feeds a one-column model, one value per row.
        return {signature.inputs[0].name: list(value)}, len(value)
    return _rows(value, None, where, signature)


def _rows(
    rows: list[Any], names: list[str] | None, where: str, signature: Signature
) -> tuple[_Columns, int]:
    """Rows of values -> columns, named by ``names`` or else by the signature's order."""
    if names is None:
        names = [c.name for c in signature.inputs]
    width = len(names)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else f"a {type(row).__name__}"
            raise ValidationError(
                f"'{where}' row {i} has {got}, not {width} ({', '.join(names)})",
                hint="send one value per column, in the columns' order",
            )
    columns: _Columns = {name: [row[j] for row in rows] for j, name in enumerate(names)}
    return columns, len(rows)


# -- CSV -> named columns -----------------------------------------------------------------------

_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


def _csv_columns(text: str, signature: Signature) -> tuple[_Columns, int]:
    try:
        lines = [line for line in csv.reader(io.StringIO(text)) if line]
    except csv.Error as exc:
        raise MalformedRequestError(
            f"the request body is not valid CSV ({exc})", hint="send a header row, then rows"
        ) from exc
    if not lines:
        raise MalformedRequestError(
            "the CSV body is empty", hint="send a header row of column names, then the rows"
        )
    header, rows = lines[0], lines[1:]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValidationError(
                f"CSV row {i} has {len(row)} fields, the header has {len(header)}",
                hint="send one field per column on every line",
            )
    specs = {c.name: c for c in signature.inputs}
    columns: _Columns = {}
    for j, name in enumerate(header):
        spec = specs.get(name)
        if spec is not None:  # other columns are ignored; no need to parse them
            columns[name] = [_cell(row[j], spec) for row in rows]
    return columns, len(rows)


def _cell(text: str, column: ColumnSpec) -> Any:
    """A CSV field as the column's type; left as text when it is not one (the check says so)."""
    if text == "":
        return None
    datatype = column.datatype
    parse = _PARSERS.get(datatype[:2])
    try:
        return parse(text) if parse is not None else text
    except ValueError:
        return text


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "FP": float,
    "IN": int,
    "UI": int,
    "BO": _boolean,
}


# -- columns -> request -------------------------------------------------------------------------


def _request(columns: _Columns, rows: int, signature: Signature) -> InferRequest:
    if rows == 0:
        raise ValidationError("the request has no rows", hint="send at least one row")
    missing = [c.name for c in signature.inputs if c.name not in columns and not c.nullable]
    if missing:
        raise ValidationError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}",
            hint=f"the model's columns are: {', '.join(c.name for c in signature.inputs)}",
        )
    checked = {
        # A nullable column left out is all nulls, like an optional column in MLflow.
        c.name: column_values(columns.get(c.name) or [None] * rows, c, what=f"column '{c.name}'")
        for c in signature.inputs
    }
    return InferRequest(new_id(), checked, rows, (label_output(signature),), protocol="mlflow")
