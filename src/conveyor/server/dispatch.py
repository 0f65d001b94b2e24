"""Answering a prediction request: pick the version (stable, canary), answer, mirror to a shadow,
record telemetry, and fall back to stable when a canary fails.

Every predict route (the protocol's ``/infer``, MLflow's ``/invocations``) goes through
:meth:`Dispatcher.answer` with its own decoder, so routing, telemetry and the guarantees below
hold for both:

- **Sticky canary.** A request with an ``X-Conveyor-Routing-Key`` header (a user or session id)
  lands on the same version for as long as the split is the same; without one, each request is
  a fresh draw at the canary's weight (:meth:`Route.pick`).
- **A canary failure never reaches the client.** When the canary fails a request (an exception
  in the model, or a rejection of input the stable version accepts), the stable version answers
  it instead; the failure is recorded against the canary (as a server error), so the analysis
  sees it and rolls the canary back, while no client request fails because of it.
- **A shadow can never slow or fail the primary response.** A mirrored request is started after
  the primary answer is computed, as a task of the application (not of the request), on the
  shadow's own worker threads; at most :data:`MAX_SHADOWS_IN_FLIGHT` are pending at once (more
  are dropped and counted), and one that takes longer than :data:`SHADOW_TIMEOUT_S` is recorded
  as timed out. Its answer is compared with the primary's (agreement of labels, absolute
  difference of scores, latency) and recorded in the shadow's telemetry.
- **Feedback.** The answer of every routed request is remembered by request id (the response's
  ``id`` and ``X-Request-Id`` header) for :func:`feedback`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import numpy as np
from starlette.responses import Response

from conveyor.core.errors import ConveyorError, NotFoundError, ValidationError
from conveyor.core.names import validate_name
from conveyor.server.batching import prediction_values
from conveyor.server.errors import MalformedRequestError
from conveyor.server.metrics import UNKNOWN_MODEL
from conveyor.server.recorder import Remembered
from conveyor.server.repository import LIVE_ROLE, SHADOW_ROLE

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup
    from starlette.requests import Request

    from conveyor.monitoring import InferenceLogger
    from conveyor.server.batching import Answer
    from conveyor.server.metrics import ServerMetrics
    from conveyor.server.recorder import ServingRecorder
    from conveyor.server.repository import ModelRepository, Route, ServedModel
    from conveyor.server.tensors import InferRequest

__all__ = [
    "MAX_SHADOWS_IN_FLIGHT",
    "ROUTING_KEY_HEADER",
    "SHADOW_TIMEOUT_S",
    "Dispatcher",
]

logger = logging.getLogger(__name__)

#: The request header whose value makes canary routing sticky.
ROUTING_KEY_HEADER = "x-conveyor-routing-key"
#: Mirrored requests pending at once, per server; beyond it mirrors are dropped (and counted).
MAX_SHADOWS_IN_FLIGHT = 64
#: A shadow answer later than this counts as timed out.
SHADOW_TIMEOUT_S = 2.0
#: Worker threads a server's shadows may use in all, apart from the ones answering clients.
SHADOW_THREADS = 2
#: Bodies up to this size are decoded on the event loop, larger ones in a worker thread.
INLINE_DECODE_BYTES = 64 * 1024

#: A decoder: the served version and the raw body -> the checked request.
Decode = "Callable[[ServedModel, bytes], InferRequest]"


class Dispatcher:
    """Routes, answers, mirrors and records the requests of one application.

    Args:
        repository: The served versions and their routes.
        metrics: Prometheus metrics of the application.
        recorder: Telemetry for rollouts and the answers kept for feedback; None records none
            (a server pinned to one version).
    """

    def __init__(
        self,
        repository: ModelRepository,
        metrics: ServerMetrics,
        recorder: ServingRecorder | None,
    ) -> None:
        self.repository = repository
        self.metrics = metrics
        self.recorder = recorder
        #: Where answered requests are logged for monitoring (None: not logged).
        self.inference_log: InferenceLogger | None = None
        self.tasks: TaskGroup | None = None  # set by the application's lifespan
        self._shadows_in_flight = 0

    async def answer(
        self,
        request: Request,
        name: str,
        body: Callable[[], Any],
        decode: Callable[[ServedModel, bytes], InferRequest],
        *,
        media_type: str = "application/json",
    ) -> Response:
        """The response to a predict request for model ``name``.

        Args:
            body: Reads the request body (an awaitable returning bytes).
            decode: Checks the body against a served version's signature.
        """
        metrics = self.metrics
        started = time.perf_counter()
        label = name if self.repository.versions(name) else UNKNOWN_MODEL
        picked: list[ServedModel] = []  # the version that answered (or failed), once known
        status = 500
        metrics.request_started(label)
        try:
            response = await self._answer(request, name, body, decode, media_type, picked)
            status = response.status_code
        except ConveyorError as exc:
            status = exc.http_status
            raise
        finally:
            version = str(picked[-1].version) if picked else ""
            metrics.request_finished(label)
            metrics.observe_request(label, version, status, time.perf_counter() - started)
        return response

    async def _answer(
        self,
        request: Request,
        name: str,
        body: Callable[[], Any],
        decode: Callable[[ServedModel, bytes], InferRequest],
        media_type: str,
        picked: list[ServedModel],
    ) -> Response:
        # A 422 naming the rule, not a 404: a name outside it can never be served. Checked in
        # here, not by the route, so the refused request is counted like any other.
        validate_name("model", name)
        raw = request.path_params.get("version")
        if raw is not None:  # an explicit version: no routing, no telemetry
            served = await self._explicit(name, raw)
            picked.append(served)
            checked = await _decode(decode, served, await body())
            answer = await served.batcher.answer(checked)
            return _response(answer, served, checked, media_type)
        route = self.repository.route(name)
        served, on_canary = route.pick(request.headers.get(ROUTING_KEY_HEADER))
        picked.append(served)
        data = await body()
        started = time.perf_counter()
        try:
            checked = await _decode(decode, served, data)
            answer = await served.batcher.answer(checked)
        except Exception as exc:
            if not on_canary:
                self._record(served, LIVE_ROLE, started, _status(exc))
                raise
            served, checked, answer = await self._fall_back(
                route, served, exc, decode, data, started
            )
            picked.append(served)
        self._record(served, LIVE_ROLE, started, 200)
        self._remember(served, checked, answer)
        if self.inference_log is not None:
            # Never waits: the writer thread turns the columns into a table, off the request path.
            self.inference_log.log_columns(
                served.name,
                served.version,
                checked.id,
                checked.columns,
                checked.rows,
                answer.predictions.get("predict"),
                time.perf_counter() - started,
            )
        if route.shadow is not None and route.mirrors():
            self._mirror(route.shadow, decode, data, served, answer)
        return _response(answer, served, checked, media_type)

    async def resolve(self, name: str, raw: str | None) -> ServedModel:
        """The version a path addresses: production without a version, else that version
        (loaded on first use)."""
        if raw is None:
            return self.repository.production(name)
        return await self._explicit(name, raw)

    async def _explicit(self, name: str, raw: str) -> ServedModel:
        version = _parse_version(name, raw)
        repository = self.repository
        served = repository.cached_version(name, version)
        if served is None:
            served = await anyio.to_thread.run_sync(repository.load_version, name, version)
        return served

    async def _fall_back(
        self,
        route: Route,
        canary: ServedModel,
        exc: Exception,
        decode: Callable[[ServedModel, bytes], InferRequest],
        data: bytes,
        started: float,
    ) -> tuple[ServedModel, InferRequest, Answer]:
        """Answer with the stable version a request the canary failed."""
        stable = route.stable
        try:
            checked = await _decode(decode, stable, data)
            answer = await stable.batcher.answer(checked)
        except ConveyorError:
            # The stable version rejects it too: the request is at fault, not the canary.
            self._record(canary, LIVE_ROLE, started, _status(exc))
            raise
        # Stable answered what the canary could not: held against the canary as a 5xx.
        self._record(canary, LIVE_ROLE, started, 500)
        self.metrics.canary_fallback(canary.name, canary.version)
        if not isinstance(exc, ConveyorError):
            logger.warning(
                "canary %s v%d failed a request (%s: %s); answered by v%d",
                canary.name,
                canary.version,
                type(exc).__name__,
                exc,
                stable.version,
            )
        return stable, checked, answer

    # -- telemetry and feedback ------------------------------------------------------------------

    def _record(self, served: ServedModel, role: str, started: float, status: int) -> None:
        if self.recorder is not None:
            self.recorder.telemetry(served.name, served.version, role).record_request(
                time.perf_counter() - started, status
            )

    def _remember(self, served: ServedModel, checked: InferRequest, answer: Answer) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        predicted = answer.predictions.get("predict")
        if predicted is None:
            return
        recorder.remember(
            checked.id,
            Remembered(
                served.name, served.version, LIVE_ROLE, tuple(np.asarray(predicted).tolist())
            ),
        )

    # -- shadow ----------------------------------------------------------------------------------

    def _mirror(
        self,
        shadow: ServedModel,
        decode: Callable[[ServedModel, bytes], InferRequest],
        data: bytes,
        primary: ServedModel,
        answer: Answer,
    ) -> None:
        tasks = self.tasks
        if tasks is None or self._shadows_in_flight >= MAX_SHADOWS_IN_FLIGHT:
            self.metrics.shadow_outcome(shadow.name, shadow.version, "dropped")
            return
        self._shadows_in_flight += 1
        tasks.start_soon(self._shadow, shadow, decode, data, answer)

    async def _shadow(
        self,
        shadow: ServedModel,
        decode: Callable[[ServedModel, bytes], InferRequest],
        data: bytes,
        primary: Answer,
    ) -> None:
        # Runs as a task of the application: nothing here can reach a client's response.
        started = time.perf_counter()
        done = anyio.Event()
        result: dict[str, Any] = {}

        async def run() -> None:
            try:
                checked = await _decode(decode, shadow, data)
                result["answer"] = await shadow.batcher.answer(checked)
            except Exception as exc:
                result["error"] = exc
            finally:
                done.set()
                self._shadows_in_flight -= 1

        try:
            assert self.tasks is not None
            self.tasks.start_soon(run)
            with anyio.move_on_after(SHADOW_TIMEOUT_S):
                await done.wait()
            latency = time.perf_counter() - started
            self._compare(shadow, primary, result, latency, timed_out=not done.is_set())
        except Exception:  # a bug in the comparison must not take the application down
            logger.exception("shadow comparison failed")

    def _compare(
        self,
        shadow: ServedModel,
        primary: Answer,
        result: dict[str, Any],
        latency: float,
        *,
        timed_out: bool,
    ) -> None:
        telemetry = (
            self.recorder.telemetry(shadow.name, shadow.version, SHADOW_ROLE)
            if self.recorder is not None
            else None
        )
        error = result.get("error")
        answer: Answer | None = result.get("answer")
        if timed_out or error is not None or answer is None:
            outcome = "timeout" if timed_out else "error"
            self.metrics.shadow_outcome(shadow.name, shadow.version, outcome)
            if telemetry is not None:
                telemetry.record_request(latency, 504 if timed_out else _status(error))
                telemetry.record_shadow(
                    agree=False,
                    abs_diff=None,
                    shadow_latency_s=None if timed_out else latency,
                    error=not timed_out,
                    timed_out=timed_out,
                )
            return
        agree = _same_labels(primary.predictions, answer.predictions)
        diff = _score_difference(primary.predictions, answer.predictions)
        self.metrics.shadow_outcome(shadow.name, shadow.version, "agreed" if agree else "differed")
        if telemetry is not None:
            telemetry.record_request(latency, 200)
            telemetry.record_shadow(
                agree=agree,
                abs_diff=diff,
                shadow_latency_s=latency,
                error=False,
                timed_out=False,
            )


def _same_labels(primary: dict[str, Any], shadow: dict[str, Any]) -> bool:
    a, b = primary.get("predict"), shadow.get("predict")
    if a is None or b is None:
        a, b = prediction_values(primary), prediction_values(shadow)
    return a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b))


def _score_difference(primary: dict[str, Any], shadow: dict[str, Any]) -> float | None:
    """Mean absolute difference of the per-row scores (probability or value), if both have one."""
    a, b = prediction_values(primary), prediction_values(shadow)
    if a is None or b is None or a.shape != b.shape or a.size == 0:
        return None
    return float(np.mean(np.abs(a - b)))


def _status(exc: BaseException | None) -> int:
    return exc.http_status if isinstance(exc, ConveyorError) else 500


async def _decode(
    decode: Callable[[ServedModel, bytes], InferRequest], served: ServedModel, data: bytes
) -> InferRequest:
    if len(data) <= INLINE_DECODE_BYTES:
        checked = decode(served, data)
    else:
        checked = await anyio.to_thread.run_sync(decode, served, data)
    lookup = served.lookup
    if lookup is not None and lookup.pending(checked):
        # Entity keys only: the features come from the online store, read off the event loop.
        checked = await anyio.to_thread.run_sync(lookup.complete, checked)
    return checked


def _response(
    answer: Answer, served: ServedModel, checked: InferRequest, media_type: str
) -> Response:
    return Response(
        answer.body,
        media_type=media_type,
        headers={"x-request-id": checked.id, "x-conveyor-model-version": str(served.version)},
    )


def _parse_version(name: str, raw: str) -> int:
    text = raw.removeprefix("v")
    if not text.isdigit() or not text.isascii():
        raise NotFoundError(
            f"model '{name}' has no version '{raw}'",
            hint=f"versions are numbers, e.g. /v2/models/{name}/versions/1",
        )
    return int(text)


# -- feedback ----------------------------------------------------------------------------------


def _feedback_items(payload: Any) -> list[dict[str, Any]]:
    """The ``{"id", "label"}`` items of a feedback payload, checked.

    Raises:
        MalformedRequestError: the payload or an item has another shape.
    """
    items = payload.get("feedback") if isinstance(payload, dict) else None
    if items is None and isinstance(payload, dict) and "id" in payload:
        items = [payload]
    if not isinstance(items, list) or not items:
        raise MalformedRequestError(
            'feedback must be {"id": ..., "label": ...} or {"feedback": [...]}',
            hint="send the request id the answer carried (its `id` or X-Request-Id header) and "
            "the true label",
        )
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item or "label" not in item:
            raise MalformedRequestError(
                f"feedback item {index} needs an `id` and a `label`",
                hint='e.g. {"id": "<request id>", "label": 1}',
            )
    return items


def feedback(
    recorder: ServingRecorder | None,
    name: str,
    payload: Any,
    *,
    inference_log: InferenceLogger | None = None,
) -> dict[str, Any]:
    """Record labels that came back for earlier answers; what was recorded and what is unknown.

    ``payload`` is ``{"id": ..., "label": ...}`` (``label`` a list for a multi-row request), or
    ``{"feedback": [{"id": ..., "label": ...}, ...]}``. With an inference log, every label is
    also logged for monitoring, which joins it to the logged request by id, whichever replica
    answered it; an id this replica does not know is then not an error.

    Raises:
        MalformedRequestError: the payload has another shape.
        ValidationError: a label count differs from the answer's row count.
        NotFoundError: no id is known to this server.
    """
    items = _feedback_items(payload)
    recorded = 0
    logged = 0
    unknown: list[str] = []
    for index, item in enumerate(items):
        found = recorder.recall(str(item["id"])) if recorder is not None else None
        if found is None or found.model != name:
            unknown.append(str(item["id"]))
            continue
        labels = item["label"] if isinstance(item["label"], list) else [item["label"]]
        if len(labels) != len(found.predicted):
            raise ValidationError(
                f"feedback item {index} has {len(labels)} labels for an answer of "
                f"{len(found.predicted)} rows",
                hint="send one label per row of the request, in order",
            )
        assert recorder is not None
        telemetry = recorder.telemetry(found.model, found.version, found.role)
        for label, predicted in zip(labels, found.predicted, strict=True):
            if isinstance(predicted, float) and isinstance(label, int | float):
                telemetry.record_feedback(abs_error=abs(float(label) - predicted))
            else:
                telemetry.record_feedback(correct=_equal(label, predicted))
            recorded += 1
    if inference_log is not None:  # once every item is known good: nothing logged half-way
        for item in items:
            logged += inference_log.log_labels(name, str(item["id"]), item["label"])
    if not recorded and unknown and inference_log is None:
        raise NotFoundError(
            f"no answer with id {unknown[0]!r} is known to this server",
            hint="feedback goes to the replica that answered, within its last 100,000 answers",
        )
    result: dict[str, Any] = {"recorded": recorded, "unknown": unknown}
    if inference_log is not None:
        result["logged"] = logged
    return result


def _equal(label: Any, predicted: Any) -> bool:
    if isinstance(predicted, bool) or isinstance(label, bool):
        return bool(label) == bool(predicted)
    if isinstance(predicted, int | float) and isinstance(label, int | float):
        return float(label) == float(predicted)
    return str(label) == str(predicted)
