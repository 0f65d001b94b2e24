"""Coerce a frame to a model's input signature, or say exactly which column is wrong.

Requests come from JSON and from other people's code, so the frame the model receives is rebuilt
column by column: numbers that arrived as text are parsed, whole numbers are checked, text is made
``object`` dtype holding ``str`` with ``NaN`` for nulls (what pandas readers give a training
step). The first offending column is reported with what it should hold, so a client can fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from conveyor.packaging._signature import ColumnSpec

__all__ = ["coerce_frame"]

_EXPECTED = {
    "FP64": "numbers (FP64)",
    "FP32": "numbers (FP32)",
    "INT64": "whole numbers (INT64)",
    "INT32": "whole numbers (INT32)",
    "BOOL": "true/false values (BOOL)",
    "BYTES": "text (BYTES)",
}
_INT_RANGE = {"INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1)}


def coerce_frame(frame: pd.DataFrame, inputs: Sequence[ColumnSpec], *, model: str) -> pd.DataFrame:
    """A new frame holding exactly the signature's columns, in its order, with its dtypes.

    Args:
        frame: The input, as a client or a step gave it; it is not modified.
        inputs: The signature's input columns.
        model: What to call the model in messages ("model 'churn'").

    Raises:
        ValidationError: naming the first column that is missing, unexpected, null where it
            must not be, or holding a value of the wrong type; ``details`` holds ``column``,
            ``expected`` and, for a bad value, ``row`` (0-based position) and ``value``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(
            f"{model} takes a pandas DataFrame, not {type(frame).__name__}",
            hint="pass the input rows as a DataFrame with one column per input",
        )
    present = set(frame.columns)
    for spec in inputs:
        if spec.name not in present:
            raise _error(model, spec.name, "is missing", f"a column of {_EXPECTED[spec.datatype]}")
    names = [spec.name for spec in inputs]
    for name in frame.columns:
        if name not in names:
            raise _error(
                model,
                name,
                "is not an input of this model",
                f"only the columns {', '.join(names)}",
                hint="drop the column; the model's signature lists its inputs",
            )
    if frame.columns.has_duplicates:
        dup = str(frame.columns[frame.columns.duplicated()][0])
        raise _error(model, dup, "appears more than once", "each column once")
    # Arrays, not Series, and one DataFrame at the end: a Series per column and a frame
    # aligning them on their index cost more than the checks (this runs for every batch).
    columns = {spec.name: _coerce_column(frame[spec.name], spec, model) for spec in inputs}
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.dtype.kind == "O":
            # Text stays object dtype, as a training step's reader gives it; a frame built
            # from a bare object array would make it pandas' string dtype.
            columns[name] = pd.Series(values, index=frame.index, dtype=object, copy=False)
    return pd.DataFrame(columns, index=frame.index)


def _coerce_column(column: pd.Series, spec: ColumnSpec, model: str) -> Any:
    """The column's values as the signature types them: a numpy or pandas array."""
    # Plain numpy columns (what the server's requests hold) skip the Series machinery.
    raw = column.to_numpy() if isinstance(column.dtype, np.dtype) else None
    null = pd.isna(raw) if raw is not None else column.isna().to_numpy(dtype=bool)
    if not spec.nullable and null.any():
        row = int(np.flatnonzero(null)[0])
        raise _error(
            model,
            spec.name,
            f"is null at row {row}",
            f"{_EXPECTED[spec.datatype]} with no nulls",
            row=row,
            hint="fill the missing values; the model was packaged with no nulls in this column",
        )
    if spec.datatype in ("FP64", "FP32"):
        target = np.float64 if spec.datatype == "FP64" else np.float32
        if raw is not None and raw.dtype.kind in "fiu":
            # Through float64 as below, so FP32 rounds the same way.
            return raw.astype(np.float64).astype(target, copy=False)
        return _numbers(column, null, spec, model).to_numpy().astype(target)
    if spec.datatype in ("INT64", "INT32"):
        return _array(_whole_numbers(column, null, spec, model))
    if spec.datatype == "BOOL":
        return _array(_booleans(column, null, spec, model))
    if raw is not None and raw.dtype == object and _all_text(raw):
        values = raw.copy()
        values[null] = np.nan
        return values
    return _array(_text(column, null, spec, model))


def _array(column: pd.Series) -> Any:
    return column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array


def _all_text(values: Any) -> bool:
    return pdt.infer_dtype(values, skipna=True) in ("string", "empty")


