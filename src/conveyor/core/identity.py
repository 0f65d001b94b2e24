"""Who is acting: recorded on every audit event, stage change and approval."""

from __future__ import annotations

import getpass
import os

from conveyor.core.env import CONVEYOR_USER

__all__ = ["current_user"]


def current_user() -> str:
    """``$CONVEYOR_USER`` if set, else the operating-system user."""
    user = os.environ.get(CONVEYOR_USER)
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # Containers often run with a uid that has no passwd entry.
        return f"uid:{os.getuid()}"
