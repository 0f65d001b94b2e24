"""``conveyor evaluate MODEL VERSION``: measure a version on the policy's evaluation dataset."""

from __future__ import annotations

import json

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.identity import current_user

__all__ = ["evaluate"]


@click.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the stored evaluation as JSON.")
@click.pass_context
def evaluate(ctx: click.Context, name: str, version: int, as_json: bool) -> None:
    """Evaluate VERSION of model NAME on the `evaluation:` dataset of policies.yaml.

    The dataset is registered by content digest; an evaluation of the same version on the same
    dataset version with the same settings is reused, not recomputed."""
    from conveyor.project import evaluate as evaluate_version

    with open_from_context(ctx) as project:
        stored = evaluate_version(project, model=name, version=version, actor=current_user())
    if as_json:
        click.echo(json.dumps(stored.to_dict(), indent=2, default=str))
        return
    from rich.table import Table

    out = console()
    out.print(
        f"model [bold]{name}[/bold] v{version} on dataset version {stored.dataset_version} "
        f"(evaluation {stored.id}, {stored.report.get('n', '?')} rows)"
    )
    table = Table("metric", "value")
    for key, value in sorted(stored.metrics.items()):
        table.add_row(key, "-" if value is None else f"{value:.4f}")
    out.print(table)
