"""Starting runs, listing them, and reading a run's metrics back.

Each function takes the metadata store as its first argument: an open
:class:`~conveyor.store.metadata.MetadataStore`, a store URL (``sqlite:///...``,
``postgresql+psycopg://...``), or ``None`` for the store of the project around the current
folder (``conveyor.yaml``, ``CONVEYOR_STORE``), which is how a script or a pipeline step finds
the store that ``conveyor run`` uses. A store the function opens is closed when it is done with
it (for :func:`start_run`, when the run ends).

Listing reads rows with SQLAlchemy Core and builds plain records; a run's latest metric values
are kept on its row, so a listing costs one indexed query whatever the metric histories hold.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.core.errors import NotFoundError, UsageError, ValidationError
from conveyor.core.identity import current_user
from conveyor.core.ids import new_id
from conveyor.core.names import validate_name
from conveyor.store.metadata import MetadataStore
from conveyor.store.metadata.schema import metric, run
from conveyor.tracking._handle import RunHandle
from conveyor.tracking.records import RUN_STATUSES, RunRecord

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["get_metrics", "list_runs", "start_run"]

#: The default batch: values written per transaction, and the longest a value waits in memory.
FLUSH_EVERY = 1000
FLUSH_INTERVAL_S = 5.0
_MAX_LIST = 100_000

_INSERT_RUN = sa.insert(run)
_RUN_EXISTS = sa.select(run.c.id).where(run.c.id == sa.bindparam("run_id"))
_METRICS_OF = (
    sa.select(metric.c.key, metric.c.step, metric.c.value)
    .where(metric.c.run_id == sa.bindparam("run_id"))
    .order_by(metric.c.key, metric.c.step, metric.c.id)
)
_LISTED = (
    run.c.id,
    run.c.pipeline,
    run.c.step,
    run.c.status,
    run.c.params,
    run.c.metrics,
    run.c.started_at,
    run.c.ended_at,
    run.c.error,
)

StoreLike = MetadataStore | str | None


def start_run(
    store: StoreLike = None,
    *,
    pipeline: str = "adhoc",
    step: str = "script",
    params: Mapping[str, Any] | None = None,
    actor: str | None = None,
    flush_every: int = FLUSH_EVERY,
    flush_interval: float | None = FLUSH_INTERVAL_S,
) -> RunHandle:
    """Start a run (status ``running``) to log metrics to; use the result in a ``with``.

    Example::

        with conveyor.start_run(pipeline="churn", step="train", params={"lr": 0.1}) as run:
            for epoch in range(10):
                run.log_metric("loss", train_one_epoch())

    Args:
        store: The metadata store, its URL, or None for the project's (see the module doc).
        pipeline: The name that groups related runs (an experiment); :func:`list_runs`
            filters on it.
        step: Which part of the work this run is.
        params: JSON values to record with the run (hyperparameters, data versions ...).
        actor: Who runs it, for the audit trail; by default ``$CONVEYOR_USER`` or the login.
        flush_every: Values written per transaction, at most.
        flush_interval: Seconds a logged value waits in memory at most; None: only by size
            and at the end.

    Raises:
        ValidationError: a bad pipeline or step name, params that are not JSON, bad batching.
        InfrastructureError: the store is unavailable.
    """
    validate_name("pipeline", pipeline)
    validate_name("step", step)
    recorded = _json_params(params)
    if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
        raise ValidationError(f"flush_every must be a positive int, not {flush_every!r}")
    if flush_interval is not None and not (
        isinstance(flush_interval, int | float) and math.isfinite(flush_interval)
    ):
        raise ValidationError(f"flush_interval must be seconds or None, not {flush_interval!r}")
    if flush_interval is not None and flush_interval <= 0:
        raise ValidationError(f"flush_interval must be positive, not {flush_interval!r}")
    who = actor or current_user()
    opened, owned = _open(store)
    run_id = new_id()
    try:
        with opened.write(who) as tx:
            tx.conn.execute(
                _INSERT_RUN,
                {
                    "id": run_id,
                    # A run started here is its own pipeline run; it has no code or
                    # environment digests and no cache key, so it is never a cache hit.
                    "pipeline_run_id": run_id,
                    "pipeline": pipeline,
                    "step": step,
                    "status": "running",
                    "params": recorded,
                    "code_digest": "",
                    "env_digest": "",
                    "seed": None,
                    "cache_key": "",
                    "cache_hit": False,
                    "error": None,
                    "started_at": tx.at,
                    "ended_at": None,
                    "metrics": None,
                },
            )
            tx.audit(
                "run.started",
                f"run:{run_id}",
                {"pipeline": pipeline, "step": step, "params": recorded},
            )
    except BaseException:
        if owned:
            opened.close()
        raise
    return RunHandle(
        opened,
        run_id=run_id,
        pipeline=pipeline,
        step=step,
        actor=who,
        flush_every=flush_every,
        flush_interval=flush_interval,
        owns_store=owned,
    )


def list_runs(
    store: StoreLike = None,
    *,
    pipeline: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[RunRecord]:
    """Runs, newest first, with their params and the latest value of each metric.

    Args:
        store: The metadata store, its URL, or None for the project's.
        pipeline: Only the runs of this pipeline.
        status: Only runs in this status (``running``, ``succeeded``, ``failed``).
        limit: At most this many runs.

    Raises:
        UsageError: an unknown status or a limit that is not a positive int.
        InfrastructureError: the store is unavailable.
    """
    if status is not None and status not in RUN_STATUSES:
        raise UsageError(f"unknown run status '{status}'", hint=f"use one of: {RUN_STATUSES}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIST:
        raise UsageError(f"limit must be an int from 1 to {_MAX_LIST:,}, not {limit!r}")
    query = sa.select(*_LISTED)
    if pipeline is not None:
        query = query.where(run.c.pipeline == pipeline)
    if status is not None:
        query = query.where(run.c.status == status)
    query = query.order_by(run.c.started_at.desc(), run.c.id.desc()).limit(limit)
    with _opened(store) as opened, opened.read() as conn:
        rows = conn.execute(query).all()
    return [
        RunRecord(run_id, pipe, step, state, params, metrics or {}, started, ended, error)
        for run_id, pipe, step, state, params, metrics, started, ended, error in rows
    ]


def get_metrics(store: StoreLike, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every value of every metric of a run: ``{key: [(step, value), ...]}``, by step.

    Values logged at the same step are all kept, in the order they were logged.

    Raises:
        NotFoundError: there is no run ``run_id``.
        InfrastructureError: the store is unavailable.
    """
    found: dict[str, list[tuple[int, float]]] = {}
    with _opened(store) as opened, opened.read() as conn:
        if conn.execute(_RUN_EXISTS, {"run_id": run_id}).first() is None:
            raise NotFoundError(
                f"there is no run '{run_id}'",
                hint="list the runs with conveyor.list_runs() to find its id",
            )
        for key, step, value in conn.execute(_METRICS_OF, {"run_id": run_id}):
            found.setdefault(key, []).append((step, value))
    return found


def _open(store: StoreLike) -> tuple[MetadataStore, bool]:
    """The store to use, and whether it was opened here (and so must be closed here)."""
    if isinstance(store, MetadataStore):
        return store, False
    if store is None:
        # Imported here: only this path reads conveyor.yaml (and needs pydantic and YAML).
        from conveyor.core.config import load_config

        store = load_config().store
    return MetadataStore.open(store), True


@contextlib.contextmanager
def _opened(store: StoreLike) -> Iterator[MetadataStore]:
    opened, owned = _open(store)
    try:
        yield opened
    finally:
        if owned:
            opened.close()


def _json_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` as a dict of JSON values, or a ValidationError naming the first bad one."""
    if params is None:
        return {}
    recorded = dict(params)
    for name, value in recorded.items():
        if not isinstance(name, str):
            raise ValidationError(f"param name {name!r} is not a string")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"param '{name}' = {value!r} cannot be recorded: {exc}",
                hint="params are JSON values (numbers, strings, lists, dicts); "
                "convert others first, e.g. str(path) or float(x)",
            ) from exc
    return recorded
