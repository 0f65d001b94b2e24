"""The ``conveyor`` command line: one module per noun, exit codes mapped in one place."""

from __future__ import annotations

from conveyor.cli._main import main

__all__ = ["main"]
