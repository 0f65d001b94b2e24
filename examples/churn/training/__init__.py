"""The churn example's training pipeline: its steps and feature columns live in ``steps``."""

from __future__ import annotations

from . import steps

__all__ = ["steps"]
