"""Export a Conveyor Table Schema as a pandera ``DataFrameSchema``, for users who check data
with pandera in their own code.

pandera is optional (it is not needed to validate: ``conveyor.data.schema`` does that without
it), so it is imported here only, behind an error that names the package to install.

The mapping: ``required`` -> not ``nullable``; ``unique`` -> ``unique``; ``minimum``/``maximum``
-> ``Check.ge``/``Check.le``; ``enum`` -> ``Check.isin``; a multi-column ``primaryKey`` -> the
frame-level ``unique``. Types are checked by kind (numeric, integral, text, boolean,
datetime) rather than by exact dtype, as Conveyor's own validation does: a CSV reader makes an
integer column with a missing value ``float64`` and pandas 2 and 3 read text as different
dtypes, and neither is a schema violation.
"""

from __future__ import annotations

from typing import Any

from conveyor.core.errors import UsageError

__all__ = ["to_pandera"]


def _kind_check(pa: Any, ftype: str) -> Any:
    import pandas as pd

    api = pd.api.types
    tests = {
        "integer": lambda s: api.is_numeric_dtype(s) and bool((s.dropna() % 1 == 0).all()),
        "number": lambda s: api.is_numeric_dtype(s) and not api.is_bool_dtype(s),
        "boolean": lambda s: api.is_bool_dtype(s) or bool(s.dropna().isin([0, 1]).all()),
        "datetime": api.is_datetime64_any_dtype,
        "string": lambda s: api.is_string_dtype(s) or api.is_object_dtype(s),
    }
    return pa.Check(tests[ftype], name=f"type_{ftype}", error=f"values are not of type {ftype}")


def to_pandera(schema: dict[str, Any]) -> Any:
    """A ``pandera.pandas.DataFrameSchema`` equivalent to a (parsed) Table Schema.

    Raises:
        UsageError: pandera is not installed.
    """
    try:
        import pandera.pandas as pa
    except ImportError as exc:
        raise UsageError(
            "exporting a schema to pandera needs the pandera package, which is not installed",
            hint="pip install pandera (Conveyor's own validation does not need it)",
        ) from exc
    columns: dict[str, Any] = {}
    for field in schema["fields"]:
        c = field.get("constraints", {})
        checks = [_kind_check(pa, field.get("type", "string"))]
        if "minimum" in c:
            checks.append(pa.Check.ge(c["minimum"]))
        if "maximum" in c:
            checks.append(pa.Check.le(c["maximum"]))
        if "enum" in c:
            checks.append(pa.Check.isin(c["enum"]))
        columns[field["name"]] = pa.Column(
            checks=checks,
            nullable=not c.get("required", False),
            unique=bool(c.get("unique", False)),
            required=True,
        )
    key = schema.get("primaryKey", [])
    return pa.DataFrameSchema(columns, unique=key if len(key) > 1 else None, strict=False)
