"""``conveyor deploy`` and ``conveyor rollout``: progressive delivery of a candidate version.

``conveyor deploy MODEL VERSION --canary 5,25,50,100`` starts a rollout (stored in the metadata
store, so every server replica follows it) and, unless ``--detach``, drives it in the
foreground: it analyses each step on the servers' telemetry, advances, promotes at 100, or rolls
back by itself. Ctrl-C stops watching and leaves the rollout where it is;
``conveyor rollout run`` (or another ``conveyor deploy``) picks it up again.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli._common import console, open_from_context, stop_on_signals
from conveyor.core.identity import current_user

if TYPE_CHECKING:
    from conveyor.deploy import Rollout, TickOutcome
    from conveyor.project import Project

__all__ = ["deploy", "rollout"]


@click.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option(
    "--canary",
    "canary",
    metavar="WEIGHTS",
    help="Canary steps in percent, ending with 100 (the promotion); default 10,50,100.",
)
@click.option(
    "--shadow", is_flag=True, help="Mirror traffic to the version and compare; never promotes."
)
@click.option(
    "--blue-green",
    "blue_green",
    is_flag=True,
    help="Analyse the version as a shadow, then switch all traffic to it at once.",
)
@click.option(
    "--sample",
    type=float,
    default=1.0,
    show_default=True,
    help="Fraction of requests mirrored to a shadow.",
)
@click.option("--reason", default="", help="Why; recorded with the rollout and audited.")
@click.option("--detach", is_flag=True, help="Start the rollout and return; do not drive it.")
@click.option(
    "--every",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds between two controller ticks while driving.",
)
@click.option(
    "--emit",
    type=click.Choice(["k8s"]),
    help="Write KServe InferenceService manifests instead of deploying here.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="k8s",
    show_default=True,
    help="Folder for --emit manifests.",
)
@click.option("--image", help="Container image running Conveyor, for --emit k8s.")
@click.option("--namespace", default=None, help="Kubernetes namespace, for --emit k8s.")
@click.option("--json", "as_json", is_flag=True, help="Print the rollout as JSON.")
@click.pass_context
def deploy(
    ctx: click.Context,
    name: str,
    version: int,
    canary: str | None,
    shadow: bool,
    blue_green: bool,
    sample: float,
    reason: str,
    detach: bool,
    every: float,
    emit: str | None,
    out: str,
    image: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Roll VERSION of model NAME out to production progressively, analysed at every step.

    The version must be a candidate and the model must have a production version (the stable
    side of the comparison). The analysis settings come from the `rollout:` block of
    policies.yaml; the final promotion runs the production gates like `conveyor promote`.
    """
    from conveyor.core.errors import UsageError

    if sum((canary is not None, shadow, blue_green)) > 1:
        raise UsageError(
            "--canary, --shadow and --blue-green are different strategies",
            hint="choose one of them",
        )
    strategy = "shadow" if shadow else "bluegreen" if blue_green else "canary"
    if emit == "k8s":
        _emit_k8s(ctx, name, version, canary, out, image, namespace, strategy)
        return
    from conveyor.project._deploy import drive, start_deploy

    actor = current_user()
    with open_from_context(ctx) as project:
        started, superseded, attached = start_deploy(
            project,
            model=name,
            version=version,
            strategy=strategy,
            canary=canary,
            shadow_sample=sample,
            actor=actor,
            reason=reason,
        )
        if not as_json:
            if attached:
                console().print(
                    f"rollout {started.id} of {name} v{version} is already in progress "
                    f"({started.phase}); driving it"
                )
            elif superseded is not None:
                console().print(
                    f"the rollout of v{superseded.candidate_version} is superseded; its "
                    "analysis starts again for the new version"
                )
            if not attached:
                console().print(
                    f"rollout {started.id}: {name} v{version} against production "
                    f"v{started.stable_version}, steps {_plan(started)}"
                )
        if detach:
            if as_json:
                click.echo(json.dumps(started.to_json(), indent=2))
            return
        try:
            final = drive(
                project,
                model=name,
                actor=actor,
                every=every,
                report=None if as_json else _report,
            )
        except KeyboardInterrupt:
            console(stderr=True).print(
                f"stopped watching; the rollout goes on where it is: `conveyor rollout run "
                f"{name}` drives it again, `conveyor rollout abort {name}` stops it"
            )
            raise SystemExit(130) from None
    _finish(final, as_json)


