"""The clock: every timestamp Conveyor writes is timezone-aware UTC."""

from __future__ import annotations

import datetime as dt

__all__ = ["utcnow"]


def utcnow() -> dt.datetime:
    """Now, in UTC, with microseconds."""
    return dt.datetime.now(dt.UTC)
