"""``conveyor data validate|profile|drift``: the face of ``conveyor.data``.

These commands work on files and need no project: they are what a CI job runs on a fresh
extract before training. Exit codes: 0 no blocking finding, 1 a blocking finding (the table goes
to stderr with the error line, so stdout stays clean), 2 a usage or configuration error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli._common import console

if TYPE_CHECKING:
    from conveyor.data.findings import DataReport

__all__ = ["data"]

_FILE = click.Path(exists=False, dir_okay=True, path_type=Path)
_METHODS = ("auto", "ks", "wasserstein", "chisquare", "jensenshannon", "psi")


@click.group()
def data() -> None:
    """Validate datasets, profile them, and measure drift."""


def _render(report: DataReport, *, stderr: bool) -> None:
    from rich.table import Column, Table

    out = console(stderr=stderr)
    if report.findings:
        # Names stay whole (CI logs are grepped for them); the message wraps instead.
        table = Table(
            Column("severity", no_wrap=True),
            Column("column", no_wrap=True),
            Column("check", no_wrap=True),
            "observed",
            "threshold",
            Column("message", ratio=1),
        )
        for f in report.findings:
            table.add_row(
                "[red]blocking[/red]" if f.blocking else "[yellow]warning[/yellow]",
                f.column or "-",
                f.check,
                "-" if f.observed is None else f"{f.observed:.4g}",
                "-" if f.threshold is None else f"{f.threshold:.4g}",
                f.message,
            )
        out.print(table)
    s = report.summary
    out.print(
        f"{len(report.blocking)} blocking, {len(report.findings) - len(report.blocking)} "
        f"warning(s); {s.get('drifted_columns', 0)} of {s.get('compared_columns', 0)} "
        "compared columns drifted"
    )


def _finish(
    report: DataReport, *, json_out: Path | None, html_out: Path | None, title: str
) -> None:
    from conveyor.core.atomic import atomic_write_bytes
    from conveyor.core.errors import CheckFailedError

    if json_out is not None:
        atomic_write_bytes(json_out, json.dumps(report.to_dict(), indent=2).encode())
    if html_out is not None:
        from conveyor.data.html import render_html

        atomic_write_bytes(html_out, render_html(report, title=title).encode())
    _render(report, stderr=not report.passed)
    if not report.passed:
        first = report.blocking[0]
        raise CheckFailedError(
            f"{len(report.blocking)} blocking data finding(s); first: {first.message}",
            hint="fix the data, or move a check to a warning with `warn:` in data_checks",
            details=report.to_dict(),
        )


def _settings(options: dict[str, Any]) -> Any:
    from conveyor.data.settings import DataGateSettings

    mapping = {k: v for k, v in options.items() if v is not None}
    return DataGateSettings.from_mapping(mapping, where="command line", root=Path.cwd())


@data.command("validate")
@click.argument("current", type=_FILE)
@click.option("--reference", required=True, type=_FILE, help="Reference (training) dataset.")
@click.option("--target", default=None, help="Label column (enables the leakage checks).")
@click.option("--schema", type=_FILE, default=None, help="Table Schema JSON to validate against.")
@click.option("--label-time", default=None, help="Column holding when each label was known.")
@click.option("--block-on-column-drift", is_flag=True, help="A drifted column blocks.")
@click.option("--method", type=click.Choice(_METHODS), default="auto", help="Drift test.")
@click.option("--report", "html_out", type=_FILE, default=None, help="Write an HTML report.")
@click.option("--json", "json_out", type=_FILE, default=None, help="Write the report as JSON.")
def validate(
    current: Path,
    reference: Path,
    target: str | None,
    schema: Path | None,
    label_time: str | None,
    block_on_column_drift: bool,
    method: str,
    html_out: Path | None,
    json_out: Path | None,
) -> None:
    """Check CURRENT against REFERENCE: schema, quality, drift and leakage.

    Exit code 1 when a finding blocks (schema violations, missing-value jumps, leakage,
    dataset-level drift); drifted columns alone only warn."""
    from conveyor.data.gate import run_data_gate

    settings = _settings(
        {
            "reference": str(reference),
            "target": target,
            "schema": None if schema is None else str(schema),
            "label_time": label_time,
            "block_on_column_drift": block_on_column_drift,
            "method": method,
        }
    )
    report = run_data_gate(settings, current=current, charts=html_out is not None)
    _finish(report, json_out=json_out, html_out=html_out, title=f"Data validation: {current}")


@data.command("drift")
@click.argument("current", type=_FILE)
@click.option("--reference", required=True, type=_FILE, help="Reference dataset.")
@click.option("--method", type=click.Choice(_METHODS), default="auto", help="Drift test.")
@click.option("--block-on-column-drift", is_flag=True, help="A drifted column blocks.")
@click.option("--report", "html_out", type=_FILE, default=None, help="Write an HTML report.")
@click.option("--json", "json_out", type=_FILE, default=None, help="Write the report as JSON.")
def drift(
    current: Path,
    reference: Path,
    method: str,
    block_on_column_drift: bool,
    html_out: Path | None,
    json_out: Path | None,
) -> None:
    """Per-column and dataset drift of CURRENT against REFERENCE (exit 1 on dataset drift)."""
    from rich.table import Table

    from conveyor.data.validate import run_drift

    settings = _settings(
        {
            "reference": str(reference),
            "method": method,
            "block_on_column_drift": block_on_column_drift,
        }
    )
    report = run_drift(settings, current=current, charts=html_out is not None)
    table = Table("column", "test", "statistic", "threshold", "p (BH)", "effect", "verdict")
    for r in report.drift:
        p = "-" if r.get("p_adjusted") is None else f"{r['p_adjusted']:.3g}"
        table.add_row(
            r["column"],
            r["test"],
            f"{r['statistic']:.4g}",
            f"{r['threshold']:.4g}",
            p,
            f"{r['effect_name']}={r['effect_size']:.3g}",
            "[yellow]drift[/yellow]" if r["drifted"] else "no drift",
        )
    console(stderr=not report.passed).print(table)
    _finish(report, json_out=json_out, html_out=html_out, title=f"Drift: {current}")


def _value(x: float | None, kind: str) -> str:
    if x is None:
        return "-"
    if kind == "datetime":  # stats hold datetimes as seconds since the epoch
        import datetime as dt

        return dt.datetime.fromtimestamp(x, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{x:.4g}"


@data.command("profile")
@click.argument("file", type=_FILE)
@click.option("--schema-out", type=_FILE, default=None, help="Write the inferred Table Schema.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def profile(file: Path, schema_out: Path | None, as_json: bool) -> None:
    """Column statistics of FILE, and its inferred Table Schema (--schema-out)."""
    from rich.table import Table

    from conveyor.core.atomic import atomic_write_bytes
    from conveyor.data.findings import jsonable
    from conveyor.data.validate import profile_dataset

    stats, schema = profile_dataset(file)
    if schema_out is not None:
        atomic_write_bytes(schema_out, (json.dumps(jsonable(schema), indent=2) + "\n").encode())
    if as_json:
        click.echo(json.dumps(jsonable(stats), indent=2))
        return
    table = Table("column", "kind", "missing", "distinct", "min", "median", "max", "top")
    for name, c in stats["columns"].items():
        q = c.get("quantiles", {})
        top = ", ".join(list(c.get("top", {}))[:3])
        table.add_row(
            name,
            c["kind"],
            f"{c['null_rate']:.1%}",
            str(c["distinct"]),
            _value(c.get("min"), c["kind"]),
            _value(q.get("0.5"), c["kind"]),
            _value(c.get("max"), c["kind"]),
            top,
        )
    out = console()
    out.print(f"{file}: {stats['rows']} rows")
    out.print(table)
    if schema_out is not None:
        out.print(f"schema written to {schema_out}")