def _watch(project: Project, name: str, every: float) -> None:
    """Run the controller until SIGTERM or ^C, then exit 0 between two ticks."""
    from conveyor.project._deploy import watch

    with stop_on_signals() as stop:
        watch(project, model=name, actor=current_user(), stop=stop, every=every, report=_report)
    console().print(f"rollout controller for {name} stopped")


def _finish(final: TickOutcome, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "action": final.action,
                    "message": final.message,
                    "rollout": final.rollout.to_json() if final.rollout else None,
                    "incident": final.incident.to_json() if final.incident else None,
                },
                indent=2,
            )
        )
    if final.action == "failed":
        raise SystemExit(1)


def _plan(rollout: Rollout) -> str:
    return " -> ".join(f"{s}%" if isinstance(s, int) else str(s) for s in rollout.steps)


def _report(outcome: TickOutcome) -> None:
    out = console()
    rollout = outcome.rollout
    where = f"[{_step(rollout)}] " if rollout is not None else ""
    if outcome.analysis is not None and outcome.action != "advanced":
        out.print(f"{where}analysis: {_summary(outcome.analysis)}")
    if outcome.action == "advanced":
        out.print(f"{where}analysis passed; canary now takes {rollout.current if rollout else ''}%")
    elif outcome.action == "succeeded":
        out.print(f"[green]rollout succeeded[/green]: {outcome.message}")
    elif outcome.action == "failed":
        incident = f" (incident {outcome.incident.id})" if outcome.incident else ""
        out.print(f"[red]rollout failed, traffic back on stable[/red]: {outcome.message}{incident}")
    elif outcome.action in ("restarted", "awaiting-approval", "paused", "idle"):
        out.print(f"{where}{outcome.message}")


def _step(rollout: Rollout) -> str:
    current = rollout.current
    return f"{current}%" if isinstance(current, int) else str(current)


def _summary(analysis: dict[str, Any]) -> str:
    parts = [str(analysis.get("verdict", "?"))]
    parts.append(
        f"{analysis.get('candidate_requests', 0)} candidate / "
        f"{analysis.get('stable_requests', 0)} stable requests"
    )
    for check in analysis.get("checks", []):
        if check.get("verdict") == "fail":
            parts.append(f"{check.get('name')}: {check.get('detail')}")
    return "; ".join(parts)


def _emit_k8s(
    ctx: click.Context,
    name: str,
    version: int,
    canary: str | None,
    out: str,
    image: str | None,
    namespace: str | None,
    strategy: str,
) -> None:
    from pathlib import Path

    from conveyor.core.errors import UsageError
    from conveyor.deploy import parse_steps
    from conveyor.deploy.k8s import (
        ClusterOptions,
        canary_step,
        render_inference_service,
        write_manifests,
    )
    from conveyor.registry import get_version

    if strategy != "canary":
        raise UsageError(
            "--emit k8s writes canary manifests only",
            hint="KServe has no shadow split; use `--canary 10,50,100` (or no strategy) with "
            "--emit k8s",
        )
    if not image:
        raise UsageError(
            "--emit k8s needs the container image that runs Conveyor",
            hint="e.g. `--image registry.example.com/conveyor:1.0`",
        )
    steps = [int(s) for s in parse_steps("canary", canary)] if canary else []
    with open_from_context(ctx) as project:
        target = get_version(project.metadata, name, version)
        options = ClusterOptions(image=image, namespace=namespace)
        first = render_inference_service(
            project.config,
            name,
            version,
            target.artifact_digest,
            options,
            canary_percent=steps[0] if steps else None,
        )
        docs = [first, *(canary_step(first, p) for p in steps[1:])]
        written = write_manifests(docs, Path(out))
    for path in written:
        console().print(f"wrote {path}")


