"""The files ``conveyor ci`` writes, each for the reader that consumes it.

- ``report.md``: for people, in the job log and the job summary (GitHub appends it to
  ``$GITHUB_STEP_SUMMARY``, whose limit is 1 MiB per step: past that the report is cut on a
  line boundary and says so).
- ``comment.md``: the body of one sticky pull-request comment. Its first line is the hidden
  marker ``<!-- conveyor-ci -->``; the workflow looks for a comment holding it and edits that one
  instead of posting another. Kept under GitHub's 65,536-character comment limit.
- ``report.json``: for scripts, :meth:`CiResult.to_dict`.
- ``junit.xml``: for CI test views: one test case per pipeline step and per check, a failure
  carrying the observed value and the threshold; approvals left to people are skipped cases.
- ``metrics.txt``: OpenMetrics text (GitLab's metrics report, Prometheus' textfile collector),
  written with ``prometheus_client`` so that it is valid by construction.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from conveyor.core.atomic import atomic_write_bytes

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET
    from pathlib import Path

    from conveyor.project._ci import CiResult

__all__ = [
    "COMMENT_LIMIT",
    "COMMENT_MARKER",
    "GITHUB_STEP_SUMMARY",
    "SUMMARY_LIMIT",
    "render_comment",
    "render_junit",
    "render_markdown",
    "render_openmetrics",
    "truncate",
    "write_reports",
]

#: The file GitHub Actions shows as the job summary (set by the runner).
GITHUB_STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
COMMENT_MARKER = "<!-- conveyor-ci -->"
#: GitHub refuses a step summary above 1 MiB.
SUMMARY_LIMIT = 1024 * 1024
#: GitHub refuses a comment above 65,536 characters; a margin for the marker and the note.
COMMENT_LIMIT = 65_000


def write_reports(result: CiResult, out: Path, *, step_summary: Path | None = None) -> list[Path]:
    """Write the five report files into ``out`` (created if missing), each atomically, and
    append ``report.md`` to ``step_summary`` when given.

    Returns:
        The paths written, ``out``'s files first.
    """
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(result)
    files = {
        "report.md": markdown.encode(),
        "comment.md": render_comment(result).encode(),
        "report.json": (json.dumps(result.to_dict(), indent=2, default=str) + "\n").encode(),
        "junit.xml": render_junit(result),
        "metrics.txt": render_openmetrics(result),
    }
    written = []
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
        written.append(out / name)
    if step_summary is not None:
        # Appended, not replaced: earlier steps of the job may have written their own part.
        used = step_summary.stat().st_size if step_summary.exists() else 0
        text = truncate(markdown, max(SUMMARY_LIMIT - used - 1, 0), unit="bytes")
        with step_summary.open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        written.append(step_summary)
    return written


def truncate(text: str, limit: int, *, unit: str = "characters") -> str:
    """``text`` if it fits in ``limit`` (UTF-8 bytes when ``unit`` is ``"bytes"``), else its
    longest prefix of whole lines that fits together with a note saying it was cut."""

    def size(s: str) -> int:
        return len(s.encode()) if unit == "bytes" else len(s)

    if size(text) <= limit:
        return text
    note = f"\n\n_The report was cut at {limit:,} {unit}; the full one is report.md._\n"
    budget = limit - size(note)
    if budget <= 0:
        return ""
    kept: list[str] = []
    used = 0
    for line in text.splitlines(keepends=True):
        if used + size(line) > budget:
            break
        kept.append(line)
        used += size(line)
    return "".join(kept) + note


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def render_markdown(result: CiResult) -> str:
    """The report for people: verdict, model version, checks, steps."""
    verdict = "passed" if result.passed else "FAILED"
    icon = "✅" if result.passed else "❌"
    lines = [f"## {icon} Conveyor CI: {result.stage} gates {verdict}", ""]
    if result.model is not None:
        moved = " (promoted)" if result.promoted else ""
        lines.append(
            f"Model **{result.model}** version **{result.version}** "
            f"({result.version_stage}{moved}), project `{result.project}`."
        )
    else:
        lines.append(f"Project `{result.project}`: the pipeline did not produce a model version.")
    lines += ["", f"CI cache key: `{result.cache_key}`", ""]
    if result.failed:
        lines.append("**Failed:** " + ", ".join(f"`{_cell(f)}`" for f in result.failed))
        lines.append("")
    if result.checks:
        lines += [
            f"### Checks for {result.stage}",
            "",
            "| check | observed | threshold | result | detail |",
            "|---|---|---|---|---|",
        ]
        for c in result.checks:
            mark = "pass" if c.passed else "**FAIL**"
            lines.append(
                f"| `{_cell(c.check)}` | {_num(c.observed)} | {_num(c.threshold)} | {mark} "
                f"| {_cell(c.detail)} |"
            )
        lines.append("")
    for check, reason in result.skipped:
        lines.append(f"- skipped `{check}`: {reason}")
    for note in result.notes:
        lines.append(f"- note: {note}")
    if result.skipped or result.notes:
        lines.append("")
    lines += ["### Pipeline", "", "| step | status | seconds |", "|---|---|---|"]
    for s in result.steps:
        status = s.status if s.error is None else f"**{s.status}**: {_cell(s.error)}"
        lines.append(f"| `{s.name}` | {status} | {s.duration_s:.2f} |")
    return "\n".join(lines) + "\n"


def render_comment(result: CiResult) -> str:
    """The sticky pull-request comment: the marker, then the report, under the size limit."""
    body = truncate(render_markdown(result), COMMENT_LIMIT - len(COMMENT_MARKER) - 1)
    return f"{COMMENT_MARKER}\n{body}"


def render_junit(result: CiResult) -> bytes:
    """JUnit XML: suite ``pipeline`` (a case per step) and suite ``gates.<stage>`` (a case per
    check; approvals left to people are skipped cases)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name=f"conveyor ci {result.project}")
    pipeline = ET.SubElement(root, "testsuite", name="pipeline")
    for s in result.steps:
        case = ET.SubElement(
            pipeline, "testcase", classname="pipeline", name=s.name, time=f"{s.duration_s:.3f}"
        )
        if s.status == "failed":
            failure = ET.SubElement(case, "failure", message=s.error or "step failed")
            failure.text = s.error or "step failed"
    _counts(pipeline, len(result.steps), sum(s.status == "failed" for s in result.steps), 0)
    gates = ET.SubElement(root, "testsuite", name=f"gates.{result.stage}")
    for c in result.checks:
        case = ET.SubElement(gates, "testcase", classname=f"gates.{result.stage}", name=c.check)
        if not c.passed:
            message = f"observed {_num(c.observed)}, threshold {_num(c.threshold)}"
            failure = ET.SubElement(case, "failure", message=message, type="CheckFailed")
            failure.text = f"{c.check}: {message}; {c.detail}"
    for check, reason in result.skipped:
        case = ET.SubElement(gates, "testcase", classname=f"gates.{result.stage}", name=check)
        ET.SubElement(case, "skipped", message=reason)
    failed_checks = sum(not c.passed for c in result.checks)
    _counts(gates, len(result.checks) + len(result.skipped), failed_checks, len(result.skipped))
    total = len(result.steps) + len(result.checks) + len(result.skipped)
    _counts(root, total, len(result.failed), len(result.skipped))
    ET.indent(root)
    body = bytes(ET.tostring(root, encoding="utf-8"))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"


