"""A run in progress: metrics are kept in memory and written in batches.

A commit per logged value is what makes other trackers cost milliseconds a call (MLflow on
SQLite: ~4 ms). Here a value is checked and appended to a list; the list is written in one
transaction (one multi-row insert, the run's latest values, one audit event) when it holds
``flush_every`` values, when the oldest has waited ``flush_interval`` seconds (a timer thread,
so a quiet stretch of training does not hold values back), and when the run ends. Ending writes
the last batch and the run's status in the same transaction.

Nothing logged is lost to a failed write: the batch goes back into the buffer and the next
flush tries again, so a database that was briefly unavailable costs a retry, not values.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import operator
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import ConflictError, ValidationError
from conveyor.core.names import validate_name
from conveyor.store.metadata.schema import metric, run

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from conveyor.store.metadata import MetadataStore

__all__ = ["RunHandle"]

logger = logging.getLogger(__name__)

_INSERT_METRICS = sa.insert(metric)
_SET_LATEST = (
    sa.update(run).where(run.c.id == sa.bindparam("run_id")).values(metrics=sa.bindparam("latest"))
)
_SET_ENDED = (
    sa.update(run)
    .where(run.c.id == sa.bindparam("run_id"))
    .values(
        metrics=sa.bindparam("latest"),
        status=sa.bindparam("status"),
        ended_at=sa.bindparam("ended_at"),
        error=sa.bindparam("error"),
    )
)
_STEP_RANGE = (-(2**63), 2**63 - 1)  # metric.step is a BIGINT
_AUDIT_KEYS = 100  # metric names listed in one run.metrics_logged event, at most

# (key, value, step, time.time()): a tuple, because building anything richer per call would
# cost more than the rest of log_metric.
_Entry = tuple[str, float, int, float]


class RunHandle:
    """A run in progress, returned by :func:`~conveyor.tracking.start_run`.

    Use it as a context manager: the run ends when the block does, as ``succeeded``, or as
    ``failed`` with the traceback when an exception leaves the block (the exception goes on).
    Outside a ``with``, call :meth:`end`. Logging may happen from several threads.
    """

    def __init__(
        self,
        store: MetadataStore,
        *,
        run_id: str,
        pipeline: str,
        step: str,
        actor: str,
        flush_every: int,
        flush_interval: float | None,
        owns_store: bool = False,
    ) -> None:
        self.id = run_id
        self.pipeline = pipeline
        self.step = step
        self._store = store
        self._actor = actor
        self._flush_every = flush_every
        self._flush_interval = flush_interval
        self._owns_store = owns_store
        self._buffer: list[_Entry] = []
        self._lock = threading.Lock()  # guards the buffer, the step counters and the timer
        self._write_lock = threading.Lock()  # one write at a time, in the order values came
        self._timer: threading.Timer | None = None
        self._next_step: dict[str, int] = {}
        self._valid_keys: set[str] = set()
        self._latest: dict[str, tuple[int, float]] = {}  # written values only: key -> (step, value)
        self._logged = 0  # values written so far
        self._status = "running"

    @property
    def status(self) -> str:
        """``running`` until the run ends, then ``succeeded`` or ``failed``."""
        return self._status

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record ``value`` of metric ``key`` at ``step``; it is written with the next batch.

        Args:
            key: The metric name (letters, digits, ``.``, ``_``, ``-``; see ``core.names``).
            value: A finite number (``int``, ``float`` or a numpy scalar).
            step: The step (epoch, iteration ...); by default one past this key's last step,
                starting at 0.

        Raises:
            ValidationError: a bad name, a value that is not a finite number, a bad step.
            ConflictError: the run has ended.
        """
        if key not in self._valid_keys:
            validate_name("metric", key)
        if type(value) is not float:
            value = self._number(key, value)
        if not math.isfinite(value):
            raise ValidationError(
                f"metric '{key}' of run {self.id} is {value}, not a finite number",
                hint="log only finite values; record a diverged run with a separate metric "
                "(e.g. 'diverged' = 1) or let the run fail",
            )
        with self._lock:
            if self._status != "running":
                raise self._ended_error()
            self._valid_keys.add(key)
            if step is None:
                step = self._next_step.get(key, 0)
            else:
                step = self._step(key, step)
            if step >= self._next_step.get(key, 0):
                self._next_step[key] = step + 1
            self._buffer.append((key, value, step, time.time()))
            full = len(self._buffer) >= self._flush_every
            if not full and self._timer is None and self._flush_interval is not None:
                self._start_timer(self._flush_interval)
        if full:
            self.flush()

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Record several metrics at one ``step`` (each at its own next step by default).

        Raises:
            ValidationError, ConflictError: as :meth:`log_metric`; the values before the bad
                one are recorded.
        """
        for key, value in values.items():
            self.log_metric(key, value, step)

    def flush(self) -> None:
        """Write the buffered values now, in one transaction with one audit event.

        Raises:
            InfrastructureError: the store is unavailable; the values stay buffered.
        """
        with self._write_lock:
            entries = self._take()
            if entries:
                self._write(entries, ending=None)

    def end(self, error: BaseException | str | None = None) -> None:
        """Write the last values and end the run: ``failed`` with ``error``, else ``succeeded``.

        Ending an ended run does nothing.

        Raises:
            InfrastructureError: the store is unavailable; the run is still running, and
                ``end`` can be called again.
        """
        with self._write_lock:
            if self._status != "running":
                return
            entries = self._take()
            status = "succeeded" if error is None else "failed"
            self._write(entries, ending=(status, _error_text(error)))
            with self._lock:
                self._status = status
        self._release()

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end()
            return
        try:
            self.end(exc)
        except Exception:
            # The exception from the user's block is the one that matters: raising ours here
            # would replace it. Ours is logged, and the run stays "running" in the store.
            logger.exception("run %s: could not record that it failed", self.id)
            self._release()

    def __repr__(self) -> str:
        return f"<RunHandle {self.id} {self.pipeline}/{self.step} {self._status}>"

    # ------------------------------------------------------------------ internals

    def _number(self, key: str, value: object) -> float:
        if isinstance(value, bool | str | bytes):
            raise self._not_a_number(key, value)
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise self._not_a_number(key, value) from exc

    def _not_a_number(self, key: str, value: object) -> ValidationError:
        return ValidationError(
            f"metric '{key}' of run {self.id} is {type(value).__name__} {value!r}, "
            "not a finite number",
            hint="log a float or an int, e.g. run.log_metric('loss', float(loss))",
        )

    def _step(self, key: str, step: int) -> int:
        try:
            if isinstance(step, bool):
                raise TypeError("a bool is not a step")
            number = operator.index(step)  # an int, or a numpy integer
        except TypeError as exc:
            raise ValidationError(
                f"step {step!r} of metric '{key}' is not an integer",
                hint="pass an int step (epoch, iteration), or none to count up from 0",
            ) from exc
        if not _STEP_RANGE[0] <= number <= _STEP_RANGE[1]:
            raise ValidationError(f"step {number} of metric '{key}' is out of the 64-bit range")
        return number

    def _release(self) -> None:
        """Close the store if this run opened it (``start_run`` given a URL or nothing)."""
        if self._owns_store:
            self._owns_store = False
            self._store.close()

    def _ended_error(self) -> ConflictError:
        return ConflictError(
            f"run {self.id} has ended ({self._status}); nothing more can be logged to it",
            hint="start a new run with conveyor.start_run()",
        )

    def _start_timer(self, interval: float) -> None:
        timer = threading.Timer(interval, self._flush_in_background)
        timer.daemon = True  # a run the script never ended must not keep the process alive
        self._timer = timer
        timer.start()

    def _flush_in_background(self) -> None:
        try:
            self.flush()
        except Exception:
            # No caller to raise to: the values are back in the buffer, and the next flush
            # (by size, by time or at the end of the run) tries again and raises there.
            logger.warning("run %s: a timed write of metrics failed", self.id, exc_info=True)

    def _take(self) -> list[_Entry]:
        """Empty the buffer (and stop its timer); the caller holds the write lock."""
        with self._lock:
            entries, self._buffer = self._buffer, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return entries

    def _write(self, entries: list[_Entry], *, ending: tuple[str, str | None] | None) -> None:
        latest = dict(self._latest)
        for key, value, step, _at in entries:
            if step >= latest.get(key, (step, 0.0))[0]:
                latest[key] = (step, value)
        summary = {key: value for key, (_step, value) in sorted(latest.items())}
        try:
            with self._store.write(self._actor) as tx:
                if entries:
                    tx.conn.execute(_INSERT_METRICS, [self._row(e) for e in entries])
                    tx.audit("run.metrics_logged", f"run:{self.id}", _batch_payload(entries))
                if ending is None:
                    tx.conn.execute(_SET_LATEST, {"run_id": self.id, "latest": summary})
                    changed = None
                else:
                    status, error = ending
                    params = {"status": status, "ended_at": tx.at, "error": error}
                    tx.conn.execute(_SET_ENDED, {"run_id": self.id, "latest": summary, **params})
                    payload: dict[str, Any] = {
                        "status": status,
                        "metrics": self._logged + len(entries),
                    }
                    if error and error.strip():
                        payload["error"] = error.strip().splitlines()[-1]
                    tx.audit("run.finished", f"run:{self.id}", payload)
                    changed = status
        except BaseException:
            with self._lock:
                self._buffer[:0] = entries
            raise
        self._latest = latest
        self._logged += len(entries)
        if changed is not None:
            logger.info(
                "run ended",
                extra={"run_id": self.id, "status": changed, "metrics": self._logged},
            )

    def _row(self, entry: _Entry) -> dict[str, Any]:
        key, value, step, at = entry
        return {
            "run_id": self.id,
            "key": key,
            "step": step,
            "value": value,
            "at": dt.datetime.fromtimestamp(at, dt.UTC),
        }


def _batch_payload(entries: list[_Entry]) -> dict[str, Any]:
    keys = sorted({e[0] for e in entries})
    payload: dict[str, Any] = {"count": len(entries), "keys": keys[:_AUDIT_KEYS]}
    if len(keys) > _AUDIT_KEYS:
        payload["more_keys"] = len(keys) - _AUDIT_KEYS
    return payload


def _error_text(error: BaseException | str | None) -> str | None:
    if error is None or isinstance(error, str):
        return error
    return "".join(traceback.format_exception(error))
