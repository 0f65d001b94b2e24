"""Micro-batching: queued requests share one predict call, and a bad one fails alone."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import pytest

from conveyor.core.errors import ValidationError
from conveyor.packaging import ColumnSpec, Signature
from conveyor.server.batching import Batcher
from conveyor.server.tensors import InferRequest, decode_request

if TYPE_CHECKING:
    import pandas as pd

SIGNATURE = Signature(inputs=(ColumnSpec("x", "FP64"),), outputs=(ColumnSpec("predict", "FP64"),))


class _Doubler:
    """A stand-in model: predicts 2x, refuses negative numbers, records every call."""

    signature = SIGNATURE

    def __init__(self) -> None:
        self.calls: list[list[float]] = []

    def predict(self, frame: pd.DataFrame) -> dict[str, Any]:
        values = frame["x"].tolist()
        self.calls.append(values)
        if any(v < 0 for v in values):
            raise ValidationError("input column 'x' holds a negative number")
        return {"predict": np.asarray(values) * 2}


def _request(*values: float) -> InferRequest:
    body = {
        "inputs": [{"name": "x", "shape": [len(values)], "datatype": "FP64", "data": list(values)}]
    }
    return decode_request(body, SIGNATURE)


async def _run_queued(
    batcher: Batcher, requests: list[InferRequest], gate: anyio.Event
) -> list[Any]:
    """Start every request; release the first batch only once all the others have queued."""
    results: list[Any] = [None] * len(requests)

    async def one(i: int) -> None:
        try:
            results[i] = json.loads(await batcher.infer(requests[i]))
        except ValidationError as exc:
            results[i] = exc

    async with anyio.create_task_group() as tasks:
        for i in range(len(requests)):
            tasks.start_soon(one, i)
        with anyio.fail_after(10):
            while len(batcher._queue) < len(requests) - 1:
                await anyio.sleep(0)
        gate.set()
    return results


def _gated(gate: anyio.Event) -> Any:
    async def run_sync(fn: Any, *args: Any) -> Any:
        await gate.wait()
        return fn(*args)

    return run_sync


@pytest.mark.anyio
async def test_requests_queued_behind_a_busy_model_share_one_call() -> None:
    model, gate = _Doubler(), anyio.Event()
    batcher = Batcher("m", 3, model, run_sync=_gated(gate))  # type: ignore[arg-type]
    requests = [_request(1.0), _request(2.0, 3.0), _request(4.0), _request(5.0)]
    results = await _run_queued(batcher, requests, gate)
    assert model.calls == [[1.0], [2.0, 3.0, 4.0, 5.0]]
    assert [r["outputs"][0]["data"] for r in results] == [[2.0], [4.0, 6.0], [8.0], [10.0]]
    assert all(r["model_version"] == "3" for r in results)
    assert [r["outputs"][0]["shape"] for r in results] == [[1], [2], [1], [1]]


@pytest.mark.anyio
async def test_a_bad_request_fails_alone() -> None:
    model, gate = _Doubler(), anyio.Event()
    batcher = Batcher("m", 1, model, run_sync=_gated(gate))  # type: ignore[arg-type]
    requests = [_request(1.0), _request(2.0), _request(-1.0), _request(3.0)]
    results = await _run_queued(batcher, requests, gate)
    assert results[0]["outputs"][0]["data"] == [2.0]
    assert results[1]["outputs"][0]["data"] == [4.0]
    assert isinstance(results[2], ValidationError)
    assert "'x'" in str(results[2])
    assert results[3]["outputs"][0]["data"] == [6.0]
    # The failed batch was retried one request at a time.
    assert model.calls == [[1.0], [2.0, -1.0, 3.0], [2.0], [-1.0], [3.0]]


@pytest.mark.anyio
async def test_an_idle_model_answers_at_once() -> None:
    model = _Doubler()
    batcher = Batcher("m", 1, model)  # type: ignore[arg-type]
    for value in (1.0, 2.0):
        answer = json.loads(await batcher.infer(_request(value)))
        assert answer["outputs"][0]["data"] == [value * 2]
    assert model.calls == [[1.0], [2.0]]
