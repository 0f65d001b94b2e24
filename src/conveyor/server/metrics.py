"""The inference server's Prometheus metrics, served at ``GET /metrics``.

Names follow Prometheus' conventions: the ``conveyor_inference_`` prefix, base units in the name
(``_seconds``), ``_total`` on counters (added by the client library). Labels take few values:
the model, its version and the HTTP status code; never a request id or anything else a client
chooses freely. A request for a model this server does not know is counted under the model
``"_unknown"``, so a scan of made-up names cannot add series::

    conveyor_inference_requests_total{model,version,status}         counter
    conveyor_inference_request_duration_seconds{model,version}      histogram
    conveyor_inference_batch_size{model,version}                    histogram (requests per call)
    conveyor_inference_requests_in_flight{model}                    gauge
    conveyor_inference_prediction{model,version}                    histogram over [0, 1]
    conveyor_inference_canary_fallbacks_total{model,version}        counter (canary failed,
                                                                    stable answered instead)
    conveyor_inference_shadow_requests_total{model,version,outcome} counter (outcome: agreed,
                                                                    differed, error, timeout,
                                                                    dropped)

The last one holds the probability of the positive class of binary classifiers, one
observation per row, so a shift in what a model predicts shows on a dashboard before any label
arrives. A batch adds its rows with one numpy call under a lock, not one call per row.

Each application has its own :class:`~prometheus_client.CollectorRegistry`, not the process-wide
one, so several apps in one process (tests, a pinned and a production server) do not collide.
Recording is a dictionary look-up and an addition under a lock: microseconds, safe both on the
event loop and in the worker threads that run batches.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import numpy.typing as npt
    from prometheus_client.metrics_core import Metric

__all__ = ["CONTENT_TYPE", "UNKNOWN_MODEL", "ServerMetrics"]

#: The media type of :meth:`ServerMetrics.exposition`: Prometheus' text format 0.0.4.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: The ``model`` label of requests for a model this server does not know.
UNKNOWN_MODEL = "_unknown"

#: Request latency buckets, seconds: a sub-millisecond answer up to a stalled 10 s one.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Requests per ``predict`` call: powers of two up to the batcher's row limit.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Upper bounds of the prediction histogram's buckets: tenths of [0, 1].
PREDICTION_BUCKETS = tuple(round(0.1 * i, 1) for i in range(11))


class ServerMetrics:
    """The metrics of one inference server application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "conveyor_inference_requests",
            "Inference requests answered, by model, version and HTTP status code.",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "conveyor_inference_request_duration_seconds",
            "Time from receiving an inference request to its answer.",
            ["model", "version"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._batch_size = Histogram(
            "conveyor_inference_batch_size",
            "Requests answered by one predict call of the model.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "conveyor_inference_requests_in_flight",
            "Inference requests received and not yet answered.",
            ["model"],
            registry=self.registry,
        )
        self._predictions = _PredictionHistogram(
            "conveyor_inference_prediction",
            "Predicted probability of the positive class, one observation per row.",
        )
        self.registry.register(self._predictions)
        self._fallbacks = Counter(
            "conveyor_inference_canary_fallbacks",
            "Requests a canary version failed to answer, answered by the stable version instead.",
            ["model", "version"],
            registry=self.registry,
        )
        self._shadow = Counter(
            "conveyor_inference_shadow_requests",
            "Requests mirrored to a shadow version, by outcome of the comparison.",
            ["model", "version", "outcome"],
            registry=self.registry,
        )

    def canary_fallback(self, model: str, version: int) -> None:
        """Count a request the canary ``version`` failed and the stable version answered."""
        self._fallbacks.labels(model, str(version)).inc()

    def shadow_outcome(self, model: str, version: int, outcome: str) -> None:
        """Count a mirrored request by its outcome (``agreed``, ``differed``, ``error``,
        ``timeout`` or ``dropped``)."""
        self._shadow.labels(model, str(version), outcome).inc()

    def request_started(self, model: str) -> None:
        """Count a request for ``model`` as in flight."""
        self._in_flight.labels(model).inc()

    def request_finished(self, model: str) -> None:
        """The request counted by :meth:`request_started` is answered."""
        self._in_flight.labels(model).dec()

    def observe_request(self, model: str, version: str, status: int, seconds: float) -> None:
        """Record an answered request: its status code and how long it took."""
        self._requests.labels(model, version, str(status)).inc()
        self._duration.labels(model, version).observe(seconds)

    def observe_batch(
        self, model: str, version: int, requests: int, outputs: Mapping[str, Any]
    ) -> None:
        """Record one ``predict`` call: how many requests it answered, and what it predicted.

        Only a 1-D ``predict_proba`` (a binary classifier's positive class) feeds the
        prediction histogram; other outputs are not probabilities.
        """
        label = str(version)
        self._batch_size.labels(model, label).observe(requests)
        proba = outputs.get("predict_proba")
        if proba is not None and np.ndim(proba) == 1:
            self._predictions.observe_many((model, label), np.asarray(proba, dtype=np.float64))

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _Counts:
    """One label set's bucket counts (not cumulative), sum and lock."""

    __slots__ = ("buckets", "lock", "total")

    def __init__(self, size: int) -> None:
        self.buckets = np.zeros(size, dtype=np.int64)
        self.total = 0.0
        self.lock = threading.Lock()


class _PredictionHistogram:
    """A histogram that takes a whole array of observations at once.

    ``prometheus_client.Histogram.observe`` takes one value, so a batch of 1,024 rows would
    cost a thousand Python calls; here a batch is one ``searchsorted`` and one ``bincount``.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = np.asarray(PREDICTION_BUCKETS, dtype=np.float64)
        self._series: dict[tuple[str, str], _Counts] = {}
        self._lock = threading.Lock()

    def observe_many(self, labels: tuple[str, str], values: npt.NDArray[np.float64]) -> None:
        counts = self._series.get(labels)
        if counts is None:
            with self._lock:
                counts = self._series.setdefault(labels, _Counts(len(self._bounds) + 1))
        # The first bound >= each value is its bucket ("le"); past the last bound is +Inf.
        index = np.searchsorted(self._bounds, values, side="left")
        added = np.bincount(index, minlength=len(self._bounds) + 1)
        total = float(values.sum())
        with counts.lock:
            counts.buckets += added
            counts.total += total

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=["model", "version"])]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=["model", "version"])
        with self._lock:
            series = list(self._series.items())
        for labels, counts in series:
            with counts.lock:
                cumulative = np.cumsum(counts.buckets).tolist()
                total = counts.total
            bounds = [*(str(b) for b in PREDICTION_BUCKETS), "+Inf"]
            family.add_metric(list(labels), list(zip(bounds, cumulative, strict=True)), total)
        yield family