@click.group()
def rollout() -> None:
    """Watch and control rollouts: status, pause, resume, abort, run."""


@rollout.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """The rollouts in progress (of model NAME; its latest one when none is in progress)."""
    from conveyor.project._deploy import rollout_status

    with open_from_context(ctx) as project:
        found = rollout_status(project, model=name)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in found], indent=2))
        return
    if not found:
        console().print("no rollout in progress")
        return
    for r in found:
        last = r.analyses[-1] if r.analyses else None
        console().print(
            f"rollout {r.id}: {r.model} v{r.candidate_version} vs v{r.stable_version} "
            f"({r.strategy}, {_plan(r)}) {r.phase} at {_step(r)}"
            + (f"; last analysis: {_summary(last)}" if last else "; not analysed yet")
            + (f"; {r.reason}" if r.reason and not r.active else "")
        )


@rollout.command()
@click.argument("name")
@click.option("--reason", default="", help="Why; audited.")
@click.pass_context
def pause(ctx: click.Context, name: str, reason: str) -> None:
    """Stop analysing and advancing NAME's rollout; the traffic split stays."""
    from conveyor.project._deploy import pause_rollout

    with open_from_context(ctx) as project:
        r = pause_rollout(project, model=name, actor=current_user(), reason=reason)
    console().print(f"rollout {r.id} of {name} v{r.candidate_version} paused at {_step(r)}")


@rollout.command()
@click.argument("name")
@click.option("--reason", default="", help="Why; audited.")
@click.pass_context
def resume(ctx: click.Context, name: str, reason: str) -> None:
    """Resume NAME's paused rollout; its step's analysis starts afresh."""
    from conveyor.project._deploy import resume_rollout

    with open_from_context(ctx) as project:
        r = resume_rollout(project, model=name, actor=current_user(), reason=reason)
    console().print(
        f"rollout {r.id} of {name} v{r.candidate_version} resumed at {_step(r)}; "
        f"`conveyor rollout run {name}` drives it"
    )


@rollout.command()
@click.argument("name")
@click.option("--reason", default="", help="Why; recorded in the incident and audited.")
@click.pass_context
def abort(ctx: click.Context, name: str, reason: str) -> None:
    """Abort NAME's rollout: the candidate gets no traffic from now on."""
    from conveyor.project._deploy import abort_rollout

    with open_from_context(ctx) as project:
        r, incident = abort_rollout(project, model=name, actor=current_user(), reason=reason)
    console().print(
        f"rollout {r.id} of {name} v{r.candidate_version} aborted; all traffic on "
        f"v{r.stable_version}; incident {incident.id}"
    )


@rollout.command()
@click.argument("name")
@click.option(
    "--every",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds per tick.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final outcome as JSON.")
@click.option(
    "--watch",
    is_flag=True,
    help="Keep running: drive each rollout of NAME as it starts, until stopped (SIGTERM, ^C).",
)
@click.pass_context
def run(ctx: click.Context, name: str, every: float, as_json: bool, watch: bool) -> None:
    """Drive NAME's rollout until it ends (the controller, in the foreground); with --watch,
    every rollout of NAME from now on (the controller as a service)."""
    from conveyor.project._deploy import drive

    if watch and as_json:
        from conveyor.core.errors import UsageError

        raise UsageError(
            "--json prints one final outcome, and --watch has none",
            hint="drop --json: the watching controller reports each outcome as it comes",
        )
    with open_from_context(ctx) as project:
        if watch:
            _watch(project, name, every)
            return
        final = drive(
            project,
            model=name,
            actor=current_user(),
            every=every,
            report=None if as_json else _report,
        )
    _finish(final, as_json)
