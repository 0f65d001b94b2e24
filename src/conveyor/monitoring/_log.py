"""Inference logging: what the server answered, sampled, queued, written in the background.

Serving must never wait on monitoring, so :meth:`InferenceLogger.log` does three cheap things
on the request path (about 1.5 us): a sampling draw, building one small tuple, and an append to
a bounded buffer. When the buffer is full (the writer is slow or stalled) the record is dropped
and counted rather than blocking the request. A daemon thread writes one Parquet file per model
and time window, every flush interval, and merges a window's files into one once the window
has closed, so a day of traffic is one file per window and server, not one per second::

    <root>/<model>/<yyyy-mm-dd>/<window-start>-<writer>-p<seq>.parquet   written each second
    <root>/<model>/<yyyy-mm-dd>/<window-start>-<writer>-c<seq>.parquet   the window merged

A merged file holds its writer's parts of that window up to part ``<seq>``; readers skip those
parts if they are still there (the writer deletes them after the merged file is in place).

The writer shares the GIL with the server, so what it does per record is kept to a few list
appends: every 0.1 s it joins the waiting requests column by column (one ``numpy.concatenate``
per column, no Python object per value for numbers) into an Arrow table, so it never holds the
GIL for long; files are encoded from those tables, which releases the GIL. Bench row 5 measures
a real server with logging on and off side by side.

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
import time
import uuid
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conveyor.core.clock import utcnow
from conveyor.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import pandas as pd
    import pyarrow as pa

__all__ = [
    "DEFAULT_LOG_DIR",
    "LABELS_DIR",
    "InferenceLogger",
    "LogCounters",
    "prune_log",
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


# (at, model, version, request_id, inputs, rows, outputs, latency_s): one answered request, its
# inputs as rows (rows == -1: a mapping, a DataFrame or a list of mappings) or as columns (rows
# >= 0: a mapping of 1-D arrays, ``rows`` values each); or, with inputs _LABELS and outputs the
# labels, outcomes that came back for one.
_Record = tuple[dt.datetime, str, int | None, str, Any, int, Any, float]
_LABELS = object()
_ROW_FORM = -1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
#: numpy kinds written as they are (bool, integers, floats, datetimes); others value by value.
_NATIVE_KINDS = frozenset("biufM")
#: How often the writer turns waiting records into Arrow tables (files are written less often).
CONVERT_INTERVAL_S = 0.1
# (model, window start, labels?): the records of one file.
_FileKey = tuple[str, dt.datetime, bool]
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
        retention: Day folders whose whole day ended longer ago than this are deleted by the
            writer (checked at most once an hour, by the ``clock``); None keeps everything.

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
        retention: dt.timedelta | None = None,
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
        if retention is not None and retention <= dt.timedelta(0):
            raise ConfigError(
                f"inference log retention {retention} is not positive",
                hint="e.g. `retention_days: 30`, or leave it out to keep every day",
            )
        self.root = Path(root)
        self.retention = retention
        self._pruned_at: dt.datetime | None = None
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
        self._pending: dict[_FileKey, list[tuple[pa.Table, int]]] = {}
        # Files this writer wrote, per window, not merged yet (see _compact).
        self._parts: dict[_FileKey, list[tuple[Path, int]]] = {}
        self._writer_id = uuid.uuid4().hex[:12]
        self._seq = 0
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
        return self._offer(model, version, request_id, inputs, _ROW_FORM, outputs, latency_s)

    def log_columns(
        self,
        model: str,
        version: int | None,
        request_id: str,
        columns: Mapping[str, Any],
        rows: int,
        outputs: Any,
        latency_s: float,
    ) -> bool:
        """:meth:`log` for inputs already in columns, as the server decodes them: ``columns``
        maps each input to a 1-D array (numpy, a pandas array or a list) of ``rows`` values,
        ``outputs`` holds one prediction per row. Columns are written as they are, without a
        Python object per value, so logging every request stays cheap for the server that
        shares its GIL with the writer.
        """
        return self._offer(model, version, request_id, columns, rows, outputs, latency_s)

    def _offer(
        self,
        model: str,
        version: int | None,
        request_id: str,
        inputs: Any,
        rows: int,
        outputs: Any,
        latency_s: float,
    ) -> bool:
        if self._closed:
            self._dropped += 1
            return False
        if self.sample_rate < 1.0 and self._random() >= self.sample_rate:
            self._sampled_out += 1
            return False
        if len(self._buffer) >= self.queue_size:
            self._dropped += 1
            return False
        self._buffer.append(
            (self._clock(), model, version, request_id, inputs, rows, outputs, latency_s)
        )
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
        self._buffer.append((self._clock(), model, None, request_id, _LABELS, 0, labels, 0.0))
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
        # Two paces: every CONVERT_INTERVAL_S the records waiting become Arrow tables (a short
        # hold of the GIL, which the server shares); every flush interval those tables become
        # one file per model, window and kind (Parquet encoding releases the GIL).
        convert_every = min(CONVERT_INTERVAL_S, self.flush_interval_s)
        written_at = time.monotonic()
        while True:
            self._wake.wait(convert_every)
            self._wake.clear()
            # Take the flush requests before draining: whatever was logged before a request
            # is in the buffer now, so it is written before the request is answered.
            flushes, self._flushes = self._flushes, []
            stopping = self._closed
            self._convert()
            if flushes or stopping or time.monotonic() - written_at >= self.flush_interval_s:
                self._write_pending()
                self._compact()
                written_at = time.monotonic()
            for done in flushes:
                done.set()
            if stopping:
                self._convert()
                self._write_pending()
                self._compact(everything=True)
                return

    def _convert(self) -> None:
        """Turn the records waiting into tables, at most ``batch_size`` records per table.

        A record that cannot be written (inputs and outputs of different lengths, say) is
        counted as an error and left out; the rest of its batch is kept.
        """
        while self._buffer:
            batch: list[_Record] = []
            while self._buffer and len(batch) < self.batch_size:
                batch.append(self._buffer.popleft())
            groups: dict[_FileKey, list[_Record]] = {}
            start = end = _EPOCH
            for record in batch:
                at = record[0]
                if not start <= at < end:  # records come in time order: one window for many
                    start = window_start(at, self.window)
                    end = start + self.window
                groups.setdefault((record[1], start, record[4] is _LABELS), []).append(record)
            for key, records in groups.items():
                try:
                    if key[2]:
                        table, bad = _label_table(records), 0
                    else:
                        table, bad = _request_table(records)
                except Exception:  # the writer must survive anything; the records are counted
                    self._errors += len(records)
                    logger.exception("inference log: %d records not written", len(records))
                    continue
                self._errors += bad
                if table.num_rows:
                    self._pending.setdefault(key, []).append((table, len(records) - bad))

    def _write_pending(self) -> None:
        """Write the converted tables: one file per model, window and kind."""
        pending, self._pending = self._pending, {}
        for (model, start, labels), parts in pending.items():
            count = sum(n for _, n in parts)
            try:
                self._write(model, start, _concat([t for t, _ in parts]), labels=labels)
            except Exception:  # a full disk, say: counted, and the writer goes on
                self._errors += count
                logger.exception("inference log: %d records not written", count)
                continue
            self._written += count
        if pending:
            self._prune()

    def _prune(self) -> None:
        """Delete the day folders past the retention; at most once an hour."""
        if self.retention is None:
            return
        now = self._clock()
        if self._pruned_at is not None and now - self._pruned_at < dt.timedelta(hours=1):
            return
        self._pruned_at = now
        try:
            prune_log(self.root, now - self.retention)
        except OSError:
            logger.exception("inference log: old day folders not pruned")

    def _write(
        self, model: str, start: dt.datetime, table: pa.Table, *, labels: bool = False
    ) -> None:
        import pyarrow.parquet as pq

        folder = self.root / model / (LABELS_DIR if labels else "") / start.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = folder / f"{start.strftime(_STAMP)}-{self._writer_id}-p{self._seq:08d}.parquet"
        tmp = folder / f".{path.name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        self._parts.setdefault((model, start, labels), []).append((path, self._seq))

    def _compact(self, *, everything: bool = False) -> None:
        """Merge this writer's files of each closed window into one (every window when
        stopping). A window is closed once no record of it can still be on its way: its end,
        plus two flush intervals, has passed by the logger's clock."""
        now = self._clock()
        grace = self.window + dt.timedelta(seconds=2 * self.flush_interval_s)
        for key in list(self._parts):
            if everything or key[1] + grace <= now:
                parts = self._parts.pop(key)
                try:
                    _merge([path for path, _ in parts], upto=max(seq for _, seq in parts))
                except Exception:  # the parts stay as they are, and readers read them
                    logger.exception("inference log: %d files of %s not merged", len(parts), key)


