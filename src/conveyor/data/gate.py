"""The ``data_checks`` promotion gate: validate a dataset against its reference, and record the
findings in the metadata store against the dataset version.

The checks themselves are ``conveyor.data.validate``; the settings ``conveyor.data.settings``
(re-exported here, as the promotion code imports them from this module).

The gate computes the per-column distributions of both datasets (``charts``) and records them,
bounded, with the verdict, so the dashboard's Data page can draw reference against current
without re-reading either dataset: the files may be gone, or too large for a page view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.data.findings import DataReport, jsonable
from conveyor.data.settings import DataGateSettings
from conveyor.data.validate import validate_frames

if TYPE_CHECKING:
    import datetime as dt
    from pathlib import Path

    from conveyor.store.metadata import MetadataStore

__all__ = [
    "MAX_CHART_CATEGORIES",
    "MAX_CHART_COLUMNS",
    "DataGateSettings",
    "DatasetCheck",
    "dataset_checks",
    "record_findings",
    "run_data_gate",
    "stored_charts",
    "validate_frames",
]

#: At most this many columns' distributions are recorded per check (drifted columns first).
MAX_CHART_COLUMNS = 30
#: At most this many categories per categorical column (the most frequent in both datasets).
MAX_CHART_CATEGORIES = 20
# Numeric charts have ``conveyor.data.html``'s 20 bins; more than this is refused, not merged.
_MAX_BINS = 30
_MAX_LABEL = 64


def run_data_gate(settings: DataGateSettings, *, current: Path, charts: bool = True) -> DataReport:
    """Read the reference and ``current`` and validate (see :func:`validate_frames`).

    ``charts`` (on by default: the gate records them, see :func:`record_findings`) also
    computes both datasets' distribution per column, from the sorted values the drift tests
    already hold; it adds about a tenth to the validation's time.

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
    still has a row saying it was checked and passed. Its details also hold the reference and
    current distribution of each column, as :func:`stored_charts` bounds them.

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
                {
                    "warnings": len(report.findings) - len(report.blocking),
                    "summary": report.summary,
                    **stored_charts(report),
                }
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


def stored_charts(report: DataReport, *, limit: int = MAX_CHART_COLUMNS) -> dict[str, Any]:
    """The part of ``report.charts`` a check records: ``{"charts": {column: chart}}``, plus
    ``"charts_omitted"`` (how many columns did not fit) when more than ``limit`` have one.

    Drifted columns come first, then the others in the order they were compared. A chart is
    ``conveyor.data.html.chart_data``'s (``kind`` numeric or categorical, ``labels``, the
    ``reference`` and ``current`` shares of each bin or category) with the column's drift
    verdict (``drifted``, ``test``, ``statistic``) added; a categorical one keeps its
    :data:`MAX_CHART_CATEGORIES` most frequent categories. Nothing when no chart was computed.
    """
    if not report.charts:
        return {}
    verdicts = {str(d["column"]): d for d in report.drift}
    names = sorted(
        report.charts, key=lambda c: not (verdicts.get(c) or {}).get("drifted", False)
    )  # stable: the comparison order within drifted and within the rest
    kept: dict[str, Any] = {}
    for name in names:
        chart = report.charts[name]
        categorical = chart["kind"] == "categorical"
        if not categorical and len(chart["reference"]) > _MAX_BINS:
            continue
        if len(kept) == limit:
            break
        top = MAX_CHART_CATEGORIES if categorical else _MAX_BINS
        verdict = verdicts.get(name) or {}
        kept[name] = {
            "kind": chart["kind"],
            "labels": [str(label)[:_MAX_LABEL] for label in chart["labels"][:top]],
            "reference": list(chart["reference"][:top]),
            "current": list(chart["current"][:top]),
            "drifted": bool(verdict.get("drifted", False)),
            "test": verdict.get("test"),
            "statistic": verdict.get("statistic"),
        }
    stored: dict[str, Any] = {"charts": kept}
    if len(report.charts) > len(kept):
        stored["charts_omitted"] = len(report.charts) - len(kept)
    return stored


def _finite(x: float | None) -> float | None:
    import math

    return None if x is None or math.isnan(x) or math.isinf(x) else float(x)


@dataclass(frozen=True)
class DatasetCheck:
    """A validation of a dataset version: its verdict, its findings, and the reference and
    current distribution per column it recorded (``conveyor.data.gate.stored_charts``; empty
    for checks recorded without them)."""

    dataset_version: str
    reference_version: str | None
    passed: bool
    at: dt.datetime
    summary: dict[str, Any]
    findings: tuple[dict[str, Any], ...]
    dataset_name: str | None = None
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)
    charts_omitted: int = 0

    @property
    def dataset(self) -> str:
        """The dataset's registered name, else its version id (not every check registers it)."""
        return self.dataset_name or self.dataset_version


def dataset_checks(conn: sa.Connection, *, limit: int = 20) -> list[DatasetCheck]:
    """The newest ``limit`` validations (``conveyor data check`` and the data gate), newest
    first, each with the findings written in its transaction; one page's worth in two
    statements."""
    from conveyor.store.metadata.schema import dataset_check, dataset_version

    d = dataset_check
    summaries = conn.execute(
        sa.select(d, dataset_version.c.name.label("dataset_name"))
        .outerjoin(dataset_version, dataset_version.c.id == d.c.dataset_version)
        .where(d.c.check == "data_checks", d.c.column.is_(None))
        .order_by(d.c.id.desc())
        .limit(limit)
    ).all()
    if not summaries:
        return []
    findings = conn.execute(
        sa.select(d)
        .where(
            d.c.dataset_version.in_({s.dataset_version for s in summaries}),
            d.c.created_at.in_({s.created_at for s in summaries}),
            d.c.check != "data_checks",
        )
        .order_by(d.c.id)
    ).all()
    by_run: dict[tuple[str, dt.datetime], list[dict[str, Any]]] = {}
    for f in findings:
        by_run.setdefault((f.dataset_version, f.created_at), []).append(
            {
                "check": f.check,
                "column": f.column,
                "blocking": f.blocking,
                "observed": f.observed,
                "threshold": f.threshold,
                "message": (f.details or {}).get("message", ""),
            }
        )
    out = []
    for s in summaries:
        details = dict(s.details or {})
        charts = details.pop("charts", None)
        omitted = details.pop("charts_omitted", 0)
        out.append(
            DatasetCheck(
                dataset_version=s.dataset_version,
                reference_version=s.reference_version,
                passed=s.passed,
                at=s.created_at,
                summary=details,
                findings=tuple(by_run.get((s.dataset_version, s.created_at), [])),
                dataset_name=s.dataset_name,
                charts=charts if isinstance(charts, dict) else {},
                charts_omitted=omitted if isinstance(omitted, int) else 0,
            )
        )
    return out
