"""The entry point: the command group, logging set-up, and the one map from errors to exit codes.

Exit codes (CI depends on them): 0 ok, 1 a gate or check failed, 2 usage or configuration
error, 3 infrastructure unavailable. Conveyor's own errors print one line, ``error: ...``; only
a bug prints a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from conveyor import __version__
from conveyor.core.env import CONVEYOR_LOG_LEVEL
from conveyor.core.errors import ConveyorError, ExitCode

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["cli", "main"]

# Subcommands are imported only when invoked (or when --help lists them), so that starting the
# CLI never pays for pandas, scikit-learn or the web stack.
_COMMANDS: dict[str, tuple[str, str]] = {
    "alerts": ("conveyor.cli.monitor", "alerts"),
    "approve": ("conveyor.cli.review", "approve"),
    "audit": ("conveyor.cli.audit", "audit"),
    "auth": ("conveyor.cli.auth", "auth"),
    "changelog": ("conveyor.cli.lineage", "changelog"),
    "ci": ("conveyor.cli.ci", "ci"),
    "data": ("conveyor.cli.data", "data"),
    "demo": ("conveyor.cli.demo", "demo"),
    "deploy": ("conveyor.cli.deploy", "deploy"),
    "evaluate": ("conveyor.cli.evaluate", "evaluate"),
    "features": ("conveyor.cli.features", "features"),
    "incident": ("conveyor.cli.monitor", "incident"),
    "init": ("conveyor.cli.init", "init"),
    "lineage": ("conveyor.cli.lineage", "lineage"),
    "model": ("conveyor.cli.model", "model"),
    "monitor": ("conveyor.cli.monitor", "monitor"),
    "package": ("conveyor.cli.package", "package"),
    "promote": ("conveyor.cli.model", "promote"),
    "reject": ("conveyor.cli.review", "reject"),
    "reproduce": ("conveyor.cli.reproduce", "reproduce"),
    "rollback": ("conveyor.cli.model", "rollback"),
    "rollout": ("conveyor.cli.deploy", "rollout"),
    "run": ("conveyor.cli.run", "run"),
    "serve": ("conveyor.cli.serve", "serve"),
    "store": ("conveyor.cli.store", "store"),
    "ui": ("conveyor.cli.ui", "ui"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        import importlib

        module, attr = target
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="conveyor")
@click.option(
    "-C",
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Project folder (holding conveyor.yaml); default: found from the current folder up.",
)
@click.option("--store", default=None, help="Metadata store URL (overrides CONVEYOR_STORE).")
@click.option(
    "--artifacts", default=None, help="Artifact store location (overrides CONVEYOR_ARTIFACTS)."
)
@click.pass_context
def cli(
    ctx: click.Context, project_dir: str | None, store: str | None, artifacts: str | None
) -> None:
    """Conveyor: continuous delivery of machine-learning models.

    \b
    conveyor init NAME                    a new project laid out for delivery, with CI workflows
    conveyor run                          run the pipeline (cached steps skipped), register
    conveyor ci [--stage candidate]       pipeline + gates in CI: report.md, junit.xml, metrics
    conveyor model list [MODEL]           models, versions and stages
    conveyor promote MODEL VERSION --to   promote through the gates of policies.yaml
    conveyor approve MODEL VERSION        review a version for a stage (never your own)
    conveyor reproduce MODEL VERSION      rebuild a version from its records and compare
    conveyor rollback MODEL               put the previous production version back at once
    conveyor serve                        Open Inference Protocol v2 server for production versions
    conveyor package M V --dockerfile     a reproducible Dockerfile serving a version
    conveyor deploy MODEL VERSION         canary / shadow / blue-green rollout, analysed
    conveyor rollout status|pause|abort   watch and control a rollout
    conveyor features apply|materialize   versioned features, training sets, online values
    conveyor monitor run                  drift, performance and alert rules over live traffic
    conveyor incident list|show|ack       what went wrong in production, with its timeline
    conveyor lineage upstream|downstream  where a model, dataset or run came from / went
    conveyor changelog MODEL              the model's history, generated from the store
    conveyor ui                           web dashboard (sign in with an API token)
    conveyor store migrate --to URL       copy a SQLite store into PostgreSQL, audit chain intact
    conveyor audit verify                 check the tamper-evident audit trail
    conveyor auth init --admin NAME       turn access control on (users, roles, API tokens)
    conveyor demo                         the whole path, end to end, on the bundled example
    """
    ctx.ensure_object(dict)
    ctx.obj["project_dir"] = project_dir
    ctx.obj["overrides"] = {"store": store, "artifacts": artifacts}


def _configure_logging() -> None:
    level = os.environ.get(CONVEYOR_LOG_LEVEL, "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from conveyor.core.redact import install_log_redaction

    install_log_redaction()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return (and exit with) the documented exit code."""
    _configure_logging()
    code = _invoke(list(argv) if argv is not None else sys.argv[1:])
    if argv is None:
        sys.exit(code)
    return code


def _invoke(args: list[str]) -> int:
    try:
        result: Any = cli.main(args=args, prog_name="conveyor", standalone_mode=False)
    except ConveyorError as exc:
        from conveyor.core.redact import redact_message

        click.echo(f"error: {redact_message(str(exc))}", err=True)
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return int(ExitCode.USAGE)
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    # standalone_mode=False returns the exit code for --help/--version as an int.
    return int(result) if isinstance(result, int) else int(ExitCode.OK)
