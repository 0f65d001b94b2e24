"""The pandera export accepts what Conveyor accepts and rejects what it rejects."""

from __future__ import annotations

import sys

import pandera.errors
import pytest
from tests.unit.data._data_support import churn, split

from conveyor.core.errors import UsageError
from conveyor.data.pandera_export import to_pandera
from conveyor.data.profile import sketch_frame
from conveyor.data.schema import infer_schema


def test_exported_schema_passes_clean_data_and_catches_planted_defects() -> None:
    reference, current = split(churn(3000), 0)
    exported = to_pandera(infer_schema(sketch_frame(reference, what="reference")))
    exported.validate(current)
    current.loc[[3, 9], "age"] = [-4, 400]
    current.loc[[5, 6], "contract"] = "lifetime"
    current.loc[1, "tenure_months"] = None
    current.loc[11, "customer_id"] = current.loc[10, "customer_id"]
    with pytest.raises(pandera.errors.SchemaErrors) as info:
        exported.validate(current, lazy=True)
    failed = info.value.failure_cases
    assert {"age", "contract", "tenure_months", "customer_id"} <= set(failed["column"])


def test_missing_pandera_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandera.pandas", None)
    with pytest.raises(UsageError, match="needs the pandera package"):
        to_pandera({"fields": [{"name": "a"}]})
