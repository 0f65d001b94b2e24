"""A no-op run of 20 cached steps stays far below 100 ms of Conveyor's time (DESIGN.md: `dvc
repro` of 20 unchanged stages takes ~1 s)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

# Timing-sensitive (latency budgets, load): run alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

if TYPE_CHECKING:
    from tests.unit.pipeline.conftest import MakeProject

STEPS = 20


def _twenty_steps() -> dict[str, str]:
    lines = ["from conveyor import Pipeline, step", "from flow import helpers", ""]
    for i in range(STEPS):
        if i == 0:
            lines += ["@step", "def s0(seed):", "    return helpers.start(seed)", ""]
        else:
            lines += [
                "@step",
                f"def s{i}(s{i - 1}, k{i % 4}):",
                f"    return helpers.step(s{i - 1}, k{i % 4})",
                "",
            ]
    lines.append(f"pipeline = Pipeline([{', '.join(f's{i}' for i in range(STEPS))}], name='p20')")
    return {
        "flow/__init__.py": "",
        "flow/helpers.py": (
            "def start(seed):\n    return {'v': [seed] * 10}\n\n\n"
            "def step(prev, k):\n    return {'v': [x + k for x in prev['v']]}\n"
        ),
        "flow/pipe.py": "\n".join(lines) + "\n",
    }


def test_a_no_op_run_of_twenty_steps_takes_well_under_100_ms(make_project: MakeProject) -> None:
    project = make_project(_twenty_steps(), {"seed": 1, "k0": 0, "k1": 1, "k2": 2, "k3": 3})
    assert len(project.ran(project.run())) == STEPS
    pipeline = project.load()
    from conveyor.pipeline import run_pipeline

    timings = []
    for _ in range(5):
        start = time.perf_counter()
        result = run_pipeline(
            pipeline,
            params=project.params,
            metadata=project.metadata,
            artifacts=project.artifacts,
            actor="bench",
            root=project.root,
        )
        timings.append(time.perf_counter() - start)
        assert {s.status for s in result.steps} == {"cached"}
    # The best of five: the machine is shared, and the question is what Conveyor costs.
    assert min(timings) < 0.1, f"no-op runs took {[round(t * 1000, 1) for t in timings]} ms"