def _counts(element: ET.Element, tests: int, failures: int, skipped: int) -> None:
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", "0")
    element.set("skipped", str(skipped))


def render_openmetrics(result: CiResult) -> bytes:
    """OpenMetrics text: the verdict, each check's pass/observed/threshold, step durations."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.openmetrics.exposition import generate_latest

    labels = {"project": result.project, "stage": result.stage}

    def family(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*labels, *extra])

    passed = family("conveyor_ci_passed", "1 when every step and check passed, else 0")
    passed.add_metric(list(labels.values()), 1.0 if result.passed else 0.0)
    failed = family("conveyor_ci_failed_checks", "Steps and checks that failed")
    failed.add_metric(list(labels.values()), float(len(result.failed)))
    check_passed = family("conveyor_ci_check_passed", "1 when the check passed", ("check",))
    observed = family("conveyor_ci_check_observed", "The check's observed value", ("check",))
    threshold = family("conveyor_ci_check_threshold", "The check's threshold", ("check",))
    for c in result.checks:
        values = [*labels.values(), c.check]
        check_passed.add_metric(values, 1.0 if c.passed else 0.0)
        if c.observed is not None:
            observed.add_metric(values, c.observed)
        if c.threshold is not None:
            threshold.add_metric(values, c.threshold)
    seconds = family("conveyor_ci_step_duration_seconds", "Each step's duration", ("step",))
    for s in result.steps:
        seconds.add_metric([*labels.values(), s.name], s.duration_s)
    families = [passed, failed, check_passed, observed, threshold, seconds]

    class _Collected:
        def collect(self) -> list[GaugeMetricFamily]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected())
    text: bytes = generate_latest(registry)  # type: ignore[no-untyped-call]
    return text
