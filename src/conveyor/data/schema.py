"""Dataset schemas in Frictionless Table Schema JSON: inferred, edited by hand, validated against.

The format is the Frictionless Data "Table Schema" (https://specs.frictionlessdata.io/table-schema/):
``{"fields": [{"name", "type", "constraints": {...}}], "primaryKey": [...], "missingValues": [""]}``
with the field types ``integer``, ``number``, ``string``, ``boolean``, ``datetime`` and the
constraints ``required``, ``unique``, ``minimum``, ``maximum`` and ``enum``. The spec allows
extra properties on a field; Conveyor keeps what it observed (null rate, quantiles, the exact
min and max) under ``"conveyor"``, which validation never reads. Writing the JSON ourselves costs
no dependency (the ``frictionless`` package pulls in dozens).

Inference from a reference dataset (decisions, each editable in the file afterwards):

* ``required`` when the reference has no missing value in the column;
* ``unique`` for integer and string columns whose reference values are all distinct (an id);
  not for floats, whose values are distinct by accident and collide in new data;
* ``enum`` for text columns with at most :data:`MAX_ENUM` categories, fewer than half the rows;
* ``minimum``/``maximum`` for numbers: the observed range widened by :data:`RANGE_MARGIN` times
  its span on each side (never below 0 for a column that was never negative). A new sample of the
  same distribution exceeds the reference's exact extremes often (m new rows beat the max of n
  old ones with probability m/(n+m)); margins of 10 % and of one span still tripped on clean
  random splits of the example data and of scikit-learn's breast-cancer data (heavy tails) in our
  tests. An inferred range is there to catch gross errors (sentinels such
  as -999 or 99999, a unit change, a sign flip), while gradual shifts are the drift checks'
  business. Write exact bounds by hand where they are known. No range for datetimes: new data
  is later by nature.

Validation reports every violation with its count, up to :data:`EXAMPLES` example values and
their row numbers (0-based, in file order).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.digest import digest_json
from conveyor.core.errors import ConfigError
from conveyor.data.findings import Finding

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.data.profile import ColumnSketch

__all__ = [
    "EXAMPLES",
    "MAX_ENUM",
    "RANGE_MARGIN",
    "check_schema",
    "infer_schema",
    "load_schema",
    "parse_schema",
    "schema_digest",
]

MAX_ENUM = 50
RANGE_MARGIN = 2.0
EXAMPLES = 5
_TYPES = ("integer", "number", "string", "boolean", "datetime")
_CONSTRAINTS: dict[str, tuple[type, ...]] = {
    "required": (bool,),
    "unique": (bool,),
    "minimum": (int, float),
    "maximum": (int, float),
    "enum": (list,),
}


def _field_type(sketch: ColumnSketch) -> str:
    if sketch.kind == "numeric":
        return "integer" if sketch.integral else "number"
    return {"datetime": "datetime", "boolean": "boolean"}.get(sketch.kind, "string")


def infer_schema(sketches: dict[str, ColumnSketch]) -> dict[str, Any]:
    """A Table Schema describing the sketched reference data (see the module docstring)."""
    from conveyor.data.profile import QUANTILES

    fields: list[dict[str, Any]] = []
    primary: list[str] = []
    for name, s in sketches.items():
        ftype = _field_type(s)
        constraints: dict[str, Any] = {"required": s.nulls == 0}
        observed: dict[str, Any] = {"null_rate": s.null_rate, "distinct": s.n_unique}
        if ftype in ("integer", "string") and s.present > 1 and s.n_unique == s.present:
            constraints["unique"] = True
            if s.nulls == 0 and not primary:
                primary = [name]
        if s.kind == "numeric" and s.present:
            lo, hi = s.min, s.max
            margin = RANGE_MARGIN * (hi - lo)
            minimum = lo - margin if lo - margin >= 0 or lo < 0 else 0.0
            maximum = hi + margin
            if ftype == "integer":
                minimum, maximum = float(int(minimum // 1)), float(-int(-maximum // 1))
            constraints["minimum"] = int(minimum) if ftype == "integer" else minimum
            constraints["maximum"] = int(maximum) if ftype == "integer" else maximum
            observed.update(
                min=lo,
                max=hi,
                quantiles={str(q): s.quantile(q) for q in QUANTILES},
            )
        if s.kind == "categorical" and s.labels is not None:
            if s.n_unique <= MAX_ENUM and s.n_unique * 2 <= s.present:
                constraints["enum"] = [str(v) for v in s.labels]
        fields.append(
            {"name": name, "type": ftype, "constraints": constraints, "conveyor": observed}
        )
    schema: dict[str, Any] = {"fields": fields, "missingValues": [""]}
    if primary:
        schema["primaryKey"] = primary
    return schema


def schema_digest(schema: dict[str, Any]) -> str:
    """Digest of what validation reads (fields, types, constraints, key), not of observations."""
    core = {
        "fields": [
            {"name": f["name"], "type": f["type"], "constraints": f.get("constraints", {})}
            for f in schema["fields"]
        ],
        "primaryKey": schema.get("primaryKey", []),
    }
    return digest_json(core)


def load_schema(path: Path) -> dict[str, Any]:
    """Read and check a Table Schema JSON file.

    Raises:
        ConfigError: the file is missing, is not JSON, or is not a valid Table Schema; the
            message names the file and the offending field.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"schema {path} cannot be read: {exc.strerror or exc}",
            hint="write one with `conveyor data profile REFERENCE --schema-out FILE`",
        ) from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"schema {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            hint="fix the JSON syntax (a Frictionless Table Schema is a JSON object)",
        ) from exc
    return parse_schema(raw, where=str(path))


