"""The public surface of ``conveyor.pipeline``, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import conveyor
import conveyor.pipeline as pipeline


def test_all_is_sorted_and_complete() -> None:
    assert pipeline.__all__ == sorted(pipeline.__all__)
    assert pipeline.__all__ == [
        "DaskExecutor",
        "Executor",
        "InProcessExecutor",
        "Pipeline",
        "PipelineResult",
        "ProcessExecutor",
        "Step",
        "StepEvent",
        "StepOutcome",
        "StepResult",
        "StepTask",
        "execute",
        "executor_for",
        "load_pipeline",
        "run_pipeline",
        "step",
        "using_executor",
    ]
    for name in pipeline.__all__:
        assert getattr(pipeline, name).__module__.startswith("conveyor.pipeline")


def test_users_import_step_and_pipeline_from_conveyor() -> None:
    assert conveyor.step is pipeline.step
    assert conveyor.Pipeline is pipeline.Pipeline


def test_importing_the_pipeline_package_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from conveyor import Pipeline, step\n"
        "import conveyor.pipeline\n"
        "heavy = ('pandas', 'numpy', 'pyarrow', 'sklearn', 'skops', 'sqlalchemy', 'dask',\n"
        "         'distributed')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
