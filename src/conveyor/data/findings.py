"""Findings: what a data check found, structured so it renders as text, JSON, HTML and rows.

A :class:`Finding` is one thing that did not pass: a schema violation, a quality problem, a
drifted column, a leak. It is *blocking* (the gate fails, ``conveyor data validate`` exits 1) or a
warning. Checks that pass leave no finding; the drift results of every column, drifted or not,
are kept in :attr:`DataReport.drift` so reports can show them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DataReport", "Finding", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars made Python, and NaN/infinity made None (JSON has neither)."""
    import math

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


@dataclass(frozen=True)
class Finding:
    """One check that did not pass.

    Attributes:
        column: The column it concerns, or None for the dataset as a whole.
        check: Dotted name: ``schema.missing_column``, ``drift.ks``, ``quality.missing_rate``,
            ``leakage.perfect_predictor`` ...
        observed: The measured value (a statistic, a rate, a count), when one exists.
        threshold: The bound it was compared with.
        blocking: Whether it fails the gate (else it is a warning).
        message: One line for people.
        details: JSON-ready particulars (counts, examples, p-values, effect sizes).
    """

    column: str | None
    check: str
    observed: float | None
    threshold: float | None
    blocking: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "check": self.check,
            "observed": self.observed,
            "threshold": self.threshold,
            "blocking": self.blocking,
            "message": self.message,
            "details": jsonable(self.details),
        }


@dataclass
class DataReport:
    """Everything one validation found, and the per-column drift results behind it.

    Attributes:
        findings: Every finding, blocking ones first, then by check and column.
        drift: One result per compared column (drifted or not), as JSON-ready dicts.
        summary: Rows and columns of both datasets, the share of drifted columns, and so on.
        charts: Per-column data the HTML report draws (histograms, category counts).
    """

    findings: list[Finding] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def passed(self) -> bool:
        return not self.blocking

    def sort(self) -> None:
        """Blocking findings first, then by check and column: a stable, readable order."""
        self.findings.sort(key=lambda f: (not f.blocking, f.check, f.column or ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "blocking": len(self.blocking),
            "warnings": len(self.findings) - len(self.blocking),
            "summary": jsonable(self.summary),
            "findings": [f.to_dict() for f in self.findings],
            "drift": jsonable(self.drift),
        }
