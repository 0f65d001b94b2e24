"""Inference logging: what the server answered, sampled, queued, written in the background.

Serving must never wait on monitoring, so :meth:`InferenceLogger.log` does three cheap things
on the request path: a sampling draw, building one small tuple, and ``put_nowait`` on a bounded
queue. When the queue is full (the writer is slow or stalled) the record is dropped and counted
rather than blocking the request. A daemon thread drains the queue in batches and writes one
Parquet file per model and time window::

    <root>/<model>/<yyyy-mm-dd>/<window-start>-<uuid>.parquet

Window files are immutable (written to a temporary name, then renamed), so readers never see a
half-written file, and several server processes can log into the same root without locks.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import math
import os
import random
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.clock import utcnow
from conveyor.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import pandas as pd

__all__ = [
    "DEFAULT_LOG_DIR",
    "LABELS_DIR",
    "InferenceLogger",
    "LogCounters",
    "read_labels",
    "read_log",
    "window_start",
]

logger = logging.getLogger(__name__)

#: Under the project's state folder (``.conveyor/``).
DEFAULT_LOG_DIR = "inference-log"
#: The longest time span of one file: readers skip files that start earlier than this before
#: the span they read, without opening them.
MAX_FILE_WINDOW = dt.timedelta(hours=1)
_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class LogCounters:
    """What the logger did with the records offered to it so far."""

    logged: int
    dropped: int
    sampled_out: int
    written: int
    write_errors: int


# (at, model, version, request_id, inputs, outputs, latency_s): one answered request; or, with
# inputs _LABELS and outputs the labels, outcomes that came back for one.
_Record = tuple[dt.datetime, str, int | None, str, Any, Any, float]
_LABELS = object()
#: The folder of outcomes under a model's folder: not a date, so request readers skip it.
LABELS_DIR = "labels"


class InferenceLogger:
    """Sampled, bounded, non-blocking logging of inference inputs and outputs to Parquet.

    Args:
        root: The folder of the log (``<project>/.conveyor/inference-log`` by default).
        sample_rate: The share of requests logged, in [0, 1].
        queue_size: Records waiting for the writer at most; more are dropped.
        batch_size: Records written per batch at most.
        flush_interval_s: The writer writes at least this often while records wait.
        window: The time span of one file.
        clock: Now, in UTC; injectable so a simulation can replay hours of traffic.
        seed: Seed of the sampling draws (reproducible tests).

    Raises:
        ConfigError: a rate, size or interval out of range.
    """

    def __init__(
        self,
        root: Path,
        *,
        sample_rate: float = 1.0,
        queue_size: int = 10_000,
        batch_size: int = 1_000,
        flush_interval_s: float = 1.0,
        window: dt.timedelta = dt.timedelta(minutes=5),
        clock: Callable[[], dt.datetime] = utcnow,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ConfigError(
                f"inference log sample rate {sample_rate!r} is not in [0, 1]",
                hint="e.g. `sample_rate: 0.1` logs one request in ten",
            )
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ConfigError(
                "inference log queue size, batch size and flush interval must be positive",
                hint="e.g. `queue_size: 10000, batch_size: 1000, flush_interval_s: 1`",
            )
        if not dt.timedelta(0) < window <= MAX_FILE_WINDOW:
            raise ConfigError(
                f"inference log window {window} is not between 0 and {MAX_FILE_WINDOW}",
                hint="e.g. 5 minutes",
            )
        self.root = Path(root)
        self.sample_rate = sample_rate
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.window = window
        self._clock = clock
        self._random = random.Random(seed).random  # noqa: S311 (sampling, not security)
        self.queue_size = queue_size
        # A deque, not a queue.Queue: append and len are single atomic operations under the GIL
        # (~0.1 us), where Queue.put takes a lock and notifies a condition, waking the writer
        # thread on every request and making the request path contend with it.
        self._buffer: collections.deque[_Record] = collections.deque()
        self._wake = threading.Event()
        self._flushes: list[threading.Event] = []
        self._logged = 0
        self._dropped = 0
        self._sampled_out = 0
        self._written = 0
        self._errors = 0
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="conveyor-inference-log", daemon=True
        )
        self._thread.start()

    # -- the request path ------------------------------------------------------------------------

    def log(
        self,
        model: str,
        version: int | None,
        request_id: str,
        inputs: Any,
        outputs: Any,
        latency_s: float,
    ) -> bool:
        """Offer one answered request; never blocks. Returns whether it was queued.

        ``inputs`` is a DataFrame, one row mapping or a list of them; ``outputs`` one prediction
        per row (or a scalar for one row). They are converted by the writer thread, not here.
        The length check and the append are not one atomic step, so concurrent callers may
        overshoot ``queue_size`` by a few records; counters are updated without a lock and may
        lose a count under contention. Both are fine for monitoring, and a lock on the request
        path would not be.
        """
        if self._closed:
            self._dropped += 1
            return False
        if self.sample_rate < 1.0 and self._random() >= self.sample_rate:
            self._sampled_out += 1
            return False
        if len(self._buffer) >= self.queue_size:
            self._dropped += 1
            return False
        self._buffer.append((self._clock(), model, version, request_id, inputs, outputs, latency_s))
        self._logged += 1
        return True

    def log_labels(self, model: str, request_id: str, labels: Any) -> bool:
        """Offer the outcomes that came back for an earlier answer (the ``feedback`` endpoint);
        never blocks, is never sampled out (a label is rarer and worth more than a request).

        ``labels`` is one label, or a list with one per row of the request; a row's label is
        then joined to the logged row ``<request_id>:<i>``, as :meth:`log` names them.
        """
        if self._closed or len(self._buffer) >= self.queue_size:
            self._dropped += 1
            return False
        self._buffer.append((self._clock(), model, None, request_id, _LABELS, labels, 0.0))
        self._logged += 1
        return True

    @property
    def counters(self) -> LogCounters:
        return LogCounters(
            self._logged, self._dropped, self._sampled_out, self._written, self._errors
        )

    # -- the writer thread -----------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything logged before this call is written; False on timeout.

        For tests, simulations and shutdown; the request path never calls it.
        """
        if self._closed:
            return True
        done = threading.Event()
        self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> LogCounters:
        """Write everything queued, stop the writer, and return the final counters."""
        if not self._closed:
            self._closed = True
            self._wake.set()
            self._thread.join(timeout)
        return self.counters

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            # Take the flush requests before draining: whatever was logged before a request
            # is in the buffer now, so it is written before the request is answered.
            flushes, self._flushes = self._flushes, []
            stopping = self._closed
            self._drain()
            for done in flushes:
                done.set()
            if stopping:
                self._drain()
                return

    def _drain(self) -> None:
        while self._buffer:
            batch: list[_Record] = []
            while self._buffer and len(batch) < self.batch_size:
                batch.append(self._buffer.popleft())
            self._flush(batch)

    def _flush(self, batch: list[_Record]) -> None:
        if not batch:
            return
        try:
            groups: dict[tuple[str, dt.datetime, bool], list[dict[str, Any]]] = {}
            for at, model, version, request_id, inputs, outputs, latency in batch:
                start = window_start(at, self.window)
                labels = inputs is _LABELS
                groups.setdefault((model, start, labels), []).extend(
                    _label_rows(at, request_id, outputs)
                    if labels
                    else _rows(at, model, version, request_id, inputs, outputs, latency)
                )
            for (model, start, labels), rows in groups.items():
                self._write(model, start, rows, labels=labels)
            self._written += len(batch)
        except Exception:  # the writer must survive any bad record; the error is counted
            self._errors += len(batch)
            logger.exception("inference log batch of %d records not written", len(batch))

    def _write(
        self, model: str, start: dt.datetime, rows: list[dict[str, Any]], *, labels: bool = False
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = self.root / model / (LABELS_DIR if labels else "") / start.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{start.strftime(_STAMP)}-{uuid.uuid4().hex}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, folder / name)


