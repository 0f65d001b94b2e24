"""``conveyor model report MODEL VERSION``: the gate report of a version, as markdown or HTML."""

from __future__ import annotations

from pathlib import Path

import click

from conveyor.cli._common import console, open_from_context

__all__ = ["report"]

_FORMATS = ("md", "html")
_SUFFIXES = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


@click.command("report")
@click.argument("name")
@click.argument("version", type=int)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report to this file (.md or .html) instead of printing it.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default=None,
    help="md or html; default: from the --out suffix, else md.",
)
@click.pass_context
def report(
    ctx: click.Context, name: str, version: int, out_path: Path | None, fmt: str | None
) -> None:
    """The gate report of VERSION of model NAME: its evaluation, every check it ran with its
    numbers and why it passed or failed, and its reviews. The HTML page draws the reliability
    curve and the per-group fairness rates as charts (self-contained: no script, no CDN)."""
    from conveyor.core.errors import UsageError
    from conveyor.project import gate_report, render_html, render_markdown

    if fmt is None and out_path is not None:
        fmt = _SUFFIXES.get(out_path.suffix.lower())
        if fmt is None:
            raise UsageError(
                f"cannot tell the report format from '{out_path.name}'",
                hint="name the file .md or .html, or pass --format md|html",
            )
    with open_from_context(ctx) as project:
        gathered = gate_report(project, name, version)
    text = render_html(gathered) if fmt == "html" else render_markdown(gathered)
    if out_path is None:
        click.echo(text, nl=False)
        return
    from conveyor.core.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(out_path, text.encode("utf-8"))
    except OSError as exc:
        raise UsageError(
            f"cannot write the report to {out_path}: {exc.strerror or exc}",
            hint="pass an --out path in a folder that exists and is writable",
        ) from exc
    console().print(f"gate report of model [bold]{name}[/bold] v{version} written to {out_path}")
