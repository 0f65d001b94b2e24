"""Schemas: inferred from real data as a Table Schema, every planted violation reported."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.unit.data._data_support import churn, split

from conveyor.core.errors import ConfigError
from conveyor.data.profile import sketch_frame
from conveyor.data.schema import check_schema, infer_schema, load_schema, schema_digest

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from conveyor.data.findings import Finding

Schema = dict[str, Any]


def _check(schema: Schema, frame: pd.DataFrame) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in check_schema(schema, frame, sketch_frame(frame, what="current")):
        out.setdefault(f.check, []).append(f)
    return out


@pytest.fixture(scope="module")
def schema() -> Schema:
    return infer_schema(sketch_frame(split(churn(), 0)[0], what="reference"))


def test_inferred_schema_is_a_table_schema(schema: Schema) -> None:
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["customer_id"]["type"] == "string"
    assert fields["customer_id"]["constraints"] == {"required": True, "unique": True}
    assert schema["primaryKey"] == ["customer_id"]
    assert fields["age"]["type"] == "integer"
    assert fields["monthly_charges"]["type"] == "number"
    assert fields["event_time"]["type"] == "datetime"
    assert fields["contract"]["constraints"]["enum"] == ["month-to-month", "one-year", "two-year"]
    assert fields["age"]["constraints"]["minimum"] == 0  # never negative stays non-negative
    assert set(fields["age"]["conveyor"]["quantiles"]) == {
        "0.01",
        "0.05",
        "0.25",
        "0.5",
        "0.75",
        "0.95",
        "0.99",
    }
    assert json.loads(json.dumps(schema)) == schema


def test_clean_split_has_no_violation(schema: Schema) -> None:
    for seed in range(3):
        assert _check(schema, split(churn(), seed)[1] if seed else split(churn(), 0)[1]) == {}


def test_every_planted_violation_is_reported_with_counts_and_examples(schema: Schema) -> None:
    frame = split(churn(), 0)[1]
    frame = frame.drop(columns=["region"])
    frame["extra"] = 1
    frame["late_payments"] = frame["late_payments"].astype(float) + 0.5  # integer -> number
    frame.loc[[3, 9], "age"] = [-4, 400]  # out of range
    frame.loc[[5, 6, 7], "contract"] = "lifetime"  # unseen category
    frame.loc[[1, 2], "tenure_months"] = np.nan  # null in a required column
    frame.loc[11, "customer_id"] = frame.loc[10, "customer_id"]  # duplicate key
    found = _check(schema, frame)
    assert found["schema.missing_column"][0].column == "region"
    assert found["schema.extra_column"][0].column == "extra"
    assert not found["schema.extra_column"][0].blocking
    assert found["schema.wrong_type"][0].column == "late_payments"
    (rng,) = found["schema.out_of_range"]
    assert rng.column == "age"
    assert rng.details["count"] == 2
    assert rng.details["rows"] == [3, 9]
    assert rng.details["examples"] == [-4.0, 400.0]
    (cat,) = found["schema.unseen_category"]
    assert cat.details["count"] == 3
    assert cat.details["categories"] == ["lifetime"]
    assert cat.details["rows"] == [5, 6, 7]
    (null,) = found["schema.null_in_required"]
    assert null.column == "tenure_months"
    assert null.details == {"count": 2, "rows": [1, 2]}
    (dup,) = found["schema.duplicate_key"]
    assert dup.column == "customer_id"
    assert dup.details["rows"] == [11]
    blocking = {f.check for fs in found.values() for f in fs if f.blocking}
    assert blocking == {
        "schema.missing_column",
        "schema.wrong_type",
        "schema.out_of_range",
        "schema.unseen_category",
        "schema.null_in_required",
        "schema.duplicate_key",
    }


def test_hand_edited_schema_round_trips_and_bad_ones_are_named(
    schema: Schema,
    tmp_path: Path,
) -> None:
    path = tmp_path / "schema.json"
    edited = json.loads(json.dumps(schema))
    edited["fields"][2]["constraints"]["maximum"] = 60
    path.write_text(json.dumps(edited))
    loaded = load_schema(path)
    assert schema_digest(loaded) != schema_digest(schema)
    assert _check(loaded, split(churn(), 0)[1])["schema.out_of_range"][0].column == "age"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"schema\.json is not valid JSON"):
        load_schema(path)
    for broken, message in (
        ({"fields": []}, "non-empty 'fields'"),
        ({"fields": [{"name": "a", "type": "text"}]}, "field 'a' has type 'text'"),
        ({"fields": [{"name": "a", "constraints": {"minimum": "0"}}]}, "'minimum' must be"),
        ({"fields": [{"name": "a", "constraints": {"pattern": "x"}}]}, "unknown constraint"),
        ({"fields": [{"name": "a"}], "primaryKey": ["b"]}, "primaryKey"),
    ):
        path.write_text(json.dumps(broken))
        with pytest.raises(ConfigError, match=message):
            load_schema(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_schema(tmp_path / "missing.json")
