"""Data checks: dataset versions, schemas, quality, drift and leakage, as steps, gates and CLI."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.data.findings import DataReport, Finding
    from conveyor.data.gate import record_findings, run_data_gate
    from conveyor.data.html import render_html
    from conveyor.data.pandera_export import to_pandera
    from conveyor.data.schema import infer_schema, load_schema
    from conveyor.data.settings import DataGateSettings
    from conveyor.data.validate import profile_dataset, run_drift, validate_frames
    from conveyor.data.versions import (
        DatasetVersion,
        dataset_digest,
        get_dataset,
        read_columns,
        read_dataset,
        register_dataset,
    )

__all__ = [
    "DataGateSettings",
    "DataReport",
    "DatasetVersion",
    "Finding",
    "dataset_digest",
    "get_dataset",
    "infer_schema",
    "load_schema",
    "profile_dataset",
    "read_columns",
    "read_dataset",
    "record_findings",
    "register_dataset",
    "render_html",
    "run_data_gate",
    "run_drift",
    "to_pandera",
    "validate_frames",
]

# pandas, pyarrow and scipy load on first use, not on `import conveyor.data`.
_LAZY = {
    "DataGateSettings": "conveyor.data.settings",
    "DataReport": "conveyor.data.findings",
    "DatasetVersion": "conveyor.data.versions",
    "Finding": "conveyor.data.findings",
    "dataset_digest": "conveyor.data.versions",
    "get_dataset": "conveyor.data.versions",
    "infer_schema": "conveyor.data.schema",
    "load_schema": "conveyor.data.schema",
    "profile_dataset": "conveyor.data.validate",
    "read_columns": "conveyor.data.versions",
    "read_dataset": "conveyor.data.versions",
    "record_findings": "conveyor.data.gate",
    "register_dataset": "conveyor.data.versions",
    "render_html": "conveyor.data.html",
    "run_data_gate": "conveyor.data.gate",
    "run_drift": "conveyor.data.validate",
    "to_pandera": "conveyor.data.pandera_export",
    "validate_frames": "conveyor.data.validate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'conveyor.data' has no attribute {name!r}")
