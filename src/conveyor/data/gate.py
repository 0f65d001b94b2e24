"""The ``data_checks`` promotion gate: validate a dataset against its reference, and record the
findings in the metadata store against the dataset version.

The checks themselves are ``conveyor.data.validate``; the settings ``conveyor.data.settings``
(re-exported here, as the promotion code imports them from this module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.data.findings import DataReport, jsonable
from conveyor.data.settings import DataGateSettings
from conveyor.data.validate import validate_frames

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.store.metadata import MetadataStore

__all__ = ["DataGateSettings", "record_findings", "run_data_gate", "validate_frames"]


def run_data_gate(settings: DataGateSettings, *, current: Path, charts: bool = False) -> DataReport:
    """Read the reference and ``current`` and validate (see :func:`validate_frames`).

    Raises:
        NotFoundError: a dataset does not exist.
        ValidationError: a dataset is unreadable, empty or mixes types.
        ConfigError: the schema file does not parse, or a named column is missing.
    """
    from conveyor.data.reading import read_dataset

    reference = read_dataset(settings.reference)
    frame = read_dataset(current)
    return validate_frames(
        reference,
        frame,
        settings,
        reference_name=str(settings.reference),
        current_name=str(current),
        charts=charts,
    )


def record_findings(
    store: MetadataStore,
    dataset_id: str,
    report: DataReport,
    *,
    reference_id: str | None = None,
    actor: str,
) -> int:
    """Write one ``dataset_check`` row per finding, and one summary row, in one transaction.

    Each finding is a check that did not pass (``passed`` false); the summary row (check
    ``data_checks``, no column) records the verdict of the whole validation, so a clean dataset
    still has a row saying it was checked and passed.

    Returns:
        The number of rows written.
    """
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import dataset_check

    rows: list[dict[str, Any]] = [
        {
            "dataset_version": dataset_id,
            "reference_version": reference_id,
            "check": f.check,
            "column": f.column,
            "blocking": f.blocking,
            "passed": False,
            "observed": _finite(f.observed),
            "threshold": _finite(f.threshold),
            "details": jsonable({"message": f.message, **f.details}),
        }
        for f in report.findings
    ]
    rows.append(
        {
            "dataset_version": dataset_id,
            "reference_version": reference_id,
            "check": "data_checks",
            "column": None,
            "blocking": bool(report.blocking),
            "passed": report.passed,
            "observed": float(len(report.blocking)),
            "threshold": 0.0,
            "details": jsonable(
                {"warnings": len(report.findings) - len(report.blocking), "summary": report.summary}
            ),
        }
    )
    with store.write(actor) as tx:
        tx.conn.execute(sa.insert(dataset_check), [{**r, "created_at": tx.at} for r in rows])
        tx.audit(
            "dataset.checked",
            f"dataset:{dataset_id}",
            {
                "reference": reference_id,
                "passed": report.passed,
                "blocking": len(report.blocking),
                "findings": len(report.findings),
            },
        )
    return len(rows)


def _finite(x: float | None) -> float | None:
    import math

    return None if x is None or math.isnan(x) or math.isinf(x) else float(x)