def parse_schema(raw: Any, *, where: str) -> dict[str, Any]:
    """Check that ``raw`` is a Table Schema Conveyor can validate with; return it.

    Raises:
        ConfigError: naming ``where`` and the field or key at fault.
    """
    hint = "see https://specs.frictionlessdata.io/table-schema/ (fields: name, type, constraints)"
    if not isinstance(raw, dict) or not isinstance(raw.get("fields"), list) or not raw["fields"]:
        raise ConfigError(f"{where}: a Table Schema needs a non-empty 'fields' list", hint=hint)
    names: set[str] = set()
    for i, f in enumerate(raw["fields"]):
        at = f"{where}: fields[{i}]"
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            raise ConfigError(f"{at} has no 'name'", hint=hint)
        at = f"{where}: field '{f['name']}'"
        if f["name"] in names:
            raise ConfigError(f"{at} appears twice", hint="give every field a unique name")
        names.add(f["name"])
        if f.get("type", "string") not in _TYPES:
            raise ConfigError(
                f"{at} has type {f.get('type')!r}", hint=f"use one of: {', '.join(_TYPES)}"
            )
        constraints = f.get("constraints", {})
        if not isinstance(constraints, dict):
            raise ConfigError(f"{at}: 'constraints' must be an object", hint=hint)
        for key, value in constraints.items():
            if key not in _CONSTRAINTS:
                raise ConfigError(
                    f"{at}: unknown constraint {key!r}",
                    hint=f"Conveyor validates: {', '.join(_CONSTRAINTS)}",
                )
            if isinstance(value, bool) and bool not in _CONSTRAINTS[key]:
                raise ConfigError(f"{at}: constraint {key!r} must be a number, not {value!r}")
            if not isinstance(value, _CONSTRAINTS[key]):
                kinds = "/".join(t.__name__ for t in _CONSTRAINTS[key])
                raise ConfigError(f"{at}: constraint {key!r} must be {kinds}, not {value!r}")
    key = raw.get("primaryKey", [])
    key = [key] if isinstance(key, str) else key
    if not isinstance(key, list) or any(k not in names for k in key):
        raise ConfigError(f"{where}: primaryKey {key!r} must name fields of the schema", hint=hint)
    return {**raw, "primaryKey": key} if key else raw


def _examples(values: Any, rows: Any) -> dict[str, Any]:
    return {
        "examples": [_py(v) for v in list(values[:EXAMPLES])],
        "rows": [int(r) for r in list(rows[:EXAMPLES])],
    }


