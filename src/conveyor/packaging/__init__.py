"""Packaging: models saved safely (skops, never pickle) into verified, content-addressed bundles.

Importing this package is cheap: ``Model`` is defined without pandas or scikit-learn, and every
other name is imported on first use, because users' step modules do ``from conveyor import
Model`` and ``conveyor --help`` must stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conveyor.packaging._model import Model

if TYPE_CHECKING:
    from conveyor.packaging._bundle import Bundle, LoadedModel, build_bundle, load_bundle
    from conveyor.packaging._codec import (
        check_zip,
        decode_frame,
        decode_model,
        dump_estimator,
        encode_frame,
        encode_model,
        load_estimator,
    )
    from conveyor.packaging._env import EnvironmentLock, lock_environment
    from conveyor.packaging._manifest import Manifest
    from conveyor.packaging._signature import ColumnSpec, Signature

__all__ = [
    "Bundle",
    "ColumnSpec",
    "EnvironmentLock",
    "LoadedModel",
    "Manifest",
    "Model",
    "Signature",
    "build_bundle",
    "check_zip",
    "decode_frame",
    "decode_model",
    "dump_estimator",
    "encode_frame",
    "encode_model",
    "load_bundle",
    "load_estimator",
    "lock_environment",
]

_LAZY = {
    "Bundle": "conveyor.packaging._bundle",
    "ColumnSpec": "conveyor.packaging._signature",
    "EnvironmentLock": "conveyor.packaging._env",
    "LoadedModel": "conveyor.packaging._bundle",
    "Manifest": "conveyor.packaging._manifest",
    "Signature": "conveyor.packaging._signature",
    "build_bundle": "conveyor.packaging._bundle",
    "check_zip": "conveyor.packaging._codec",
    "decode_frame": "conveyor.packaging._codec",
    "decode_model": "conveyor.packaging._codec",
    "dump_estimator": "conveyor.packaging._codec",
    "encode_frame": "conveyor.packaging._codec",
    "encode_model": "conveyor.packaging._codec",
    "load_estimator": "conveyor.packaging._codec",
    "load_bundle": "conveyor.packaging._bundle",
    "lock_environment": "conveyor.packaging._env",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.packaging' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
