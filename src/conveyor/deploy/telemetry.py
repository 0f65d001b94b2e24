"""Per-version serving telemetry: what a canary analysis reads, kept small enough to store often.

A server (there may be several replicas) keeps one :class:`Telemetry` per (model, version, role),
role being ``"stable"``, ``"canary"`` or ``"shadow"``. Request handlers on the event loop and
model calls on worker threads record into it; about once a second the server calls
:meth:`Telemetry.snapshot_and_reset` and writes the :class:`WindowSummary` to the metadata store
(:meth:`WindowSummary.to_json`). The rollout controller reads every window written since a step
began, from every replica, and combines them with :meth:`WindowSummary.merge` before it analyses
them (``conveyor.deploy.analysis``).

So everything in a window must be *mergeable*:

- **Counts** (requests, server errors, predictions, labelled outcomes, shadow comparisons) and
  sums add up.
- **Latency** goes into a histogram on fixed bucket bounds (:data:`LATENCY_BOUNDS_S`, 24 buckets
  a decade from 1 ms to ~62 s, each bound 10% above the last), the same on every replica, so
  histograms add bucket by bucket and a p99 of the merged step is exact up to the bucket
  (:meth:`WindowSummary.latency_quantile` interpolates linearly inside it). A 10% bucket is
  finer than any latency margin worth deploying on (the default is 20%).
- **Samples** of raw values (latencies for a rank test, predictions for a drift test, shadow
  differences) are bounded uniform reservoirs (Algorithm R): a window holds at most
  ``sample_size`` values however busy the server is, each value of the window equally likely to
  be kept. Windows are merged so that the result is again a uniform sample of *all* the windows'
  values (see :meth:`WindowSummary.merge`).

What is recorded, and what it means:

- ``record_request``: one answered request. A status >= 500 is a *server error*, held against the
  version; a 4xx is a *client error* (a malformed request fails the same way on any version), so
  it is counted but not held against the version: the error rate is server errors over requests
  that were not client errors.
- ``record_predictions``: the values the version returned, one per row: a binary classifier's
  positive-class score, a regression value, or, for a multiclass classifier, the predicted class
  *index* (integers; the analysis treats integer-valued predictions with few distinct values as
  categories and compares their frequencies rather than a distribution function, since class
  indices have no order).
- ``record_feedback``: a labelled outcome joined back to a prediction: whether it was correct
  (classification) and/or its absolute error (regression).
- ``record_shadow``: one comparison of the primary's answer with the shadow's: whether they
  agree, the absolute difference, the shadow's latency, and whether the shadow failed or timed
  out.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "LATENCY_BOUNDS_S",
    "MERGED_SAMPLE_CAP",
    "ROLES",
    "SAMPLE_SIZE",
    "Telemetry",
    "WindowSummary",
]

#: Roles a version can play in a deployment.
ROLES = ("stable", "canary", "shadow")
#: Upper bounds (seconds, inclusive) of the latency buckets: 1 ms * 10^(i/24), i = 0..115, so 1 ms
#: to ~62 s with every bound ~10% above the last. Bucket 0 holds [0, 1 ms], bucket i holds
#: (bound[i-1], bound[i]], the last bucket (index len(bounds)) everything above ~62 s. Changing
#: these makes stored windows unreadable (their histograms no longer line up); the JSON carries
#: :data:`_FORMAT` to say which bounds it was written with.
LATENCY_BOUNDS_S: tuple[float, ...] = tuple(1e-3 * 10 ** (i / 24) for i in range(116))
#: Reservoir size of one window, per sample (latencies, predictions, shadow differences).
SAMPLE_SIZE = 512
#: Largest sample a merge keeps; a rank test on 5,000 values per side already resolves a
#: latency shift of a few percent, and it stays fast (Mann-Whitney U on 5,000 x 5,000: ~5 ms).
MERGED_SAMPLE_CAP = 5000

_FORMAT = 1
_MAX_PREDICTION = 1e150
_BUCKETS = len(LATENCY_BOUNDS_S) + 1


def _bucket(latency_s: float) -> int:
    # bisect_left finds the first bound >= latency: bounds are inclusive upper edges.
    return bisect.bisect_left(LATENCY_BOUNDS_S, latency_s)


class _Reservoir:
    """Algorithm R: after n offers, each offered value is held with probability k/n."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.seen = 0
        self.values: list[float] = []
        self._rng = rng

    def offer(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value

    def reset(self) -> None:
        self.seen = 0
        self.values = []


class Telemetry:
    """Thread-safe accumulator of one (model, version, role) between two snapshots.

    Args:
        sample_size: Reservoir size of each sample in a window.
        seed: Seed of the reservoir's own random generator (sampling never touches the global
            ``random`` state); ``None`` seeds it from the operating system.

    Every ``record_*`` method takes one lock for a few microseconds; they may be called from the
    event loop and from worker threads at once.
    """

    def __init__(self, sample_size: int = SAMPLE_SIZE, seed: int | None = None) -> None:
        if sample_size < 1:
            raise ValueError(f"sample_size must be >= 1, not {sample_size}")
        self._lock = threading.Lock()
        # Sampling, not secrecy: a seeded generator of its own keeps tests reproducible.
        rng = random.Random(seed)  # noqa: S311
        self._latencies = _Reservoir(sample_size, rng)
        self._predictions = _Reservoir(sample_size, rng)
        self._diffs = _Reservoir(sample_size, rng)
        self._reset()

    def _reset(self) -> None:
        self._requests = 0
        self._server_errors = 0
        self._client_errors = 0
        self._histogram = [0] * _BUCKETS
        self._latency_sum = 0.0
        self._latency_min = math.inf
        self._latency_max = -math.inf
        self._latencies.reset()
        self._prediction_sum = 0.0
        self._prediction_sum_sq = 0.0
        self._predictions.reset()
        self._labels = 0
        self._correct = 0
        self._abs_errors = 0
        self._abs_error_sum = 0.0
        self._abs_error_sum_sq = 0.0
        self._shadow_comparisons = 0
        self._shadow_agreements = 0
        self._shadow_errors = 0
        self._shadow_timeouts = 0
        self._shadow_histogram = [0] * _BUCKETS
        self._diffs.reset()
        self._touched = False

    def record_request(self, latency_s: float, status: int) -> None:
        """One answered request: its latency (seconds) and HTTP status."""
        latency = max(float(latency_s), 0.0)
        with self._lock:
            self._touched = True
            self._requests += 1
            if status >= 500:
                self._server_errors += 1
            elif status >= 400:
                self._client_errors += 1
            self._histogram[_bucket(latency)] += 1
            self._latency_sum += latency
            self._latency_min = min(self._latency_min, latency)
            self._latency_max = max(self._latency_max, latency)
            self._latencies.offer(latency)

    def record_predictions(self, values: np.ndarray) -> None:
        """The values a version returned, one per row (see the module docstring for which).

        Non-finite values, and values beyond +-1e150 whose squares would overflow the sums,
        are not recorded: they would poison the statistics, and the server reports such an
        answer as a defect on its own.
        """
        array = np.asarray(values, dtype=np.float64).ravel()
        array = array[np.isfinite(array) & (np.abs(array) <= _MAX_PREDICTION)]
        if array.size == 0:
            return
        total = float(array.sum())
        total_sq = float(np.dot(array, array))
        as_list = array.tolist()
        with self._lock:
            self._touched = True
            self._prediction_sum += total
            self._prediction_sum_sq += total_sq
            for value in as_list:
                self._predictions.offer(value)

    def record_feedback(self, correct: bool | None = None, abs_error: float | None = None) -> None:
        """One labelled outcome: whether the prediction was right, and/or its absolute error."""
        if correct is None and (abs_error is None or not math.isfinite(abs_error)):
            return
        with self._lock:
            self._touched = True
            if correct is not None:
                self._labels += 1
                self._correct += int(bool(correct))
            if abs_error is not None and math.isfinite(abs_error):
                error = abs(float(abs_error))
                self._abs_errors += 1
                self._abs_error_sum += error
                self._abs_error_sum_sq += error * error

    def record_shadow(
        self,
        agree: bool,
        abs_diff: float | None,
        shadow_latency_s: float | None,
        error: bool,
        timed_out: bool,
    ) -> None:
        """One comparison of the primary's answer with the shadow's.

        Args:
            agree: Whether the two answers agree (same class; within tolerance for a regression).
            abs_diff: The absolute difference of the two answers (mean over rows), if both came.
            shadow_latency_s: How long the shadow took, if it answered.
            error: The shadow failed (raised or answered with an error).
            timed_out: The shadow did not answer in time.
        """
        with self._lock:
            self._touched = True
            self._shadow_comparisons += 1
            self._shadow_agreements += int(bool(agree))
            self._shadow_errors += int(bool(error))
            self._shadow_timeouts += int(bool(timed_out))
            if abs_diff is not None and math.isfinite(abs_diff):
                self._diffs.offer(abs(float(abs_diff)))
            if shadow_latency_s is not None and math.isfinite(shadow_latency_s):
                self._shadow_histogram[_bucket(max(float(shadow_latency_s), 0.0))] += 1

    def snapshot_and_reset(self) -> WindowSummary | None:
        """The window since the last snapshot, and start a new one; None if nothing was recorded."""
        with self._lock:
            if not self._touched:
                return None
            summary = WindowSummary(
                requests=self._requests,
                server_errors=self._server_errors,
                client_errors=self._client_errors,
                latency_histogram=tuple(self._histogram),
                latency_sum_s=self._latency_sum,
                latency_min_s=self._latency_min if self._requests else None,
                latency_max_s=self._latency_max if self._requests else None,
                latency_sample=tuple(self._latencies.values),
                predictions=self._predictions.seen,
                prediction_sum=self._prediction_sum,
                prediction_sum_sq=self._prediction_sum_sq,
                prediction_sample=tuple(self._predictions.values),
                labels=self._labels,
                correct=self._correct,
                abs_errors=self._abs_errors,
                abs_error_sum=self._abs_error_sum,
                abs_error_sum_sq=self._abs_error_sum_sq,
                shadow_comparisons=self._shadow_comparisons,
                shadow_agreements=self._shadow_agreements,
                shadow_errors=self._shadow_errors,
                shadow_timeouts=self._shadow_timeouts,
                shadow_latency_histogram=tuple(self._shadow_histogram),
                shadow_diffs=self._diffs.seen,
                shadow_diff_sample=tuple(self._diffs.values),
            )
            self._reset()
        return summary


_EMPTY_HISTOGRAM = (0,) * _BUCKETS


@dataclass(frozen=True)
class WindowSummary:
    """Everything one version recorded over one window (or over merged windows).

    Attributes:
        requests: Answered requests.
        server_errors: Requests answered with a status >= 500.
        client_errors: Requests answered with a 4xx (not held against the version).
        latency_histogram: Request counts per bucket of :data:`LATENCY_BOUNDS_S`.
        latency_sum_s: Sum of all latencies, seconds.
        latency_min_s: Lowest latency, or None without requests.
        latency_max_s: Highest latency, or None without requests.
        latency_sample: A uniform sample of the latencies (seconds).
        predictions: Prediction values recorded.
        prediction_sum: Their sum.
        prediction_sum_sq: The sum of their squares.
        prediction_sample: A uniform sample of them.
        labels: Labelled outcomes saying whether a prediction was correct.
        correct: How many of those were correct.
        abs_errors: Labelled outcomes with an absolute error (regression).
        abs_error_sum: Sum of those absolute errors.
        abs_error_sum_sq: Sum of their squares.
        shadow_comparisons: Comparisons of the primary's answer with the shadow's.
        shadow_agreements: Comparisons where they agreed.
        shadow_errors: Comparisons where the shadow failed.
        shadow_timeouts: Comparisons where the shadow did not answer in time.
        shadow_latency_histogram: Shadow latencies per bucket of :data:`LATENCY_BOUNDS_S`.
        shadow_diffs: Absolute differences recorded.
        shadow_diff_sample: A uniform sample of them.
    """

    requests: int = 0
    server_errors: int = 0
    client_errors: int = 0
    latency_histogram: tuple[int, ...] = _EMPTY_HISTOGRAM
    latency_sum_s: float = 0.0
    latency_min_s: float | None = None
    latency_max_s: float | None = None
    latency_sample: tuple[float, ...] = ()
    predictions: int = 0
    prediction_sum: float = 0.0
    prediction_sum_sq: float = 0.0
    prediction_sample: tuple[float, ...] = ()
    labels: int = 0
    correct: int = 0
    abs_errors: int = 0
    abs_error_sum: float = 0.0
    abs_error_sum_sq: float = 0.0
    shadow_comparisons: int = 0
    shadow_agreements: int = 0
    shadow_errors: int = 0
    shadow_timeouts: int = 0
    shadow_latency_histogram: tuple[int, ...] = _EMPTY_HISTOGRAM
    shadow_diffs: int = 0
    shadow_diff_sample: tuple[float, ...] = ()

    # ------------------------------------------------------------------ derived numbers

    @property
    def valid_requests(self) -> int:
        """Requests that were not client errors: the denominator of the error rate."""
        return self.requests - self.client_errors

    @property
    def error_rate(self) -> float | None:
        """Server errors over valid requests, or None without any."""
        valid = self.valid_requests
        return self.server_errors / valid if valid > 0 else None

    @property
    def prediction_mean(self) -> float | None:
        """Mean of all prediction values recorded, or None without any."""
        return self.prediction_sum / self.predictions if self.predictions else None

    @property
    def prediction_std(self) -> float | None:
        """Population standard deviation of the prediction values, or None without any."""
        if not self.predictions:
            return None
        mean = self.prediction_sum / self.predictions
        return math.sqrt(max(self.prediction_sum_sq / self.predictions - mean * mean, 0.0))

    @property
    def accuracy(self) -> float | None:
        """Share of labelled predictions that were correct, or None without labels."""
        return self.correct / self.labels if self.labels else None

    @property
    def mean_abs_error(self) -> float | None:
        """Mean absolute error over labelled regression outcomes, or None without any."""
        return self.abs_error_sum / self.abs_errors if self.abs_errors else None

    def latency_quantile(self, q: float) -> float | None:
        """The ``q`` quantile of request latency (seconds) from the histogram; None if empty."""
        return _histogram_quantile(
            self.latency_histogram, q, self.latency_min_s, self.latency_max_s
        )

    def shadow_latency_quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the shadow's latency (seconds); None if it never answered."""
        return _histogram_quantile(self.shadow_latency_histogram, q, None, None)

    # ------------------------------------------------------------------ merging

    @classmethod
    def merge(cls, summaries: Iterable[WindowSummary]) -> WindowSummary:
        """The windows combined as if one accumulator had recorded them all.

        Counts, sums and histograms add up exactly. Each window's sample is uniform *within*
        its window, but windows differ in traffic: a busy window's 512 latencies stand for 10,000
        requests, a quiet one's 50 for 50. Concatenating them would over-weight quiet windows.
        So each window contributes in proportion to how many values it saw: the merged sample
        has size ``m = min(cap, min over windows of sample_w * N / N_w)`` (the largest size for
        which no window is asked more than it holds) and window ``w`` contributes
        ``m * N_w / N`` of its values (largest remainders for the rounding), drawn without
        replacement. Every value of the union then has (up to rounding) the same chance
        ``m / N`` of being in the merged sample, so it is again a uniform sample, and merging
        merged summaries keeps that. When no window's reservoir overflowed (quiet traffic),
        nothing is dropped below the cap. The draw uses a fixed seed: the same windows give the
        same merged sample, so an analysis can be recomputed.
        """
        items = list(summaries)
        if not items:
            return cls()
        mins = [s.latency_min_s for s in items if s.latency_min_s is not None]
        maxs = [s.latency_max_s for s in items if s.latency_max_s is not None]
        rng = np.random.default_rng(0)
        return cls(
            requests=sum(s.requests for s in items),
            server_errors=sum(s.server_errors for s in items),
            client_errors=sum(s.client_errors for s in items),
            latency_histogram=_add_histograms(s.latency_histogram for s in items),
            latency_sum_s=math.fsum(s.latency_sum_s for s in items),
            latency_min_s=min(mins) if mins else None,
            latency_max_s=max(maxs) if maxs else None,
            latency_sample=_merge_samples([(s.requests, s.latency_sample) for s in items], rng),
            predictions=sum(s.predictions for s in items),
            prediction_sum=math.fsum(s.prediction_sum for s in items),
            prediction_sum_sq=math.fsum(s.prediction_sum_sq for s in items),
            prediction_sample=_merge_samples(
                [(s.predictions, s.prediction_sample) for s in items], rng
            ),
            labels=sum(s.labels for s in items),
            correct=sum(s.correct for s in items),
            abs_errors=sum(s.abs_errors for s in items),
            abs_error_sum=math.fsum(s.abs_error_sum for s in items),
            abs_error_sum_sq=math.fsum(s.abs_error_sum_sq for s in items),
            shadow_comparisons=sum(s.shadow_comparisons for s in items),
            shadow_agreements=sum(s.shadow_agreements for s in items),
            shadow_errors=sum(s.shadow_errors for s in items),
            shadow_timeouts=sum(s.shadow_timeouts for s in items),
            shadow_latency_histogram=_add_histograms(s.shadow_latency_histogram for s in items),
            shadow_diffs=sum(s.shadow_diffs for s in items),
            shadow_diff_sample=_merge_samples(
                [(s.shadow_diffs, s.shadow_diff_sample) for s in items], rng
            ),
        )

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        """The window as plain JSON types (tuples become lists); :meth:`from_json` inverts it."""
        out: dict[str, Any] = {"format": _FORMAT}
        for item in fields(self):
            value = getattr(self, item.name)
            out[item.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WindowSummary:
        """A window from :meth:`to_json`'s output, e.g. as read back from the metadata store.

        Raises:
            ValidationError: The data is not a window of this format (unknown format, missing
                or unexpected key, histogram of the wrong length).
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValidationError(
                f"telemetry window has format {found!r}; this Conveyor reads format {_FORMAT}",
                hint="servers and the rollout controller must run the same Conveyor version",
            )
        names = {item.name for item in fields(cls)}
        keys = set(data) - {"format"}
        if keys != names:
            raise ValidationError(
                "telemetry window has keys "
                f"{sorted(keys - names)} it should not have and lacks {sorted(names - keys)}",
                hint="servers and the rollout controller must run the same Conveyor version",
            )
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in data.items()
            if key != "format"
        }
        for key in ("latency_histogram", "shadow_latency_histogram"):
            if len(values[key]) != _BUCKETS:
                raise ValidationError(
                    f"telemetry window's {key} has {len(values[key])} buckets, not {_BUCKETS}",
                    hint="servers and the rollout controller must run the same Conveyor version",
                )
        return cls(**values)


def _add_histograms(histograms: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    total = [0] * _BUCKETS
    for histogram in histograms:
        for index, count in enumerate(histogram):
            total[index] += count
    return tuple(total)


def _merge_samples(
    parts: list[tuple[int, tuple[float, ...]]], rng: np.random.Generator
) -> tuple[float, ...]:
    """A uniform sample of the union of windows, each given as (values seen, its sample)."""
    parts = [(seen, sample) for seen, sample in parts if seen > 0 and sample]
    population = sum(seen for seen, _ in parts)
    if not parts:
        return ()
    size = min(
        float(MERGED_SAMPLE_CAP), *(len(sample) * population / seen for seen, sample in parts)
    )
    target = min(math.floor(size + 1e-9), MERGED_SAMPLE_CAP)
    exact = [target * seen / population for seen, _ in parts]
    counts = [
        min(math.floor(share + 1e-9), len(sample))
        for share, (_, sample) in zip(exact, parts, strict=True)
    ]
    # Largest remainders get the values the floors left out, where a window has them to give.
    order = sorted(range(len(parts)), key=lambda i: counts[i] - exact[i])
    missing = target - sum(counts)
    for index in order:
        if missing <= 0:
            break
        if counts[index] < len(parts[index][1]):
            counts[index] += 1
            missing -= 1
    merged: list[float] = []
    for count, (_, sample) in zip(counts, parts, strict=True):
        if count >= len(sample):
            merged.extend(sample)
        else:
            chosen = rng.choice(len(sample), size=count, replace=False)
            merged.extend(sample[i] for i in sorted(chosen.tolist()))
    return tuple(merged)


def _histogram_quantile(
    histogram: tuple[int, ...], q: float, low: float | None, high: float | None
) -> float | None:
    """The ``q`` quantile, interpolating linearly between the edges of the bucket it falls in.

    The value at rank ``q * n`` is found in the bucket whose cumulative count first reaches
    that rank, and placed inside the bucket as if its values were spread evenly. The edges of
    the first bucket are [min, 1 ms] and of the open last bucket [62 s, max] when the observed
    min and max are known (else 0 and the last bound).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], not {q}")
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    cumulative = 0
    for index, count in enumerate(histogram):
        if count == 0:
            continue
        if cumulative + count >= rank:
            lower = LATENCY_BOUNDS_S[index - 1] if index > 0 else 0.0
            upper = LATENCY_BOUNDS_S[index] if index < len(LATENCY_BOUNDS_S) else None
            if low is not None:
                lower = max(lower, low)
            if upper is None:
                upper = high if high is not None else LATENCY_BOUNDS_S[-1]
            elif high is not None:
                upper = min(upper, high)
            upper = max(upper, lower)
            return lower + (upper - lower) * max(rank - cumulative, 0.0) / count
        cumulative += count
    return high if high is not None else LATENCY_BOUNDS_S[-1]
