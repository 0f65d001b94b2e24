"""End-to-end fixtures: a copy of the example project with small generated data, and a runner
for the installed ``conveyor`` command."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "churn"


@pytest.fixture(scope="session")
def generated_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small January, drifted February and a January hold-out, generated once per session."""
    folder = tmp_path_factory.mktemp("data")
    spec = importlib.util.spec_from_file_location("_gen", EXAMPLE / "data" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    module.generate("2026-01", 3000, 7, drift=False).to_csv(folder / "2026-01.csv", index=False)
    module.generate("2026-02", 3000, 8, drift=True).to_csv(folder / "2026-02.csv", index=False)
    module.generate("2026-01", 1000, 9, drift=False).to_csv(
        folder / "eval-2026-01.csv", index=False
    )
    return folder


@pytest.fixture
def project(tmp_path: Path, generated_data: Path) -> Path:
    """A fresh copy of the example project with its data in place."""
    root = tmp_path / "churn"
    shutil.copytree(
        EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".conveyor", "*.csv")
    )
    for csv in generated_data.iterdir():
        shutil.copy(csv, root / "data" / csv.name)
    return root
