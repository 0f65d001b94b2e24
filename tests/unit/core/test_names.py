"""Names that end up in URLs, paths, SQL and logs follow one strict rule."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.core.errors import ValidationError
from conveyor.core.names import validate_name


@pytest.mark.parametrize(
    "name", ["churn", "a", "7", "churn-v2.1_final", "Churn.Model", "a" * 128, "a.b.c"]
)
def test_valid_names_are_returned(name: str) -> None:
    assert validate_name("model", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-churn",
        ".churn",
        "_churn",
        "churn model",
        "churn/1",
        "churn\\1",
        "a..b",
        "..",
        "../etc",
        "churn\n",
        "churn\x00",
        "chürn",
        "churn:1",
        "a" * 129,
    ],
)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_name("model", name)
    assert info.value.message == f"model name {name!r} is not valid"
    assert info.value.hint is not None
    assert info.value.http_status == 422


@pytest.mark.parametrize("value", [None, 7, b"churn"])
def test_non_strings_are_refused(value: Any) -> None:
    with pytest.raises(ValidationError, match="step name"):
        validate_name("step", value)
