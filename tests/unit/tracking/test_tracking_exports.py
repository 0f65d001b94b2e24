"""The public surface of ``conveyor.tracking``, and the top-level facade that users import."""

from __future__ import annotations

import subprocess
import sys

import conveyor
import conveyor.tracking as tracking


def test_all_is_sorted_and_complete() -> None:
    assert tracking.__all__ == [
        "RUN_STATUSES",
        "RunHandle",
        "RunRecord",
        "get_metrics",
        "list_runs",
        "start_run",
    ]
    for name in tracking.__all__:
        obj = getattr(tracking, name)
        if callable(obj):
            assert obj.__doc__, f"conveyor.tracking.{name} has no docstring"
            assert obj.__module__.startswith("conveyor.tracking."), name


def test_scripts_use_the_top_level_names() -> None:
    assert conveyor.start_run is tracking.start_run
    assert conveyor.list_runs is tracking.list_runs
    assert conveyor.get_metrics is tracking.get_metrics
    assert {"start_run", "list_runs", "get_metrics"} <= set(conveyor.__all__)


def test_importing_conveyor_does_not_load_the_store() -> None:
    code = (
        "import sys, conveyor\n"
        "before = 'sqlalchemy' in sys.modules\n"
        "conveyor.start_run\n"
        "print(before, 'sqlalchemy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
