"""Serving telemetry for rollouts: per-version windows written to the metadata store, and
feedback (labels that come back later) joined to the answers they judge.

Every request a served version answers is recorded in its :class:`~conveyor.deploy.telemetry.
Telemetry` (latency, status; the batcher records the predictions). About once a second
:meth:`ServingRecorder.flush` takes every accumulator's window and appends it to the
``serving_window`` table, which the rollout controller reads (:mod:`conveyor.deploy.controller`).
A flush that cannot reach the store keeps its windows (up to :data:`MAX_PENDING`) and sends
them with the next one, so a short outage loses no evidence and a long one cannot grow memory
without bound (the oldest windows go first).

Feedback: the answers of the last :data:`MAX_REMEMBERED` requests are remembered by request id
(the version that answered, and its predicted label or value). ``POST .../feedback`` with the
request id and the true label records whether that answer was right in that version's
telemetry. A replica only knows the requests it answered itself; feedback for another
replica's request is reported as unknown (send feedback to the replica that answered, e.g.
through a sticky load balancer, or log labels in bulk with the monitoring of a later release).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.clock import utcnow
from conveyor.core.errors import ConveyorError
from conveyor.deploy.telemetry import Telemetry

if TYPE_CHECKING:
    from collections.abc import Collection

    from conveyor.store.metadata import MetadataStore

__all__ = ["MAX_PENDING", "MAX_REMEMBERED", "Remembered", "ServingRecorder"]

logger = logging.getLogger(__name__)

#: Windows kept while the store cannot be written (about ten minutes of one version's windows).
MAX_PENDING = 2000
#: Answers remembered for feedback, most recent first out when full.
MAX_REMEMBERED = 100_000
#: Reservoir size per window: enough for a rank test per second of traffic, and it keeps a busy
#: window near 12 KB of JSON (512 would double it; the controller caps merged samples anyway).
SAMPLE_SIZE = 256
#: Windows older than this are pruned on the first flush after it has passed since the last.
_PRUNE_EVERY = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Remembered:
    """What a request was answered with, kept for its feedback."""

    model: str
    version: int
    role: str
    # One per row: the predicted label (classification) or value (regression).
    predicted: tuple[Any, ...]


class ServingRecorder:
    """Every served version's telemetry accumulators, and the answers kept for feedback.

    Thread-safe: handlers on the event loop and batches in worker threads record into it.
    """

    def __init__(self, replica: str | None = None) -> None:
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"[:64]
        self._lock = threading.Lock()
        self._telemetry: dict[tuple[str, int, str], Telemetry] = {}
        self._started = utcnow()
        self._pending: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_PENDING)
        self._answers: collections.OrderedDict[str, Remembered] = collections.OrderedDict()
        self._last_prune: dt.datetime | None = None

    def telemetry(self, model: str, version: int, role: str) -> Telemetry:
        """The accumulator of ``model`` v``version`` in ``role`` (made on first use)."""
        key = (model, version, role)
        found = self._telemetry.get(key)
        if found is None:
            with self._lock:
                found = self._telemetry.setdefault(key, Telemetry(sample_size=SAMPLE_SIZE))
        return found

    # -- feedback ------------------------------------------------------------------------------

    def remember(self, request_id: str, answer: Remembered) -> None:
        with self._lock:
            self._answers[request_id] = answer
            self._answers.move_to_end(request_id)
            while len(self._answers) > MAX_REMEMBERED:
                self._answers.popitem(last=False)

    def recall(self, request_id: str) -> Remembered | None:
        with self._lock:
            return self._answers.get(request_id)

    # -- flushing (worker thread) --------------------------------------------------------------

    def collect(self, models: Collection[str] | None = None) -> int:
        """Close the current window of every accumulator; how many windows are waiting.

        Args:
            models: Keep windows of these models only (those with a rollout in progress: a
                window nobody analyses is not worth a write); the others are dropped.
        """
        ended = utcnow()
        with self._lock:
            started, self._started = self._started, ended
            items = list(self._telemetry.items())
        for (model, version, role), telemetry in items:
            summary = telemetry.snapshot_and_reset()
            if summary is None or (models is not None and model not in models):
                continue
            self._pending.append(
                {
                    "model": model,
                    "version": version,
                    "role": role,
                    "started_at": started,
                    "ended_at": ended,
                    "summary": summary.to_json(),
                }
            )
        return len(self._pending)

    def flush(self, store: MetadataStore, models: Collection[str] | None = None) -> int:
        """Collect (see :meth:`collect`) and write the windows; how many were written (0 when
        the store failed: they stay for the next flush)."""
        from conveyor.deploy.state import record_windows

        self.collect(models)
        windows = list(self._pending)
        now = utcnow()
        prune = self._last_prune is None or now - self._last_prune > _PRUNE_EVERY
        if not windows and not prune:
            return 0
        try:
            record_windows(store, self.replica, windows, prune=prune)
        except ConveyorError as exc:
            logger.warning("could not write %d serving windows, will retry: %s", len(windows), exc)
            return 0
        for _ in windows:
            self._pending.popleft()
        if prune:
            self._last_prune = now
        return len(windows)
