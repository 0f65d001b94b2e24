"""``conveyor monitor``, ``conveyor incident`` and ``conveyor alerts``: the monitoring face.

Rules are read from ``monitoring.yaml`` (or ``alerts.yaml``) in the project folder, its
``alerts:`` list (see :mod:`conveyor.monitoring.rules`). Monitored models are those with a
version in production, each compared with the training dataset recorded for that version in the
lineage graph (or ``--reference``), and its predictions with that version's own predictions on
(a sample of) the reference, computed once and cached (see :mod:`conveyor.monitoring.reference`).
A running monitor looks up production at every round: a newly promoted (or rolled back) version
brings its own reference (:class:`ProductionSpecs`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli._common import open_from_context, stop_on_signals
from conveyor.core.env import CONVEYOR_ALERT_WEBHOOK
from conveyor.monitoring.reference import CACHE_DIR as REFERENCE_CACHE_DIR
from conveyor.monitoring.reference import DEFAULT_SAMPLE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from conveyor.monitoring import Monitor, Window, WindowSpec
    from conveyor.monitoring.notify import Notifier
    from conveyor.project import Project

__all__ = ["ProductionSpecs", "alerts", "build_monitor", "incident", "monitor"]

logger = logging.getLogger(__name__)

#: The files rules are read from, first found wins (until ``monitoring:`` is in conveyor.yaml).
RULE_FILES = ("monitoring.yaml", "alerts.yaml")


def _rules_file(project: Project) -> Path | None:
    configured = project.config.monitoring.rules
    if configured is not None:
        return project.config.root / configured
    for name in RULE_FILES:
        path = project.config.root / name
        if path.is_file():
            return path
    return None


class ProductionSpecs:
    """What each model's windows are compared with: the training reference of its version in
    production and that version's answers on it, built again whenever production changes, so
    that a long-running ``conveyor monitor run`` follows promotions and rollbacks.

    The first call raises what is wrong (see :func:`build_monitor`); later calls warn once about
    a model whose new production version cannot be monitored, and leave it out of the round
    rather than compare its traffic with another version's reference.
    """

    def __init__(
        self,
        project: Project,
        *,
        model: str | None,
        reference: Path | None,
        labels: Path | None,
        slices: Sequence[str],
        score_column: str | None,
        reference_sample: int,
    ) -> None:
        from conveyor.data import read_dataset

        self.project = project
        self.model = model
        self.reference = reference
        self.label_frame = read_dataset(labels) if labels is not None else None
        self.slices = tuple(slices)
        self.score_column = score_column
        self.reference_sample = reference_sample
        self.built: dict[str, tuple[int, WindowSpec]] = {}
        self._warned: set[tuple[str, int | None]] = set()
        self._checked = False

    def __call__(self) -> dict[str, WindowSpec]:
        from conveyor.core.errors import ConveyorError, NotFoundError
        from conveyor.registry import list_models, production_version

        metadata = self.project.metadata
        names = [self.model] if self.model else [m.name for m in list_models(metadata)]
        specs: dict[str, WindowSpec] = {}
        for name in names:
            prod = production_version(metadata, name)
            if prod is None:
                if self.model:
                    error = NotFoundError(
                        f"model '{name}' has no version in production, so nothing to monitor",
                        hint=f"see `conveyor model list {name}`",
                    )
                    if not self._checked:
                        raise error
                    self._warn(name, None, error)
                continue
            built = self.built.get(name)
            if built is None or built[0] != prod.version:
                try:
                    spec = self._build(name, prod.version, prod.artifact_digest)
                except ConveyorError as exc:
                    if not self._checked:
                        raise
                    self._warn(name, prod.version, exc)
                    continue
                if built is not None:
                    logger.warning(
                        "monitor: %s v%d is in production now (was v%d): windows are compared "
                        "with its own training reference",
                        name,
                        prod.version,
                        built[0],
                    )
                self.built[name] = built = (prod.version, spec)
            specs[name] = built[1]
        self._checked = True
        return specs

    def _warn(self, name: str, version: int | None, exc: Exception) -> None:
        if (name, version) not in self._warned:
            self._warned.add((name, version))
            logger.warning("monitor: model '%s' is not monitored for now: %s", name, exc)

    def _build(self, name: str, version: int, bundle: str) -> WindowSpec:
        from conveyor.core.errors import UsageError
        from conveyor.data import read_dataset
        from conveyor.monitoring import WindowSpec, reference_predictions, training_reference

        ref = self.reference or training_reference(self.project.metadata, name, version)
        if ref is None:
            raise UsageError(
                f"model '{name}' v{version} has no training dataset in its lineage",
                hint="give the reference data with --reference FILE",
            )
        frame = read_dataset(ref)
        unknown = [c for c in self.slices if c not in frame.columns]
        if unknown:
            raise UsageError(
                f"slice column {unknown[0]!r} is not a column of the reference of model "
                f"'{name}' ({ref})",
                hint=f"slice by one of: {', '.join(map(str, frame.columns))}",
            )
        predicted = reference_predictions(
            self.project.artifacts,
            model=name,
            version=version,
            bundle=bundle,
            reference=frame,
            cache_dir=self.project.config.state_dir / REFERENCE_CACHE_DIR,
            sample=self.reference_sample,
        )
        return WindowSpec(
            reference=frame,
            reference_predictions=predicted.predictions,
            labels=self.label_frame,
            slices=self.slices,
            score_column=self.score_column,
        )


def build_monitor(
    project: Project,
    *,
    model: str | None = None,
    reference: Path | None = None,
    labels: Path | None = None,
    window_s: float = 300.0,
    webhook: str | None = None,
    slices: Sequence[str] = (),
    score_column: str | None = None,
    reference_sample: int = DEFAULT_SAMPLE,
) -> Monitor:
    """The monitor of a project: its rules, its production models and their references.

    Args:
        project: The open project.
        model: Only this model (default: every model with a version in production).
        reference: Reference data instead of each version's training dataset.
        labels: A file of outcomes (``request_id``, ``label``).
        window_s: The length of one window.
        webhook: A Slack-compatible webhook URL for notifications.
        slices: Columns whose values each get their own performance metrics.
        score_column: A logged column holding the positive-class probability (calibration).
        reference_sample: Rows of the reference the production version predicts on.

    Raises:
        UsageError: no rules file, a model without a recorded training dataset and no
            ``--reference``, or a slice column the reference does not have.
        NotFoundError: ``model`` has no version in production, or its bundle is missing.
        ValidationError: the model cannot predict on the reference.
        ConfigError: a bad rules file.
    """
    import datetime as dt

    from conveyor.core.errors import UsageError
    from conveyor.monitoring import LogNotifier, Monitor, WebhookNotifier, load_rules

    path = _rules_file(project)
    if path is None:
        raise UsageError(
            f"no alert rules in {project.config.root}",
            hint=f"write an `alerts:` list into {RULE_FILES[0]}",
        )
    rules = load_rules(path)
    specs = ProductionSpecs(
        project,
        model=model,
        reference=reference,
        labels=labels,
        slices=slices,
        score_column=score_column,
        reference_sample=reference_sample,
    )
    specs()  # the models, references and slices are checked now, not at the first round
    notifiers: dict[str, Notifier] = {"log": LogNotifier(echo=click.echo)}
    if webhook:
        notifiers["webhook"] = WebhookNotifier(webhook)
    return Monitor(
        project.metadata,
        rules,
        log_root=project.config.root / project.config.monitoring.log.dir,
        specs=specs,
        window=dt.timedelta(seconds=window_s),
        notifiers=notifiers,
    )


def summarize_window(w: Window) -> str:
    """One line of a window's drift, prediction drift, quality and latency numbers."""
    m = w.metrics

    def num(key: str, fmt: str) -> str | None:
        value = m.get(key)
        return format(value, fmt) if isinstance(value, int | float) else None

    parts = [
        f"{w.model} v{w.version}: {w.start:%H:%M:%S}-{w.end:%H:%M:%S}, {m.get('rows', 0)} rows"
    ]
    if isinstance(m.get("drift.compared"), int):
        drifted = m.get("drift.drifted") or []
        names = f" ({', '.join(map(str, drifted))})" if drifted else ""
        parts.append(f"drift {len(drifted)}/{m['drift.compared']} columns{names}")
    if (pdrift := num("prediction.drift", ".4f")) is not None:
        verdict = "drifted" if m.get("prediction.drifted") else "stable"
        parts.append(f"prediction drift {pdrift} ({verdict})")
    if (mean := num("prediction.mean", ".3f")) is not None:
        ewma = num("anomaly.mean_ewma", "+.2f")
        parts.append(f"mean prediction {mean}" + (f" (EWMA z {ewma})" if ewma else ""))
    if (nulls := num("quality.null_share", ".1%")) is not None:
        parts.append(f"nulls {nulls}")
    if (outside := num("quality.out_of_range_share", ".1%")) is not None:
        parts.append(f"out of range {outside}")
    if isinstance(p99 := m.get("latency.p99"), int | float):
        parts.append(f"p99 {p99 * 1000:.1f} ms")
    return ", ".join(parts)


