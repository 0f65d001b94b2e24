"""Data validation as one call: schema, quality, drift and leakage of current data against a
reference, plus drift alone and profiles (``conveyor data validate|drift|profile``).

``validate_frames`` is the service behind ``conveyor data validate``, the ``data_checks`` gate
(``conveyor.data.gate``) and the example pipeline's validation step, so all three judge alike.

What blocks by default (the issue's "sensible defaults"): schema violations, missing-value
jumps, leakage, and dataset-level drift. Warnings: a drifted column, duplicate rows, constant
columns, outliers, volume changes, columns the schema does not declare. ``block_on_column_drift``
makes drifted columns block; ``block`` and ``warn`` (lists of check names or prefixes such as
``quality.duplicate_rows`` or ``quality``) move any check either way.

Without a schema file, the schema is inferred from the reference (``conveyor.data.schema``).
Columns are sketched one at a time (``_column_pass``) and released once the checks that need
every value are done, which keeps memory beyond the data at one column's sorted copies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConfigError
from conveyor.data.findings import DataReport, Finding

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from conveyor.data.profile import ColumnSketch
    from conveyor.data.settings import DataGateSettings

__all__ = ["profile_dataset", "run_drift", "validate_frames"]


def _matches(check: str, names: tuple[str, ...]) -> bool:
    return any(check == n or check.startswith(n + ".") for n in names)


def validate_frames(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: DataGateSettings,
    *,
    reference_name: str = "reference",
    current_name: str = "current",
    schema: dict[str, Any] | None = None,
    charts: bool = False,
) -> DataReport:
    """Check ``current`` against ``reference``: schema, quality, drift, leakage.

    Args:
        reference: The reference (training) data.
        current: The data to check.
        settings: Thresholds and what blocks.
        reference_name: The reference, for messages (its path).
        current_name: The current data, for messages.
        schema: A parsed Table Schema; None infers it from the reference (or reads
            ``settings.schema``).
        charts: Also compute what the HTML report draws.

    Raises:
        ValidationError: the reference has an entirely empty column, or infinite values.
        ConfigError: the target or label time names a column the data lacks.
    """
    import numpy as np

    from conveyor.data import drift, leakage, quality
    from conveyor.data.schema import check_schema, infer_schema, load_schema

    names = [str(c) for c in reference.columns]
    for label, column in (("target", settings.target), ("label_time", settings.label_time)):
        if column is not None and column not in names:
            raise ConfigError(
                f"{label} '{column}' is not a column of {reference_name}",
                hint=f"its columns: {', '.join(names)}",
            )
    cols = _column_pass(reference, current, settings, reference_name, current_name, charts=charts)
    ref_sk, cur_sk = cols.reference, cols.current
    if schema is None:
        schema = load_schema(settings.schema) if settings.schema else infer_schema(ref_sk)
    report = DataReport()
    report.findings += check_schema(schema, current, cur_sk)
    common = [c for c in ref_sk if c in cur_sk and reference[c].dtype == current[c].dtype]
    cur_hashes = leakage.row_hashes(current, common) if common else None
    ref_sorted = np.sort(leakage.row_hashes(reference, common)) if common else None
    cur_sorted = np.sort(cur_hashes) if cur_hashes is not None else None
    report.findings += quality.quality_findings(
        ref_sk, cur_sk, settings.quality, ref_hashes=ref_sorted, cur_hashes=cur_sorted
    )
    report.findings += cols.outliers
    results = cols.drift
    report.drift = results
    report.findings += drift.judge(results, settings.drift)
    if settings.target is not None:
        for frame, sketches, which in (
            (reference, ref_sk, "reference"),
            (current, cur_sk, "current"),
        ):
            if settings.target in sketches:
                found = leakage.leakage_findings(
                    frame,
                    sketches,
                    settings.target,
                    max_auc=settings.max_auc,
                    label_time=settings.label_time if settings.label_time in sketches else None,
                    dataset=which,
                )
                seen = {(f.check, f.column) for f in report.findings}
                report.findings += [f for f in found if (f.check, f.column) not in seen]
    if settings.shared_rows and ref_sorted is not None and cur_hashes is not None:
        report.findings += leakage.shared_row_findings(ref_sorted, cur_hashes, common)
    report.findings = [_severity(f, settings) for f in report.findings]
    report.sort()
    report.summary = {
        "reference": {"name": reference_name, "rows": len(reference), "columns": len(ref_sk)},
        "current": {"name": current_name, "rows": len(current), "columns": len(cur_sk)},
        "compared_columns": len(results),
        "drifted_columns": sum(r["drifted"] for r in results),
        "drift_share": (sum(r["drifted"] for r in results) / len(results)) if results else 0.0,
    }
    report.charts = cols.charts
    return report


@dataclass
class _ColumnPass:
    reference: dict[str, ColumnSketch]
    current: dict[str, ColumnSketch]
    drift: list[dict[str, Any]]
    outliers: list[Finding]
    charts: dict[str, dict[str, Any]]


def _column_pass(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: DataGateSettings,
    reference_name: str,
    current_name: str,
    *,
    charts: bool,
    outliers: bool = True,
) -> _ColumnPass:
    """Sketch the columns one at a time, run what needs every value, then release the values.

    Drift, outliers and charts read the sorted values; everything else reads summaries. So
    memory beyond the data holds one column's sorted copies at a time, not every column's.

    Raises:
        ValidationError: a reference column is entirely empty, or a column holds infinities.
    """
    from conveyor.core.errors import ValidationError
    from conveyor.data import drift, quality
    from conveyor.data.profile import sketch_checked

    out = _ColumnPass({}, {}, [], [], {})
    for column in reference.columns:
        name = str(column)
        ref = sketch_checked(reference[column], name=name, what=reference_name)
        if ref.present == 0:
            raise ValidationError(
                f"dataset {reference_name}: column '{name}' is entirely empty, so nothing can "
                "be inferred or compared for it",
                hint="drop the column or fill it in the reference data",
            )
        if column in current.columns:
            cur = sketch_checked(current[column], name=name, what=current_name)
            out.drift += drift.compare_columns({name: ref}, {name: cur}, settings.drift)
            finding = quality.outlier_finding(ref, cur, settings.quality) if outliers else None
            out.outliers += [finding] if finding is not None else []
            if charts:
                from conveyor.data.html import chart_data

                out.charts.update(chart_data({name: ref}, {name: cur}))
            out.current[name] = cur.release()
        out.reference[name] = ref.release()
    for column in current.columns:
        if str(column) not in out.current:
            out.current[str(column)] = sketch_checked(
                current[column], name=str(column), what=current_name
            ).release()
    return out


def _severity(f: Finding, settings: DataGateSettings) -> Finding:
    if _matches(f.check, settings.block) and not f.blocking:
        return replace(f, blocking=True)
    if _matches(f.check, settings.warn) and f.blocking:
        return replace(f, blocking=False)
    return f


def run_drift(settings: DataGateSettings, *, current: Path, charts: bool = False) -> DataReport:
    """Drift only, per column and for the dataset (``conveyor data drift``).

    Raises:
        NotFoundError: a dataset does not exist.
        ValidationError: a dataset is unreadable, empty or mixes types.
    """
    from conveyor.data import drift
    from conveyor.data.reading import read_dataset

    reference = read_dataset(settings.reference)
    frame = read_dataset(current)
    passed = _column_pass(
        reference,
        frame,
        settings,
        str(settings.reference),
        str(current),
        charts=charts,
        outliers=False,
    )
    results = passed.drift
    findings = drift.judge(results, settings.drift)
    report = DataReport(findings=[_severity(f, settings) for f in findings], drift=results)
    report.sort()
    report.charts = passed.charts
    drifted = sum(r["drifted"] for r in results)
    report.summary = {
        "reference": {"name": str(settings.reference), "rows": len(reference)},
        "current": {"name": str(current), "rows": len(frame)},
        "compared_columns": len(results),
        "drifted_columns": drifted,
        "drift_share": drifted / len(results) if results else 0.0,
    }
    return report


def profile_dataset(source: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The statistics and the inferred Table Schema of a dataset (``conveyor data profile``).

    Raises:
        NotFoundError: the dataset does not exist.
        ValidationError: it is unreadable, empty, mixes types, or has an entirely empty column
            (whose type cannot be inferred).
    """
    from conveyor.core.errors import ValidationError
    from conveyor.data.profile import profile_stats, sketch_checked
    from conveyor.data.reading import read_dataset
    from conveyor.data.schema import infer_schema

    frame = read_dataset(source)
    sketches = {
        str(c): sketch_checked(frame[c], name=str(c), what=str(source)).release()
        for c in frame.columns
    }
    for name, s in sketches.items():
        if s.present == 0:
            raise ValidationError(
                f"dataset {source}: column '{name}' is entirely empty, so its type cannot be "
                "inferred",
                hint="drop the column or fill it, or write its schema field by hand",
            )
    return profile_stats(sketches), infer_schema(sketches)
