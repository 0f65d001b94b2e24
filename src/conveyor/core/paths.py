"""The one way a path given as data (an archive entry, a store key) becomes a path on disk.

Such a path comes from something Conveyor did not write itself, or no longer trusts: a tar
member, a folder name inside a store someone else can write to. :func:`inside` resolves it under
its root and refuses anything that lands elsewhere: an absolute path, a ``..`` part, a NUL byte,
or a symbolic link on the way whose target leaves the root. A link that stays inside the root is
followed: it cannot reach anything the root does not already hold.

The check is done on the resolved path, so it holds for the state of the disk at the time of the
call; a folder that someone can change between the check and the use is not protected by it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from conveyor.core.errors import ValidationError

__all__ = ["inside"]

_HINT = "only relative paths that stay inside the folder are accepted; nothing was read or written"


def inside(root: Path, relative: str | Path) -> Path:
    """``relative`` resolved under ``root``, provided it stays there.

    Args:
        root: The folder the path must stay in (it need not exist yet).
        relative: A relative path, ``/``-separated or native.

    Returns:
        The absolute, resolved path (symbolic links followed).

    Raises:
        ValidationError: ``relative`` is empty, absolute (``/x``, ``C:\\x``, ``\\\\host``),
            contains a NUL byte or a ``..`` part, resolves outside ``root`` through a
            symbolic link, or cannot be resolved (a loop of links).
    """
    text = os.fspath(relative)
    reason = _malformed(text)
    if reason is not None:
        raise ValidationError(f"path {text!r} {reason} (root {root})", hint=_HINT)
    try:
        base = root.resolve()
        path = (base / text).resolve()
    except (RuntimeError, OSError) as exc:
        # A loop of links (RuntimeError before Python 3.13, OSError after), a name too long.
        raise ValidationError(
            f"path {text!r} cannot be resolved under {root}: {exc}", hint=_HINT
        ) from exc
    if not path.is_relative_to(base):
        raise ValidationError(
            f"path {text!r} leads outside {base} (to {path}) through a symbolic link", hint=_HINT
        )
    return path


def _malformed(text: str) -> str | None:
    """Why ``text`` cannot be a relative path inside a root, or None when it can be one."""
    if not text:
        return "is empty"
    if "\x00" in text:
        return "contains a NUL byte"
    # Windows' forms too (drive letters, UNC): an archive made there must not reach C:\ either.
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).anchor:
        return "is absolute"
    if ".." in PurePosixPath(text).parts or ".." in PureWindowsPath(text).parts:
        return "contains '..'"
    return None