def _numbers(column: pd.Series, null: Any, spec: ColumnSpec, model: str) -> pd.Series:
    if pdt.is_bool_dtype(column.dtype):
        raise _error(model, spec.name, "holds true/false values", _EXPECTED[spec.datatype], row=0)
    if pdt.is_numeric_dtype(column.dtype):
        # Masked dtypes (Int64, Float64) hold pd.NA, which numpy cannot; NaN is its float form.
        return pd.Series(column.to_numpy(dtype=np.float64, na_value=np.nan), index=column.index)
    raw = column.astype(object)
    is_bool = raw.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    parsed = pd.to_numeric(raw.where(~is_bool, "not a number"), errors="coerce")
    bad = parsed.isna().to_numpy(dtype=bool) & ~null
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _error(
            model,
            spec.name,
            f"holds {_show(raw.iloc[row])} at row {row}",
            _EXPECTED[spec.datatype],
            row=row,
            value=raw.iloc[row],
        )
    return pd.Series(parsed.to_numpy(dtype=np.float64, na_value=np.nan), index=column.index)


def _whole_numbers(column: pd.Series, null: Any, spec: ColumnSpec, model: str) -> pd.Series:
    low, high = _INT_RANGE[spec.datatype]
    if pdt.is_integer_dtype(column.dtype) and not null.any():
        # Straight from integers: a float detour would round ids above 2**53.
        ints = column.to_numpy(dtype=np.int64)
        bad = (ints < low) | (ints > high)
        values: Any = ints
    else:
        values = _numbers(column, null, spec, model).to_numpy()
        # float(2**63 - 1) rounds up to 2**63, which int64 cannot hold: compare with >=.
        bad = ~null & ((values != np.round(values)) | (values < low) | (values >= high + 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _error(
            model,
            spec.name,
            f"holds {_show(column.iloc[row])} at row {row}",
            _EXPECTED[spec.datatype],
            row=row,
            value=column.iloc[row],
        )
    if spec.nullable:
        dtype: Any = pd.Int64Dtype() if spec.datatype == "INT64" else pd.Int32Dtype()
        return pd.Series(values, index=column.index).astype(dtype)
    target = np.int64 if spec.datatype == "INT64" else np.int32
    return pd.Series(values.astype(target), index=column.index)


def _booleans(column: pd.Series, null: Any, spec: ColumnSpec, model: str) -> pd.Series:
    if pdt.is_bool_dtype(column.dtype) and not null.any():
        return column.astype(bool)
    raw = column.astype(object).to_numpy()
    ok = np.fromiter(
        (
            isinstance(v, bool | np.bool_)
            or (isinstance(v, int | np.integer) and v in (0, 1))
            or is_null
            for v, is_null in zip(raw, null, strict=True)
        ),
        dtype=bool,
        count=len(raw),
    )
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise _error(
            model,
            spec.name,
            f"holds {_show(raw[row])} at row {row}",
            _EXPECTED[spec.datatype],
            row=row,
            value=raw[row],
        )
    if spec.nullable:
        return pd.Series(
            [None if n else bool(v) for v, n in zip(raw, null, strict=True)],
            index=column.index,
            dtype="boolean",
        )
    return pd.Series(raw.astype(bool), index=column.index)


def _text(column: pd.Series, null: Any, spec: ColumnSpec, model: str) -> pd.Series:
    if _all_text(column):
        values = column.astype(object).to_numpy(copy=True)
    else:
        values = column.astype(object).to_numpy(copy=True)
        for row, (value, is_null) in enumerate(zip(values, null, strict=True)):
            if is_null or isinstance(value, str):
                continue
            # Integer codes are text in JSON clients' eyes ("region": 3); floats and booleans
            # are not, since "3.0" or "True" would silently miss the category the model knows.
            if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
                values[row] = str(value)
            elif isinstance(value, bytes):
                try:
                    values[row] = value.decode()
                except UnicodeDecodeError as exc:
                    raise _error(
                        model,
                        spec.name,
                        f"holds bytes that are not UTF-8 at row {row}",
                        _EXPECTED["BYTES"],
                        row=row,
                    ) from exc
            else:
                raise _error(
                    model,
                    spec.name,
                    f"holds {_show(value)} ({type(value).__name__}) at row {row}",
                    _EXPECTED["BYTES"],
                    row=row,
                    value=value,
                )
    values[null] = np.nan
    return pd.Series(values, index=column.index, dtype=object)


def _show(value: Any) -> str:
    """A value as a client wrote it: ``2.5``, not numpy's ``np.float64(2.5)``."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _error(
    model: str,
    column: str,
    problem: str,
    expected: str,
    *,
    row: int | None = None,
    value: Any = None,
    hint: str | None = None,
) -> ValidationError:
    details: dict[str, Any] = {"column": column, "expected": expected}
    if row is not None:
        details["row"] = row
    if value is not None:
        details["value"] = _show(value)
    return ValidationError(
        f"{model}: input column '{column}' {problem}; expected {expected}",
        hint=hint or "send the columns and types of the model's signature",
        details=details,
    )