@click.group()
def monitor() -> None:
    """Windows of live traffic against the training reference, and alert rules over them."""


@monitor.command(name="run")
@click.option("--once", is_flag=True, help="One round, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds between rounds (default: monitoring.interval_s, 60).",
)
@click.option(
    "--window",
    "window_s",
    type=click.FloatRange(min=1),
    default=None,
    help="Length of one window, seconds (default: monitoring.window_s, 300).",
)
@click.option("--model", default=None, help="Only this model.")
@click.option(
    "--reference",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Reference data instead of the version's training dataset.",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Outcomes: a file with request_id and label columns.",
)
@click.option(
    "--slice",
    "slices",
    multiple=True,
    help="A column whose values each get their own performance metrics (repeatable; "
    "default: monitoring.slices).",
)
@click.option(
    "--score-column",
    default=None,
    help="A logged column holding the positive-class probability, for calibration "
    "(default: monitoring.score_column).",
)
@click.option(
    "--reference-sample",
    type=click.IntRange(min=1),
    default=None,
    help=f"Rows of the reference the production version predicts on, for prediction drift "
    f"(default: monitoring.reference_sample, {DEFAULT_SAMPLE}).",
)
@click.option(
    "--webhook-url",
    "webhook",
    envvar=CONVEYOR_ALERT_WEBHOOK,
    default=None,
    show_envvar=True,
    help="Slack-compatible incoming webhook for notifications.",
)
@click.pass_context
def run(
    ctx: click.Context,
    once: bool,
    interval: float | None,
    window_s: float | None,
    model: str | None,
    reference: Path | None,
    labels: Path | None,
    slices: tuple[str, ...],
    score_column: str | None,
    reference_sample: int | None,
    webhook: str | None,
) -> None:
    """Compute windows and evaluate the alert rules, every --interval seconds (or --once)."""

    with open_from_context(ctx) as project:
        settings = project.config.monitoring
        interval = interval or settings.interval_s
        # Keys the `monitoring:` section may not have yet: the flags work without them.
        mon = build_monitor(
            project,
            model=model,
            reference=reference,
            labels=labels,
            window_s=window_s or settings.window_s,
            webhook=webhook,
            slices=slices or tuple(settings.slices),
            score_column=score_column or settings.score_column,
            reference_sample=reference_sample or settings.reference_sample,
        )
        if once:
            result = mon.run_once()
            click.echo(
                f"{len(result.windows)} window(s) stored, {len(result.transitions)} alert "
                "transition(s)"
            )
            for w in result.windows:
                click.echo(f"  {summarize_window(w)}")
            for t in result.transitions:
                click.echo(f"  {t.model} {t.rule}: {t.before} -> {t.after} ({t.value:.4g})")
            return
        with stop_on_signals() as stop:  # SIGTERM or ^C: stop between two rounds
            mon.run(stop, interval_s=interval)


