"""Cached outputs are decoded only when something needs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from conveyor.core.errors import NotFoundError
from conveyor.pipeline import _codecs

if TYPE_CHECKING:
    from tests.unit.pipeline.conftest import Project


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The media types of every decode, in order."""
    calls: list[str] = []
    original = _codecs.decode

    def counting(data: bytes, media_type: str) -> Any:
        calls.append(media_type)
        return original(data, media_type)

    monkeypatch.setattr(_codecs, "decode", counting)
    return calls


def test_a_no_op_run_decodes_nothing(flow_sqlite: Project, decoded: list[str]) -> None:
    flow_sqlite.run()
    flow_sqlite.run()
    assert decoded == []


def test_only_the_inputs_of_a_step_that_runs_are_decoded(
    flow_sqlite: Project, decoded: list[str]
) -> None:
    flow_sqlite.run()
    flow_sqlite.params["offset"] = 1
    result = flow_sqlite.run()
    assert flow_sqlite.ran(result) == {"total"}
    assert decoded == ["application/json"]  # `scaled`, which `total` reads; not `raw`


def test_load_decodes_a_cached_output_once(flow_sqlite: Project, decoded: list[str]) -> None:
    flow_sqlite.run()
    result = flow_sqlite.run()
    assert result.load("scaled") == [3, 6, 9]
    assert result.load("scaled") == [3, 6, 9]
    assert len(decoded) == 1


def test_load_of_a_step_that_ran_returns_its_value_without_decoding(
    flow_sqlite: Project, decoded: list[str]
) -> None:
    result = flow_sqlite.run()
    assert result.load("total") == {"total": 18}
    assert decoded == []


def test_load_of_an_unknown_step_lists_the_steps(flow_sqlite: Project) -> None:
    result = flow_sqlite.run()
    with pytest.raises(NotFoundError, match=r"pipeline 'flow' has no step 'nope'") as caught:
        result.load("nope")
    assert caught.value.hint == "its steps are: raw, scaled, total, label"
