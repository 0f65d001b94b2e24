"""The monitor loop: turn the inference log into windows, windows into alert states.

One round (``conveyor monitor run --once``, or one tick of the loop) does, for each monitored
model: read the last *complete* window of the inference log, compute its metrics against the
model's training reference (:mod:`~conveyor.monitoring.windows`) and the outcomes that came
back (a labels file, or the labels the server logged from its ``feedback`` endpoint) and its
output anomalies (:mod:`~conveyor.monitoring.anomaly`, carrying the EWMA state from the previous
window), store the window, and evaluate the alert rules (:mod:`~conveyor.monitoring.alerts`).
A window already stored is not computed again, so several monitors, or a restarted one, do not
double-count.

The clock is injected: a simulation steps it through hours of traffic in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from conveyor.core.clock import utcnow
from conveyor.monitoring._log import window_start
from conveyor.store.metadata.schema import dataset_version, lineage_edge, monitoring_window

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Mapping, Sequence

    from conveyor.monitoring.alerts import Transition
    from conveyor.monitoring.notify import Notifier
    from conveyor.monitoring.rules import AlertRule
    from conveyor.monitoring.windows import Window, WindowSpec
    from conveyor.store.metadata import MetadataStore

__all__ = ["Monitor", "Round", "training_reference"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Round:
    """What one round did."""

    at: dt.datetime
    windows: list[Window] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)


class Monitor:
    """Windows and alert rules for a set of models.

    Args:
        store: The metadata store.
        rules: The alert rules (applied to every model).
        log_root: The inference log's folder.
        specs: Per model, what its windows are compared with; or a function giving them,
            called at the start of every round, so that a long-running monitor follows
            production as it changes (a new version brings its own reference).
        window: The length of one window.
        notifiers: By name (``webhook``, ``log``), as rules name them.
        clock: Now, in UTC.
        actor: Who the monitor acts as in the audit trail.
    """

    def __init__(
        self,
        store: MetadataStore,
        rules: Sequence[AlertRule],
        *,
        log_root: Path,
        specs: Mapping[str, WindowSpec] | Callable[[], Mapping[str, WindowSpec]],
        window: dt.timedelta = dt.timedelta(minutes=5),
        notifiers: Mapping[str, Notifier] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        actor: str = "monitor",
    ) -> None:
        self.store = store
        self.rules = list(rules)
        self.log_root = Path(log_root)
        self._specs = specs if callable(specs) else dict(specs)
        self.window = window
        self.notifiers = dict(notifiers or {})
        self.clock = clock
        self.actor = actor

    def run_once(self, *, span: tuple[dt.datetime, dt.datetime] | None = None) -> Round:
        """Compute the last complete window of each model (if new) and evaluate the rules.

        Args:
            span: Compute the window ``[start, end)`` instead of the last complete one aligned
                to the window length: a backfill of one incident's minutes, or a demo's
                traffic. The rules read it only while it is fresh: until as long after its
                end as it is long.

        Raises:
            UsageError: ``span`` is empty or ends after now.
        """
        from conveyor.monitoring.alerts import evaluate

        now = self.clock()
        if span is not None and not span[0] < span[1] <= now:
            from conveyor.core.errors import UsageError

            raise UsageError(
                f"monitoring window {span[0].isoformat()} - {span[1].isoformat()} is empty or "
                "has not ended yet",
                hint="give a span that starts before it ends, and ends by now",
            )
        result = Round(at=now)
        for model, spec in self.current_specs().items():
            stored = self._window(model, spec, now, span)
            if stored is not None:
                result.windows.append(stored)
            result.transitions.extend(
                evaluate(
                    self.store,
                    self.rules,
                    model=model,
                    now=now,
                    notifiers=self.notifiers,
                    actor=self.actor,
                )
            )
        return result

    def current_specs(self) -> Mapping[str, WindowSpec]:
        """The models monitored now, and what each one's windows are compared with."""
        return self._specs() if callable(self._specs) else self._specs

    def run(self, stop: threading.Event, *, interval_s: float = 60.0) -> int:
        """Run rounds every ``interval_s`` of wall time until ``stop`` is set.

        A round the store cannot serve (a restarting database, a lost race between two
        monitors) is logged, and the next round tries again: the monitor outlives an outage
        of what it watches. Returns how many rounds failed so.
        """
        from conveyor.core.errors import InfrastructureError
        from conveyor.store.metadata import TransactionConflictError

        failed = 0
        while not stop.is_set():
            try:
                self.run_once()
            except (InfrastructureError, TransactionConflictError) as exc:
                failed += 1
                logger.warning("monitor: round failed, trying again in %g s: %s", interval_s, exc)
            stop.wait(interval_s)
        return failed

    def _window(
        self,
        model: str,
        spec: WindowSpec,
        now: dt.datetime,
        span: tuple[dt.datetime, dt.datetime] | None,
    ) -> Window | None:
        from conveyor.monitoring._log import read_labels, read_log
        from conveyor.monitoring.anomaly import output_anomalies
        from conveyor.monitoring.windows import compute_window, read_windows, record_window

        if span is None:
            end = window_start(now, self.window)
            start = end - self.window
        else:
            start, end = span
        with self.store.read() as conn:
            done = conn.execute(
                sa.select(monitoring_window.c.id).where(
                    monitoring_window.c.model == model, monitoring_window.c.start == start
                )
            ).first()
            previous = read_windows(conn, model, since=start - self.window, until=start)
        if done is not None:
            return None
        frame = read_log(self.log_root, model, start, end)
        if len(frame) == 0:
            return None
        if spec.labels is None:
            # Outcomes sent to the feedback endpoint and logged by the server: those that have
            # arrived by now. A window is computed once, so later labels need a labels file.
            labels = read_labels(self.log_root, model, start, now + self.window)
            if len(labels):
                spec = dataclasses.replace(spec, labels=labels)
        metrics = compute_window(frame, spec)
        if spec.reference_predictions is not None:
            ewma = previous[-1].metrics.get("anomaly.mean_ewma") if previous else None
            metrics.update(
                output_anomalies(
                    frame["prediction"],
                    spec.reference_predictions,
                    previous_ewma=ewma if isinstance(ewma, float) else None,
                )
            )
        versions = frame["version"].dropna()
        version = int(versions.mode().iloc[0]) if len(versions) else None
        return record_window(
            self.store,
            model=model,
            version=version,
            start=start,
            end=end,
            metrics=metrics,
            actor=self.actor,
        )