@monitor.command(name="status")
@click.option("--model", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, model: str | None, as_json: bool) -> None:
    """Alert states and the last window of each model."""
    from conveyor.monitoring.alerts import list_alerts
    from conveyor.monitoring.windows import latest_windows

    with open_from_context(ctx) as project, project.metadata.read() as conn:
        states = list_alerts(conn, model=model)
        windows = latest_windows(conn, model=model)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "alerts": [s.to_dict() for s in states],
                    "windows": [
                        {
                            "model": w.model,
                            "version": w.version,
                            "start": w.start.isoformat(),
                            "end": w.end.isoformat(),
                            "metrics": w.metrics,
                        }
                        for w in windows
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return
    for w in windows:
        click.echo(f"{w.start:%Y-%m-%d} {summarize_window(w)}")
    if not states:
        click.echo("no alerts evaluated yet")
    for s in states:
        click.echo(
            f"{s.model} {s.rule}: {s.state} since {s.since:%Y-%m-%d %H:%M} (value {s.value})"
        )


@click.group()
def alerts() -> None:
    """Alert rules' states."""


@alerts.command(name="list")
@click.option("--model", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def alerts_list(ctx: click.Context, model: str | None, as_json: bool) -> None:
    """Every alert (one per rule and model) with its state."""
    from conveyor.monitoring.alerts import list_alerts

    with open_from_context(ctx) as project, project.metadata.read() as conn:
        states = list_alerts(conn, model=model)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in states], indent=2))
        return
    for s in states:
        incident_note = f", incident {s.incident_id}" if s.incident_id else ""
        click.echo(f"{s.model} {s.rule}: {s.state} since {s.since.isoformat()}{incident_note}")


