"""Micro-batching: requests that arrive while the model is busy share its next ``predict`` call.

A scikit-learn pipeline costs about the same for one row as for a thousand: the time goes to
per-call overhead (signature coercion, column selection, pandas indexing). Measured on the test
model of ``tests/unit/server`` (a ColumnTransformer and a LogisticRegression), ``predict`` took
7.5 ms for 1 row and 8.1 ms for 1,024. Under concurrent load, answering N queued requests with
one call is close to N times the throughput.

A request that finds the model idle runs at once, alone, so light load pays no latency for
batching. Requests that arrive while a batch runs queue up and go together in the next call.
Only right after a batch of several requests (that is, under load) does the next batch wait,
at most ``MAX_GATHER_S`` and half the last batch's run time, for as many requests as the last
batch had: closed-loop clients send their next requests a moment after their answers, and
without the wait batches alternate between one request and all the others.

Each batch runs in a worker thread. The task of one request of the batch (the "leader") waits
for the thread, hands each request its result, and passes the lead to the first request that
queued meanwhile; so every task runs at most one batch and no request waits on a loop that
never ends. A batch that fails on a request's data is retried one request at a time, so a bad
request gets its own error and the others their answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import numpy as np
import pandas as pd

from conveyor.core.errors import ConveyorError
from conveyor.server.tensors import encode_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from conveyor.deploy.telemetry import Telemetry
    from conveyor.packaging import LoadedModel
    from conveyor.server.metrics import ServerMetrics
    from conveyor.server.tensors import InferRequest

__all__ = ["Answer", "Batcher"]

#: Most rows one ``predict`` call takes; a request larger than this runs alone.
MAX_BATCH_ROWS = 1024
#: Longest a batch waits for more requests to join it (only under load; see ``_gather``).
MAX_GATHER_S = 0.005
# A batch more than this long ago says nothing about the load now.
_RECENT_S = 0.05


@dataclass(frozen=True, slots=True)
class Answer:
    """A request's response body, and its own rows of each computed output (for telemetry,
    shadow comparisons and feedback)."""

    body: bytes
    predictions: dict[str, Any]


class _Job:
    __slots__ = ("done", "error", "lead", "request", "result")

    def __init__(self, request: InferRequest) -> None:
        self.request = request
        self.done = anyio.Event()
        self.lead = False
        self.result: Answer | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Answer:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Batcher:
    """Runs one model's predictions, batching requests that queue while it is busy.

    Use from the event loop only; the model itself runs in worker threads.

    Args:
        name: The model name, for responses.
        version: The version number, for responses.
        model: The loaded model.
        run_sync: How to run a batch off the event loop (``anyio.to_thread.run_sync``).
        metrics: Where to record each ``predict`` call (batch size, predictions), if anywhere.

    Attributes:
        metrics: As above; the repository that loads the model sets it.
        telemetry: Where each batch's predictions are recorded for rollout analysis, if
            anywhere (:mod:`conveyor.deploy.telemetry`); the repository sets it.
    """

    def __init__(
        self,
        name: str,
        version: int,
        model: LoadedModel,
        *,
        run_sync: Callable[..., Any] = anyio.to_thread.run_sync,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.model = model
        self._run_sync = run_sync
        self.metrics = metrics
        self.telemetry: Telemetry | None = None
        self._queue: list[_Job] = []
        self._busy = False
        # Set when a request queues while the next leader gathers a batch.
        self._arrival: anyio.Event | None = None
        self._last_size = 0
        self._last_run_s = 0.0
        self._last_end = 0.0

    async def infer(self, request: InferRequest) -> bytes:
        """The JSON response body for ``request``.

        Raises:
            ConveyorError: the request does not fit the model (a ValidationError, 422).
        """
        return (await self.answer(request)).body

    async def answer(self, request: InferRequest) -> Answer:
        """The response body for ``request`` and its predictions.

        Raises:
            ConveyorError: the request does not fit the model (a ValidationError, 422).
        """
        job = _Job(request)
        self._queue.append(job)
        if self._arrival is not None:
            self._arrival.set()
        if self._busy:
            # Shielded: the leader relies on each queued task to take the lead when told.
            with anyio.CancelScope(shield=True):
                await job.done.wait()
            if not job.lead:
                return job.outcome()
        self._busy = True
        await self._gather()
        batch = self._take()
        started = anyio.current_time()
        try:
            # Shielded: every request of the batch, not only this one, waits for its result.
            with anyio.CancelScope(shield=True):
                await self._run_sync(self._run, batch)
        finally:
            self._last_end = anyio.current_time()
            self._last_size, self._last_run_s = len(batch), self._last_end - started
            for other in batch:
                if other is not job:
                    other.done.set()
            if self._queue:
                self._queue[0].lead = True
                self._queue[0].done.set()
            else:
                self._busy = False
        return job.outcome()

    async def _gather(self) -> None:
        """Under load, wait a moment for as many requests as the last batch answered.

        The wait is bounded by half the last batch's run time, so it never costs more than the
        batch it lets the waiting requests join.
        """
        now = anyio.current_time()
        if self._last_size <= 1 or now - self._last_end > _RECENT_S:
            return  # light load: answer at once
        deadline = now + min(MAX_GATHER_S, self._last_run_s / 2)
        with anyio.CancelScope(shield=True):
            while len(self._queue) < self._last_size:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    break
                self._arrival = anyio.Event()
                with anyio.move_on_after(remaining):
                    await self._arrival.wait()
            self._arrival = None

    def _take(self) -> list[_Job]:
        batch: list[_Job] = []
        rows = 0
        while self._queue and (not batch or rows + self._queue[0].request.rows <= MAX_BATCH_ROWS):
            job = self._queue.pop(0)
            batch.append(job)
            rows += job.request.rows
        return batch

    # -- in a worker thread --------------------------------------------------------------------

    def _run(self, batch: list[_Job]) -> None:
        if len(batch) == 1:
            self._run_one(batch[0])
            return
        try:
            wanted = {name for job in batch for name in job.request.outputs}
            predictions = self._predict(_frame([job.request for job in batch]), wanted)
            self._observe(len(batch), predictions)
            start = 0
            for job in batch:
                end = start + job.request.rows
                own = {k: v[start:end] for k, v in predictions.items()}
                job.result = Answer(self._encode(job.request, own), own)
                start = end
        except ConveyorError:
            # One request's data can sink a whole batch; answer each on its own instead.
            for job in batch:
                self._run_one(job)
        except Exception as exc:
            # A bug: every request of the batch reports it (the handler logs it, answers 500).
            for job in batch:
                job.error = exc

    def _run_one(self, job: _Job) -> None:
        try:
            predictions = self._predict(job.request.frame(), set(job.request.outputs))
            self._observe(1, predictions)
            job.result = Answer(self._encode(job.request, predictions), predictions)
        except Exception as exc:
            job.error = exc

    def _predict(self, frame: pd.DataFrame, wanted: set[str]) -> dict[str, Any]:
        # Only the outputs some request asked for, in the signature's order: a classifier's
        # predict and predict_proba each cost a pass through the model.
        outputs = [o.name for o in self.model.signature.outputs if o.name in wanted]
        if len(outputs) == len(self.model.signature.outputs):
            return self.model.predict(frame)
        return self.model.predict(frame, outputs=outputs)

    def _observe(self, requests: int, predictions: dict[str, Any]) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.observe_batch(self.name, self.version, requests, predictions)
        telemetry = self.telemetry
        if telemetry is not None:
            values = prediction_values(predictions)
            if values is not None:
                telemetry.record_predictions(values)

    def _encode(self, request: InferRequest, predictions: dict[str, Any]) -> bytes:
        return encode_response(
            model=self.name,
            version=self.version,
            request=request,
            predictions=predictions,
            signature=self.model.signature,
        )


def prediction_values(predictions: dict[str, Any]) -> np.ndarray[Any, Any] | None:
    """The one number per row that telemetry compares between versions: a binary classifier's
    positive-class probability, else a numeric ``predict`` (a regression value or a class
    index); None when there is none (e.g. string labels alone)."""
    proba = predictions.get("predict_proba")
    if proba is not None and np.ndim(proba) == 1:
        return np.asarray(proba, dtype=np.float64)
    predicted = predictions.get("predict")
    if predicted is not None:
        array = np.asarray(predicted)
        if array.ndim == 1 and array.dtype.kind in "fiub":
            return array.astype(np.float64)
    return None


def _frame(requests: list[InferRequest]) -> pd.DataFrame:
    """One frame holding the rows of every request, in order."""
    columns: dict[str, Any] = {}
    for name in requests[0].columns:
        parts = [r.columns[name] for r in requests]
        if all(isinstance(p, np.ndarray) for p in parts):
            columns[name] = np.concatenate(parts)
        else:
            columns[name] = pd.concat([pd.Series(p, copy=False) for p in parts], ignore_index=True)
    return pd.DataFrame(columns, copy=False)
