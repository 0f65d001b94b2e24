"""Running the installed ``conveyor`` command in its own process, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Result:
    code: int
    out: str
    err: str


def conveyor(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """Run the installed CLI as a user would, in its own process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    full_env.update(env or {})
    full_env.setdefault("CONVEYOR_USER", "e2e-user")
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