@click.group()
def incident() -> None:
    """Incidents: list, show, acknowledge, resolve, and a model's timeline."""


@incident.command(name="list")
@click.option("--model", default=None)
@click.option("--state", type=click.Choice(["open", "acknowledged", "resolved"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def incident_list(ctx: click.Context, model: str | None, state: str | None, as_json: bool) -> None:
    """Incidents, newest first."""
    from conveyor.monitoring.incidents import list_incidents

    with open_from_context(ctx) as project:
        found = list_incidents(project.metadata, model=model, state=state)
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in found], indent=2, default=str))
        return
    if not found:
        click.echo("no incidents")
    for i in found:
        click.echo(f"{i.id}  {i.state:<12} {i.opened_at:%Y-%m-%d %H:%M}  {i.title}")


@incident.command(name="show")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def incident_show(ctx: click.Context, incident_id: str, as_json: bool) -> None:
    """One incident with its evidence."""
    from conveyor.monitoring.incidents import get_incident

    with open_from_context(ctx) as project:
        found = get_incident(project.metadata, incident_id)
    data: dict[str, Any] = found.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    evidence = data.pop("evidence")
    for key, value in data.items():
        if value is not None:
            click.echo(f"{key:<12} {value}")
    click.echo("evidence:")
    click.echo(json.dumps(evidence, indent=2, default=str))


@incident.command(name="ack")
@click.argument("incident_id")
@click.pass_context
def incident_ack(ctx: click.Context, incident_id: str) -> None:
    """Acknowledge an open incident: you are handling it."""
    from conveyor.core.identity import current_user
    from conveyor.monitoring.incidents import acknowledge

    with open_from_context(ctx) as project:
        found = acknowledge(project.metadata, incident_id, actor=current_user())
    click.echo(f"incident {found.id} acknowledged by {found.acked_by}")


@incident.command(name="resolve")
@click.argument("incident_id")
@click.option("--note", default="", help="What was found and done.")
@click.pass_context
def incident_resolve(ctx: click.Context, incident_id: str, note: str) -> None:
    """Resolve an incident."""
    from conveyor.core.identity import current_user
    from conveyor.monitoring.incidents import resolve

    with open_from_context(ctx) as project:
        found = resolve(project.metadata, incident_id, actor=current_user(), note=note)
    click.echo(f"incident {found.id} resolved by {found.resolved_by}")


@incident.command(name="timeline")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def incident_timeline(ctx: click.Context, model: str, as_json: bool) -> None:
    """Deployments, stage changes, rollbacks, approvals, alerts and incidents of MODEL."""
    from conveyor.monitoring.incidents import timeline

    with open_from_context(ctx) as project:
        events = timeline(project.metadata, model)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in events], indent=2))
        return
    for e in events:
        click.echo(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.kind:<9} {e.summary}")
