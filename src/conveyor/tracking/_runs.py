"""Runs and their metrics, written in batches.

A metric logged one call at a time is buffered and written with the others in one transaction
(every ``flush_every`` values, and when the run ends): a commit per value is what makes other
trackers cost milliseconds a call. Nothing is lost on an error inside the run: the ``with``
block flushes what was logged and records the run as failed before the exception goes on.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.clock import utcnow
from conveyor.core.errors import ConflictError, NotFoundError, ValidationError
from conveyor.core.ids import new_id
from conveyor.core.names import validate_name
from conveyor.store.metadata.schema import metric, run

if TYPE_CHECKING:
    import datetime as dt
    from types import TracebackType

    from conveyor.store.metadata import MetadataStore

__all__ = ["RunHandle", "RunRecord", "get_metrics", "list_runs", "start_run"]

_DEFAULT_FLUSH = 1000


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as listed: its identity, status, params and the latest value of each metric."""

    id: str
    pipeline: str
    step: str
    status: str
    params: dict[str, Any]
    started_at: dt.datetime
    ended_at: dt.datetime | None
    metrics: dict[str, float] = field(default_factory=dict)


class RunHandle:
    """A run in progress; use it as a context manager, or call :meth:`end`."""

    def __init__(self, store: MetadataStore, run_id: str, actor: str, flush_every: int) -> None:
        self._store = store
        self.id = run_id
        self._actor = actor
        self._flush_every = flush_every
        self._buffer: list[dict[str, Any]] = []
        self._next_step: dict[str, int] = {}
        self._ended = False

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record ``value`` of metric ``key`` at ``step`` (default: one past the last step).

        Raises:
            ValidationError: the key is not a valid name or the value is not a finite number.
        """
        if self._ended:
            raise ConflictError(f"run {self.id} has ended; start a new run to log more metrics")
        validate_name("metric", key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValidationError(
                f"metric {key!r} of run {self.id} must be a finite number, not {value!r}",
                hint="log NaN or infinite values as a separate flag metric instead",
            )
        if step is None:
            step = self._next_step.get(key, 0)
        self._next_step[key] = step + 1
        self._buffer.append(
            {"run_id": self.id, "key": key, "step": step, "value": float(value), "at": utcnow()}
        )
        if len(self._buffer) >= self._flush_every:
            self.flush()

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Record several metrics at one step."""
        for key, value in values.items():
            self.log_metric(key, value, step)

    def flush(self) -> None:
        """Write the buffered values in one transaction, with one audit event."""
        if not self._buffer:
            return
        rows, self._buffer = self._buffer, []
        with self._store.write(self._actor) as tx:
            tx.conn.execute(metric.insert(), rows)
            tx.audit(
                "run.metrics_logged",
                f"run:{self.id}",
                {"count": len(rows), "keys": sorted({r["key"] for r in rows})},
            )

    def end(self, status: str = "succeeded", error: str | None = None) -> None:
        """Flush, then record the run's end; ending twice does nothing."""
        if self._ended:
            return
        self.flush()
        self._ended = True
        with self._store.write(self._actor) as tx:
            tx.conn.execute(
                run.update()
                .where(run.c.id == self.id)
                .values(status=status, ended_at=tx.at, error=error)
            )
            tx.audit("run.finished", f"run:{self.id}", {"status": status})

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
        else:
            self.end("failed", "".join(traceback.format_exception(exc)))


def start_run(
    store: MetadataStore,
    *,
    actor: str,
    pipeline: str = "adhoc",
    step: str = "script",
    params: dict[str, Any] | None = None,
    flush_every: int = _DEFAULT_FLUSH,
) -> RunHandle:
    """Start a run (status ``running``) to log metrics to.

    Args:
        store: The metadata store.
        actor: Who runs it (recorded in the audit trail).
        pipeline: A name grouping related runs; :func:`list_runs` filters on it.
        step: What part of the work this run is.
        params: Parameters to record with the run (JSON values).
        flush_every: Buffered values written per transaction.
    """
    validate_name("pipeline", pipeline)
    validate_name("step", step)
    run_id = new_id()
    with store.write(actor) as tx:
        tx.conn.execute(
            run.insert().values(
                id=run_id,
                pipeline_run_id=run_id,
                pipeline=pipeline,
                step=step,
                status="running",
                params=params or {},
                code_digest="",
                env_digest="",
                cache_key="",
                cache_hit=False,
                started_at=tx.at,
            )
        )
        tx.audit("run.started", f"run:{run_id}", {"pipeline": pipeline, "step": step})
    return RunHandle(store, run_id, actor, max(1, flush_every))


def list_runs(
    store: MetadataStore,
    *,
    pipeline: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[RunRecord]:
    """Runs, newest first, with the latest value of each of their metrics."""
    query = (
        sa.select(
            run.c.id,
            run.c.pipeline,
            run.c.step,
            run.c.status,
            run.c.params,
            run.c.started_at,
            run.c.ended_at,
        )
        .order_by(run.c.started_at.desc(), run.c.id.desc())
        .limit(limit)
    )
    if pipeline is not None:
        query = query.where(run.c.pipeline == pipeline)
    if status is not None:
        query = query.where(run.c.status == status)
    with store.read() as conn:
        rows = conn.execute(query).all()
        latest: dict[str, dict[str, float]] = {r.id: {} for r in rows}
        ids = list(latest)
        # Ordered by step, so the last value written for a key is its latest.
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            values = conn.execute(
                sa.select(metric.c.run_id, metric.c.key, metric.c.value)
                .where(metric.c.run_id.in_(chunk))
                .order_by(metric.c.run_id, metric.c.key, metric.c.step, metric.c.id)
            )
            for run_id, key, value in values:
                latest[run_id][key] = value
    return [
        RunRecord(
            r.id, r.pipeline, r.step, r.status, r.params, r.started_at, r.ended_at, latest[r.id]
        )
        for r in rows
    ]


def get_metrics(store: MetadataStore, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every value of every metric of a run, as ``{key: [(step, value), ...]}`` by step.

    Raises:
        NotFoundError: there is no run ``run_id``.
    """
    with store.read() as conn:
        if conn.execute(sa.select(run.c.id).where(run.c.id == run_id)).first() is None:
            raise NotFoundError(
                f"there is no run {run_id!r}", hint="see `conveyor audit log --action run.`"
            )
        rows = conn.execute(
            sa.select(metric.c.key, metric.c.step, metric.c.value)
            .where(metric.c.run_id == run_id)
            .order_by(metric.c.key, metric.c.step, metric.c.id)
        )
        found: dict[str, list[tuple[int, float]]] = {}
        for key, step, value in rows:
            found.setdefault(key, []).append((step, value))
    return found