def window_start(at: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """The start of the window of length ``window`` holding ``at`` (windows align to the epoch)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((at - epoch) // window) * window


def _request_table(records: list[_Record]) -> tuple[pa.Table, int]:
    """The log rows of ``records``, column by column, and how many records were malformed.

    One row per input row. Features are prefixed ``in.``, so no feature name collides with the
    bookkeeping columns; a feature missing from some records is null there. The writer shares
    the GIL with the server, so the work per record is a few list appends: each column is
    joined with one ``numpy.concatenate`` over every record's array and handed to Arrow whole;
    only text and odd values are looked at one by one.
    """
    import numpy as np
    import pyarrow as pa

    kept: list[_Record] = []
    inputs: list[Mapping[str, Any]] = []
    outputs: list[Any] = []
    counts: list[int] = []
    bad = 0
    for record in records:
        request_id, given, rows, answers = record[3], record[4], record[5], record[6]
        try:
            columns, n = (given, rows) if rows >= 0 else _columns_of(given)
            answers = _outputs_of(answers, n)
        except Exception as exc:
            bad += 1
            logger.warning("inference log: request %s not logged (%s)", request_id, exc)
            continue
        kept.append(record)
        inputs.append(columns)
        outputs.append(answers)
        counts.append(n)
    names: dict[str, None] = dict.fromkeys(inputs[0]) if inputs else {}
    uniform = all(columns.keys() == names.keys() for columns in inputs)
    if uniform:  # the usual case: every request has the signature's columns
        features = {name: list(map(itemgetter(name), inputs)) for name in names}
    else:
        for columns in inputs:
            names.update(dict.fromkeys(columns))
        # None where a record lacks the feature.
        features = {name: [columns.get(name) for columns in inputs] for name in names}
    short = {
        i
        for chunks in [outputs, *features.values()]
        if not uniform or list(map(len, chunks)) != counts
        for i, (chunk, n) in enumerate(zip(chunks, counts, strict=True))
        if chunk is not None and len(chunk) != n
    }
    if short:  # a column of another length than its request: leave those requests out
        for i in sorted(short):
            logger.warning("inference log: request %s not logged (ragged columns)", kept[i][3])
        table, _ = _request_table([r for i, r in enumerate(kept) if i not in short])
        return table, bad + len(short)
    total = sum(counts)
    repeat = np.asarray(counts, dtype=np.int64)
    stamps = np.fromiter(((r[0] - _EPOCH) // _MICROSECOND for r in kept), np.int64, len(kept))
    ids: list[str] = []
    for record, n in zip(kept, counts, strict=True):
        ids.extend([record[3]] if n == 1 else [f"{record[3]}:{i}" for i in range(n)])
    arrays: dict[str, pa.Array] = {
        "at": pa.array(np.repeat(stamps, repeat), pa.timestamp("us", tz="UTC")),
        "model": pa.array([records[0][1]] * total, pa.string()),
        "version": pa.array(
            [r[2] for r, n in zip(kept, counts, strict=True) for _ in range(n)], pa.int64()
        ),
        "request_id": pa.array(ids, pa.string()),
        "latency_s": pa.array(np.repeat(np.asarray([r[7] for r in kept], np.float64), repeat)),
        "prediction": _arrow_column(outputs, counts, total),
    }
    for name, chunks in features.items():
        arrays[f"in.{name}"] = _arrow_column(chunks, counts, total)
    return pa.table(arrays), bad


def _columns_of(inputs: Any) -> tuple[Mapping[str, Any], int]:
    """Row-form inputs (a DataFrame, one row mapping, or a list of them) as columns."""
    if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):  # a DataFrame
        import numpy as np

        return {
            str(name): (column.to_numpy() if isinstance(column.dtype, np.dtype) else list(column))
            for name, column in inputs.items()
        }, len(inputs)
    if isinstance(inputs, dict):
        return {name: [value] for name, value in inputs.items()}, 1
    records = list(inputs)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {name: [r.get(name) for r in records] for name in names}, len(records)


def _outputs_of(outputs: Any, n: int) -> Any:
    """One prediction per row: a 1-D array or a list of ``n`` values."""
    ndim = getattr(outputs, "ndim", None)
    if ndim == 1:
        values = outputs
    elif ndim is not None and ndim > 1:
        values = outputs.tolist()  # several outputs per row: each row written as JSON
    elif isinstance(outputs, list | tuple):
        values = outputs
    else:
        values = [outputs]  # a scalar, or a 0-d array
    if len(values) != n:
        raise ValueError(f"{n} input rows but {len(values)} outputs")
    return values


def _arrow_column(chunks: list[Any], counts: list[int], total: int) -> pa.Array:
    """One column of ``total`` rows from one chunk of values per record (``None``: the record
    lacks the column, its ``counts[i]`` rows are null). Numbers are joined by numpy and go to
    Arrow at once; anything else value by value, as :func:`_scalar` makes it writable."""
    import numpy as np
    import pyarrow as pa

    try:
        joined = np.concatenate(chunks)
    except (ValueError, TypeError):  # a missing chunk, or arrays of other shapes
        joined = None
    if joined is not None and joined.ndim == 1 and joined.dtype.kind in _NATIVE_KINDS:
        return pa.array(joined, from_pandas=True)  # NaN is written as null
    flat: list[Any] = []
    for values, n in zip(chunks, counts, strict=True):
        if values is None:
            flat.extend([None] * n)
        else:
            items = values.tolist() if isinstance(values, np.ndarray) else values
            flat.extend([_scalar(v) for v in items])
    try:
        return pa.array(flat)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Values of several kinds in one column (a number here, a word there): kept as text.
        return pa.array([None if v is None else str(v) for v in flat], pa.string())


def _label_table(records: list[_Record]) -> pa.Table:
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for at, _model, _version, request_id, _inputs, _rows, outcome, _latency in records:
        labels = outcome.tolist() if hasattr(outcome, "tolist") else outcome
        if isinstance(labels, list | tuple):
            rows.extend(
                {"at": at, "request_id": f"{request_id}:{i}", "label": _scalar(label)}
                for i, label in enumerate(labels)
            )
        else:
            rows.append({"at": at, "request_id": request_id, "label": _scalar(labels)})
    return pa.Table.from_pylist(rows)


def _overlaps(path: Path, start: dt.datetime, end: dt.datetime) -> bool:
    try:
        opened = dt.datetime.strptime(path.name.split("-", 1)[0], _STAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        return True  # not named by us: read it rather than silently miss rows
    return start - MAX_FILE_WINDOW < opened < end


def _scalar(value: Any) -> Any:
    if type(value).__name__ == "NAType":  # pandas' missing value in nullable integer columns
        return None
    if getattr(value, "ndim", 0):  # an array in one cell
        value = value.tolist()
    elif hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None  # a null; NaN would make a text column unwritable
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


def prune_log(root: Path, before: dt.datetime) -> list[Path]:
    """Delete the day folders (requests and labels, every model) whose day ended at or before
    ``before``; the folders deleted. Folders not named by a date are left alone."""
    import shutil

    deleted: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return deleted
    for model in root.iterdir():
        if not model.is_dir():
            continue
        for parent in (model, model / LABELS_DIR):
            if not parent.is_dir():
                continue
            for day in parent.iterdir():
                try:
                    start = dt.datetime.strptime(day.name, "%Y-%m-%d").replace(tzinfo=dt.UTC)
                except ValueError:
                    continue
                if day.is_dir() and start + dt.timedelta(days=1) <= before:
                    try:
                        shutil.rmtree(day)
                    except FileNotFoundError:  # another replica sharing the log pruned it
                        continue
                    deleted.append(day)
    return deleted


def _concat(tables: list[pa.Table]) -> pa.Table:
    """The tables one after another, columns matched by name; a column missing from a table is
    null there, integers meet floats as floats, and a column whose types cannot meet (a number
    in one file, text in another) becomes text, so one odd file never makes a window
    unreadable."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            types.setdefault(field.name, set()).add(field.type)

    def numbers(kinds: set[pa.DataType]) -> bool:
        return all(pa.types.is_integer(k) or pa.types.is_floating(k) for k in kinds)

    clashing = {
        name
        for name, kinds in types.items()
        if len(kinds - {pa.null()}) > 1 and not numbers(kinds - {pa.null()})
    }
    as_text = []
    for table in tables:
        fixed = table
        for name in clashing & set(table.column_names):
            index = fixed.column_names.index(name)
            fixed = fixed.set_column(index, name, pc.cast(fixed[name], pa.string()))
        as_text.append(fixed)
    return pa.concat_tables(as_text, promote_options="permissive")


#: Rows per row group of a merged window file.
_MERGED_ROW_GROUP = 100_000


def _merge(parts: list[Path], *, upto: int) -> Path:
    """One file of a writer's ``parts`` of one window, named for the last part it holds; the
    parts are deleted once it is on disk (written atomically and synced, so a crash loses
    neither). Parts are streamed, about a row group at a time, so a busy window is never whole
    in memory (unless its parts disagree on a column's type)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.core.atomic import atomic_write

    stamp, writer, _ = parts[0].stem.split("-")
    target = parts[0].with_name(f"{stamp}-{writer}-c{upto:08d}.parquet")
    if len(parts) == 1:
        os.replace(parts[0], target)
        return target
    try:
        with atomic_write(target) as fh:
            _stream(parts, fh)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # A column of two kinds (a number in one part, text in another): merged in memory.
        with atomic_write(target) as fh:
            pq.write_table(_concat([pq.read_table(part) for part in parts]), fh)
    for part in parts:
        part.unlink(missing_ok=True)
    return target


def _stream(parts: list[Path], out: IO[bytes]) -> None:
    """``parts`` into one Parquet file, under the schema they all fit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.unify_schemas(
        [pq.read_schema(part) for part in parts], promote_options="permissive"
    )
    with pq.ParquetWriter(out, schema) as writer:
        group: list[pa.Table] = []
        rows = 0
        for part in parts:
            table = _conform(pq.read_table(part), schema)
            group.append(table)
            rows += table.num_rows
            if rows >= _MERGED_ROW_GROUP:
                writer.write_table(pa.concat_tables(group))
                group, rows = [], 0
        if group:
            writer.write_table(pa.concat_tables(group))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns, in its order and types; missing ones null."""
    import pyarrow as pa

    if table.schema.equals(schema):  # the usual case: every part has the same columns
        return table
    names = set(table.column_names)
    columns = [
        table[field.name].cast(field.type)
        if field.name in names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _log_files(folders: list[Path], start: dt.datetime, end: dt.datetime) -> list[Path]:
    """The log files in ``folders`` that can hold rows of ``[start, end)``, without the parts
    a merged file already holds (a writer deletes them just after merging)."""
    files: list[tuple[Path, tuple[str, str] | None, str, int]] = []
    merged: dict[tuple[str, str], int] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.parquet")):
            if not _overlaps(path, start, end):
                continue
            bits = path.stem.split("-")
            if len(bits) == 3 and bits[2][:1] in ("p", "c") and bits[2][1:].isdigit():
                writer, kind, seq = (bits[0], bits[1]), bits[2][0], int(bits[2][1:])
                if kind == "c":
                    merged[writer] = max(merged.get(writer, 0), seq)
                files.append((path, writer, kind, seq))
            else:  # written before windows were merged, or by hand: read as it is
                files.append((path, None, "", 0))
    return [
        path
        for path, writer, kind, seq in files
        if not (kind == "p" and writer in merged and seq <= merged[writer])
    ]


def _read_files(folders: list[Path], start: dt.datetime, end: dt.datetime) -> list[pa.Table]:
    """The tables of the log files of ``folders`` for ``[start, end)``; listed again when a
    writer merged some away between listing and reading."""
    import pyarrow.parquet as pq

    for _ in range(5):
        try:
            return [pq.read_table(path) for path in _log_files(folders, start, end)]
        except FileNotFoundError:
            continue
    from conveyor.core.errors import InfrastructureError

    raise InfrastructureError(
        "the inference log changed under the reader five times in a row",
        hint="read it again; if this repeats, check that no two servers share a writer",
    )


def _days(root: Path, start: dt.datetime, end: dt.datetime, *parts: str) -> list[Path]:
    """The day folders under ``root/parts`` from ``start``'s day to ``end``'s."""
    folders = []
    day = start.date()
    while day <= end.date():
        folders.append(Path(root).joinpath(*parts, day.strftime("%Y-%m-%d")))
        day += dt.timedelta(days=1)
    return folders


def read_log(root: Path, model: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """The logged rows of ``model`` with ``start <= at < end``, oldest first.

    Features come back without their ``in.`` prefix; ``at``, ``version``, ``request_id``,
    ``latency_s`` and ``prediction`` keep their names. Only files whose window (from their name)
    can overlap the span are opened, so reading the newest window stays cheap as a day's files
    pile up.
    """
    import pandas as pd

    tables = _read_files(_days(root, start, end, model), start, end)
    if not tables:
        return pd.DataFrame(columns=["at", "version", "request_id", "latency_s", "prediction"])
    frame = _concat(tables).to_pandas()
    at = pd.to_datetime(frame["at"], utc=True)
    frame = frame[(at >= start) & (at < end)].sort_values("at", kind="stable")
    frame = frame.rename(columns={c: c[3:] for c in frame.columns if c.startswith("in.")})
    return frame.drop(columns=["model"]).reset_index(drop=True)


def read_labels(root: Path, model: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """The outcomes of ``model`` that arrived with ``start <= at < end``: ``request_id``,
    ``label`` and ``at``, the latest label of each request id only."""
    import pandas as pd

    tables = _read_files(_days(root, start, end, model, LABELS_DIR), start, end)
    if not tables:
        return pd.DataFrame(columns=["request_id", "label", "at"])
    frame = _concat(tables).to_pandas()
    at = pd.to_datetime(frame["at"], utc=True)
    frame = frame[(at >= start) & (at < end)].sort_values("at", kind="stable")
    return frame.drop_duplicates("request_id", keep="last").reset_index(drop=True)