def window_start(at: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """The start of the window of length ``window`` holding ``at`` (windows align to the epoch)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((at - epoch) // window) * window


def _rows(
    at: dt.datetime,
    model: str,
    version: int | None,
    request_id: str,
    inputs: Any,
    outputs: Any,
    latency: float,
) -> list[dict[str, Any]]:
    """One log row per input row; features are prefixed ``in.``, so no feature name collides
    with the bookkeeping columns."""
    if hasattr(inputs, "to_dict"):
        records: Sequence[Any] = inputs.to_dict(orient="records")
    elif isinstance(inputs, dict):
        records = [inputs]
    else:
        records = list(inputs)
    if hasattr(outputs, "tolist"):
        outputs = outputs.tolist()
    if not isinstance(outputs, list | tuple):
        outputs = [outputs]
    if len(outputs) != len(records):
        raise ValueError(f"{len(records)} input rows but {len(outputs)} outputs")
    rows = []
    for i, (record, output) in enumerate(zip(records, outputs, strict=True)):
        row: dict[str, Any] = {
            "at": at,
            "model": model,
            "version": version,
            "request_id": request_id if len(records) == 1 else f"{request_id}:{i}",
            "latency_s": latency,
            "prediction": _scalar(output),
        }
        row.update({f"in.{k}": _scalar(v) for k, v in record.items()})
        rows.append(row)
    return rows


def _label_rows(at: dt.datetime, request_id: str, labels: Any) -> list[dict[str, Any]]:
    if hasattr(labels, "tolist"):
        labels = labels.tolist()
    if isinstance(labels, list | tuple):
        return [
            {"at": at, "request_id": f"{request_id}:{i}", "label": _scalar(label)}
            for i, label in enumerate(labels)
        ]
    return [{"at": at, "request_id": request_id, "label": _scalar(labels)}]


def _overlaps(path: Path, start: dt.datetime, end: dt.datetime) -> bool:
    try:
        opened = dt.datetime.strptime(path.name.split("-", 1)[0], _STAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        return True  # not named by us: read it rather than silently miss rows
    return start - MAX_FILE_WINDOW < opened < end


def _scalar(value: Any) -> Any:
    if type(value).__name__ == "NAType":  # pandas' missing value in nullable integer columns
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None  # a null; NaN would make a text column unwritable
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


def read_log(root: Path, model: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """The logged rows of ``model`` with ``start <= at < end``, oldest first.

    Features come back without their ``in.`` prefix; ``at``, ``version``, ``request_id``,
    ``latency_s`` and ``prediction`` keep their names. Only files whose window (from their name)
    can overlap the span are opened, so reading the newest window stays cheap as a day's files
    pile up.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    files: list[Path] = []
    day = start.date()
    while day <= end.date():
        folder = Path(root) / model / day.strftime("%Y-%m-%d")
        if folder.is_dir():
            files.extend(f for f in sorted(folder.glob("*.parquet")) if _overlaps(f, start, end))
        day += dt.timedelta(days=1)
    if not files:
        return pd.DataFrame(columns=["at", "version", "request_id", "latency_s", "prediction"])
    tables = [pq.read_table(f) for f in files]
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    at = pd.to_datetime(frame["at"], utc=True)
    frame = frame[(at >= start) & (at < end)].sort_values("at", kind="stable")
    frame = frame.rename(columns={c: c[3:] for c in frame.columns if c.startswith("in.")})
    return frame.drop(columns=["model"]).reset_index(drop=True)


def read_labels(root: Path, model: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """The outcomes of ``model`` that arrived with ``start <= at < end``: ``request_id``,
    ``label`` and ``at``, the latest label of each request id only."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    files: list[Path] = []
    day = start.date()
    while day <= end.date():
        folder = Path(root) / model / LABELS_DIR / day.strftime("%Y-%m-%d")
        if folder.is_dir():
            files.extend(f for f in sorted(folder.glob("*.parquet")) if _overlaps(f, start, end))
        day += dt.timedelta(days=1)
    if not files:
        return pd.DataFrame(columns=["request_id", "label", "at"])
    frame = pa.concat_tables(
        [pq.read_table(f) for f in files], promote_options="default"
    ).to_pandas()
    at = pd.to_datetime(frame["at"], utc=True)
    frame = frame[(at >= start) & (at < end)].sort_values("at", kind="stable")
    return frame.drop_duplicates("request_id", keep="last").reset_index(drop=True)
