"""Fixtures for the churn example's tests, which import the example as its users would."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

    import pandas as pd

EXAMPLE_ROOT = Path(__file__).resolve().parent.parent

# The example is a project of its own, not a package of the repository: ``training`` is
# importable the way it is when a user runs the pipeline from the example's root.
if str(EXAMPLE_ROOT) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_ROOT))

# Small enough to keep the whole module under a few seconds, large enough for stable AUCs.
ROWS = 8_000
SEED = 7


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    """The data generator script, loaded from its path.

    ``data/`` is a folder of data, not a package, and a top-level module named ``data`` or
    ``generate`` would shadow others; loading by path avoids both.
    """
    path = EXAMPLE_ROOT / "data" / "generate.py"
    spec = importlib.util.spec_from_file_location("churn_example_generate", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would: ``dataclasses`` looks the module up.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def base_month(generator: ModuleType) -> pd.DataFrame:
    """January, the base regime."""
    frame: pd.DataFrame = generator.generate("2026-01", rows=ROWS, seed=SEED, drift=False)
    return frame


@pytest.fixture(scope="session")
def drifted_month(generator: ModuleType) -> pd.DataFrame:
    """February, the drifted regime."""
    frame: pd.DataFrame = generator.generate("2026-02", rows=ROWS, seed=SEED, drift=True)
    return frame
