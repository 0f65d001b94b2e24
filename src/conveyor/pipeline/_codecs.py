"""How step outputs become bytes in the artifact store, and back.

| value                                   | media type                               |
|-----------------------------------------|------------------------------------------|
| ``conveyor.Model``                      | ``application/vnd.conveyor.model+zip``   |
| pandas ``DataFrame``                    | ``application/vnd.apache.parquet``       |
| numpy ``ndarray`` (no object dtype)     | ``application/x-npy``                    |
| scikit-learn estimator                  | ``application/vnd.conveyor.sklearn+zip`` |
| dict/list/str/int/float/bool/None       | ``application/json``                     |

Equal values encode to equal bytes, so a step that re-runs and produces the same output leaves
its downstream steps cached. Parquet and ``.npy`` are deterministic as written; skops output is
made so by packaging's ``dump_estimator`` (ids renumbered, zip entries restamped).

A value can only be a DataFrame if pandas is imported, so the type checks look in
``sys.modules`` and never import a library just to find out that a value is not of its type.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from typing import Any

from conveyor.core.digest import canonical_json
from conveyor.core.errors import ValidationError

__all__ = [
    "JSON",
    "MODEL",
    "NPY",
    "PARQUET",
    "SKLEARN",
    "decode",
    "encode",
]

MODEL = "application/vnd.conveyor.model+zip"
PARQUET = "application/vnd.apache.parquet"
NPY = "application/x-npy"
SKLEARN = "application/vnd.conveyor.sklearn+zip"
JSON = "application/json"

_SUPPORTED = (
    "a pandas DataFrame, a numpy array, a conveyor.Model, a scikit-learn estimator, "
    "or JSON data (dict with str keys, list, str, int, float, bool, None)"
)
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKOPS_MEMBER = "estimator.skops"
_TRUSTED_MEMBER = "trusted_types.json"


def encode(value: Any, *, step: str) -> tuple[bytes, str]:
    """Encode a step's output; returns the bytes and their media type.

    Raises:
        ValidationError: the value is of a type Conveyor cannot store, naming the step.
    """
    packaging = sys.modules.get("conveyor.packaging")
    if packaging is not None and isinstance(value, packaging.Model):
        return _encode_model(value, step), MODEL
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        from conveyor.packaging import encode_frame

        return encode_frame(value, what=f"the DataFrame returned by step '{step}'"), PARQUET
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return _encode_array(value, step), NPY
    sklearn_base = sys.modules.get("sklearn.base")
    if sklearn_base is not None and isinstance(value, sklearn_base.BaseEstimator):
        return _encode_estimator(value, step), SKLEARN
    return _encode_json(value, step), JSON


def decode(data: bytes, media_type: str) -> Any:
    """Decode bytes written by :func:`encode` with that media type."""
    if media_type == JSON:
        return json.loads(data)
    if media_type == PARQUET:
        from conveyor.packaging import decode_frame

        return decode_frame(data)
    if media_type == NPY:
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if media_type == SKLEARN:
        return _decode_estimator(data)
    if media_type == MODEL:
        from conveyor.packaging import decode_model

        return decode_model(data)
    raise ValidationError(
        f"a step output has media type {media_type!r}, which this Conveyor cannot read",
        hint="upgrade Conveyor, or re-run the step with `conveyor run --force`",
    )


class _Unsupported(Exception):
    def __init__(self, value: Any, where: str, *, key: bool = False) -> None:
        self.value = value
        self.where = where
        self.key = key


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON data; raises _Unsupported naming where in it the problem is."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return float(value)  # also np.float64, a float subclass
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.bool_ | np.integer | np.floating):
        return value.item()
    if isinstance(value, list):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Unsupported(key, where, key=True)
            out[key] = _json_value(item, f"{where}[{key!r}]")
        return out
    raise _Unsupported(value, where)


def _encode_json(value: Any, step: str) -> bytes:
    try:
        plain = _json_value(value, "")
    except _Unsupported as exc:
        what = _type_name(exc.value)
        if exc.key:
            inside = f" at {exc.where}" if exc.where else ""
            message = (
                f"step '{step}' returned {_a(_type_name(value))} with the key {exc.value!r}"
                f"{inside}, but JSON keys must be strings"
            )
        elif exc.where:
            message = (
                f"step '{step}' returned {_a(_type_name(value))} holding {_a(what)} at "
                f"{exc.where}, which Conveyor cannot store as JSON"
            )
        else:
            message = f"step '{step}' returned {_a(what)}, which Conveyor cannot store"
        raise ValidationError(
            message,
            hint=f"return {_SUPPORTED}; for several outputs, return a dict or use one step each",
            details={"step": step, "type": what, "path": exc.where},
        ) from exc
    return canonical_json(plain).encode()


def _encode_model(model: Any, step: str) -> bytes:
    from conveyor.packaging import encode_model

    try:
        return encode_model(model)
    except ValidationError as exc:
        raise ValidationError(
            f"step '{step}' returned a conveyor.Model that cannot be stored: {exc.message}",
            hint=exc.hint,
            details={"step": step},
        ) from exc


def _encode_array(array: Any, step: str) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    try:
        np.save(buf, array, allow_pickle=False)
    except ValueError as exc:
        raise ValidationError(
            f"step '{step}' returned a numpy array of dtype {array.dtype}, which needs pickle",
            hint="convert it to a numeric or fixed-width string dtype, or return a DataFrame",
            details={"step": step, "dtype": str(array.dtype)},
        ) from exc
    return buf.getvalue()


def _encode_estimator(estimator: Any, step: str) -> bytes:
    from conveyor.packaging import dump_estimator

    try:
        saved = dump_estimator(estimator)
    except ValidationError as exc:
        raise ValidationError(
            f"step '{step}' returned a {_type_name(estimator)} that cannot be stored: "
            f"{exc.message}",
            hint=exc.hint,
            details={"step": step},
        ) from exc
    # The types outside skops' default trust, recorded now so that decoding trusts exactly
    # what this step produced and nothing else.
    trusted = canonical_json(list(saved.trusted)).encode()
    return _zip({_TRUSTED_MEMBER: trusted, _SKOPS_MEMBER: saved.data})


def _decode_estimator(data: bytes) -> Any:
    from conveyor.packaging import check_zip, load_estimator

    check_zip(data, what="a cached step output")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        trusted = json.loads(zf.read(_TRUSTED_MEMBER))
        estimator = zf.read(_SKOPS_MEMBER)
    return load_estimator(estimator, trusted, what="a cached step output")


def _zip(members: dict[str, bytes]) -> bytes:
    """A zip whose bytes depend only on ``members``: fixed timestamps and permissions."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()