def training_reference(store: MetadataStore, model: str, version: int) -> Path | None:
    """The file of the dataset nearest upstream of the run that trained ``model`` ``version``.

    Walks the lineage graph up from the version (``trained`` edge to its run, then ``input`` /
    ``output`` edges through earlier steps) breadth-first, so the training step's own input wins
    over the raw data it was made from. None when the version has no recorded lineage or no
    dataset on the way.
    """
    start = f"model:{model}/{version}"
    with store.read() as conn:
        frontier = [start]
        seen = {start}
        for _ in range(16):
            if not frontier:
                return None
            rows = conn.execute(
                sa.select(lineage_edge.c.src).where(lineage_edge.c.dst.in_(frontier))
            ).all()
            found = sorted({r.src for r in rows} - seen)
            datasets = [n.removeprefix("dataset:") for n in found if n.startswith("dataset:")]
            if datasets:
                uri = conn.execute(
                    sa.select(dataset_version.c.source_uri)
                    .where(dataset_version.c.id.in_(datasets))
                    .order_by(dataset_version.c.created_at.desc())
                ).scalar()
                if uri is not None:
                    return Path(str(uri).removeprefix("file://"))
            seen.update(found)
            frontier = [n for n in found if n.startswith(("run:", "artifact:"))]
    return None
