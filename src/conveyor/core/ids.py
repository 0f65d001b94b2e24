"""Identifiers for rows that have no content to digest (runs, incidents)."""

from __future__ import annotations

import os
import time

__all__ = ["new_id"]


def new_id() -> str:
    """A 26-hex-digit id that sorts by creation time (48-bit ms clock + 56 random bits)."""
    return f"{int(time.time() * 1000):012x}{os.urandom(7).hex()}"
