"""Which source files are the project's own code, as opposed to installed libraries.

Project code is what a step's cache key follows (an edit to it re-runs the step) and what
:func:`~conveyor.pipeline.load_pipeline` re-imports fresh. Installed code is covered by the
environment digest instead. A file is the project's when it lies under the project root and not
inside an installed location there (a ``.venv``, a ``site-packages`` folder), and is not
Conveyor's own code (an editable install of Conveyor may live in the root during development).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["ProjectFiles"]

_INSTALL_DIRS = frozenset({"site-packages", "dist-packages", "__pypackages__"})
_CONVEYOR_DIR = str(Path(__file__).resolve().parents[1])


class ProjectFiles:
    """Answers "is this file the project's code, and what is its path relative to the root?"."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._prefix = str(self.root) + os.sep
        # An interpreter prefix inside the root (a project-local virtual environment) is
        # installed code; one that contains the root (/usr with a project in /usr/src) is not
        # a reason to exclude anything.
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, _CONVEYOR_DIR}
        self._excluded = tuple(
            str(Path(p).resolve()) + os.sep
            for p in prefixes
            if str(Path(p).resolve()).startswith(self._prefix)
        )
        self._cache: dict[str, str | None] = {}

    def relative(self, filename: str | None) -> str | None:
        """The POSIX path of ``filename`` relative to the root if it is project code, else None."""
        if not filename:
            return None
        try:
            return self._cache[filename]
        except KeyError:
            pass
        rel: str | None = None
        if os.path.isabs(filename):
            real = os.path.realpath(filename)
            if real.startswith(self._prefix) and not real.startswith(self._excluded):
                inside = Path(real[len(self._prefix) :])
                if _INSTALL_DIRS.isdisjoint(inside.parts):
                    rel = inside.as_posix()
        self._cache[filename] = rel
        return rel
