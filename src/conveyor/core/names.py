"""The one rule every user-given name (model, pipeline, step, dataset) must follow.

Names end up in URLs, file paths, SQL and log lines, so they are restricted to a safe alphabet.
"""

from __future__ import annotations

import re

from conveyor.core.errors import ValidationError

__all__ = ["NAME_PATTERN", "validate_name"]

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_NAME_RE = re.compile(NAME_PATTERN)


def validate_name(kind: str, name: str) -> str:
    """Return ``name`` if it is valid for a ``kind`` ("model", "step" ...), else raise.

    Raises:
        ValidationError: naming the bad name and the rule.
    """
    # fullmatch, not match with ``$``: ``$`` also matches before a trailing newline.
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise ValidationError(
            f"{kind} name {name!r} is not valid",
            hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name
