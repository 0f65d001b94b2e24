"""``python -m conveyor`` is the ``conveyor`` command."""

from __future__ import annotations

from conveyor.cli import main

main()