def _py(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def _type_ok(ftype: str, s: ColumnSketch) -> bool:
    if ftype == "number":
        return s.kind in ("numeric", "boolean")
    if ftype == "integer":
        return s.kind in ("numeric", "boolean") and s.integral
    if ftype == "boolean":
        return s.kind == "boolean" or (s.kind == "numeric" and s.n_unique <= 2 and s.integral)
    if ftype == "datetime":
        return s.kind == "datetime"
    return s.kind == "categorical" or s.present == 0


def check_schema(
    schema: dict[str, Any], frame: pd.DataFrame, sketches: dict[str, ColumnSketch]
) -> list[Finding]:
    """Every violation of ``schema`` by the data, with counts and examples (all blocking,
    except columns the schema does not declare, which warn)."""
    import numpy as np

    findings: list[Finding] = []
    declared = {f["name"] for f in schema["fields"]}
    for name in sketches:
        if name not in declared:
            findings.append(
                Finding(
                    name,
                    "schema.extra_column",
                    None,
                    None,
                    False,
                    f"column '{name}' is not in the schema",
                )
            )
    for f in schema["fields"]:
        name, ftype = f["name"], f.get("type", "string")
        c = f.get("constraints", {})
        s = sketches.get(name)
        if s is None:
            findings.append(
                Finding(
                    name,
                    "schema.missing_column",
                    None,
                    None,
                    True,
                    f"column '{name}' is missing",
                    {"expected_type": ftype},
                )
            )
            continue
        if not _type_ok(ftype, s):
            findings.append(
                Finding(
                    name,
                    "schema.wrong_type",
                    None,
                    None,
                    True,
                    f"column '{name}' holds {_field_type(s)} values, the schema says {ftype}",
                    {"expected": ftype, "found": _field_type(s)},
                )
            )
            continue
        series = frame[name]
        if c.get("required") and s.nulls:
            rows = np.flatnonzero(series.isna().to_numpy())
            findings.append(
                Finding(
                    name,
                    "schema.null_in_required",
                    float(s.nulls),
                    0.0,
                    True,
                    f"column '{name}' is required but has {s.nulls} missing value(s)",
                    {"count": s.nulls, "rows": [int(r) for r in rows[:EXAMPLES]]},
                )
            )
        if s.ordered and s.present and ("minimum" in c or "maximum" in c):
            lo, hi = c.get("minimum", -np.inf), c.get("maximum", np.inf)
            if s.min < lo or s.max > hi:
                raw = series.to_numpy(dtype=np.float64, na_value=np.nan)
                bad = np.flatnonzero((raw < lo) | (raw > hi))
                findings.append(
                    Finding(
                        name,
                        "schema.out_of_range",
                        float(len(bad)),
                        0.0,
                        True,
                        f"column '{name}' has {len(bad)} value(s) outside [{lo}, {hi}]",
                        {
                            "count": len(bad),
                            "minimum": lo,
                            "maximum": hi,
                            **_examples(raw[bad], bad),
                        },
                    )
                )
        if "enum" in c and s.labels is not None and s.counts is not None:
            allowed = {str(v) for v in c["enum"]}
            unseen = [i for i, label in enumerate(s.labels) if label not in allowed]
            if unseen:
                count = int(s.counts[unseen].sum())
                labels = [str(s.labels[i]) for i in unseen]
                mask = series.astype(str).isin(labels).to_numpy() & series.notna().to_numpy()
                findings.append(
                    Finding(
                        name,
                        "schema.unseen_category",
                        float(count),
                        0.0,
                        True,
                        f"column '{name}' has {count} value(s) in {len(labels)} unseen "
                        f"categor{'y' if len(labels) == 1 else 'ies'}: "
                        + ", ".join(repr(x) for x in labels[:EXAMPLES]),
                        {
                            "count": count,
                            "categories": labels[:50],
                            **_examples(labels, np.flatnonzero(mask)),
                        },
                    )
                )
        if c.get("unique"):
            findings.extend(_duplicates(frame, [name], "schema.duplicate_key"))
    key = [k for k in schema.get("primaryKey", []) if k in sketches]
    uniques = {f["name"] for f in schema["fields"] if f.get("constraints", {}).get("unique")}
    if key and not (len(key) == 1 and key[0] in uniques):
        findings.extend(_duplicates(frame, key, "schema.duplicate_key"))
    return findings


def _duplicates(frame: pd.DataFrame, key: list[str], check: str) -> list[Finding]:
    import numpy as np

    sub = frame[key].dropna()
    dup = sub.duplicated(keep="first").to_numpy()
    n = int(dup.sum())
    if not n:
        return []
    rows = sub.index.to_numpy()[np.flatnonzero(dup)]
    values = sub[key[0]].to_numpy()[np.flatnonzero(dup)]
    label = "+".join(key)
    return [
        Finding(
            label if len(key) > 1 else key[0],
            check,
            float(n),
            0.0,
            True,
            f"key '{label}' has {n} duplicate value(s)",
            {"count": n, "key": key, **_examples(values, rows)},
        )
    ]
