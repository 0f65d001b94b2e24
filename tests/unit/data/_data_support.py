"""Real data for the data-check tests: the churn example's generator and random splits of it."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

_GENERATE = Path(__file__).parents[3] / "examples" / "churn" / "data" / "generate.py"


@cache
def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("churn_generate_for_data", _GENERATE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def _churn(rows: int, seed: int, drift: bool, month: str) -> pd.DataFrame:
    return _generator().generate(month, rows=rows, seed=seed, drift=drift)


def churn(
    rows: int = 6000, seed: int = 7, *, drift: bool = False, month: str = "2026-01"
) -> pd.DataFrame:
    """A fresh copy of one month of churn data (tests may edit it)."""
    return _churn(rows, seed, drift, month).copy()


def split(frame: pd.DataFrame, seed: int, share: float = 0.7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A clean random split: both parts are samples of one distribution."""
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(len(frame) * share)
    return (
        frame.iloc[order[:cut]].reset_index(drop=True),
        frame.iloc[order[cut:]].reset_index(drop=True),
    )
