"""Where a project is: its folder and its ``conveyor.yaml``, found without loading anything.

Kept apart from :mod:`conveyor.core.config` (pydantic, YAML) so the fast path of
``conveyor run`` can find the project in a few system calls.
"""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.core import env
from conveyor.core.errors import ConfigError

__all__ = ["CONFIG_FILE", "DEFAULT_STATE_DIR", "config_path", "find_project_dir"]

CONFIG_FILE = "conveyor.yaml"
DEFAULT_STATE_DIR = ".conveyor"


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding ``conveyor.yaml``, else ``start``."""
    override = os.environ.get(env.CONVEYOR_PROJECT_DIR)
    if override:
        return Path(override).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return here


def config_path(project_dir: Path | None) -> tuple[Path, Path]:
    """The project folder and its configuration file (which may not exist).

    Raises:
        ConfigError: ``CONVEYOR_CONFIG`` names a file that does not exist.
    """
    config_env = os.environ.get(env.CONVEYOR_CONFIG)
    if config_env:
        path = Path(config_env).resolve()
        if not path.is_file():
            raise ConfigError(
                f"{env.CONVEYOR_CONFIG} points to {path}, which does not exist",
                hint="unset it or point it to a conveyor.yaml",
            )
        return path.parent, path
    root = (project_dir or find_project_dir()).resolve()
    return root, root / CONFIG_FILE
