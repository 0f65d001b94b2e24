"""The rollout controller: start a rollout, analyse each step, advance, promote or roll back.

A rollout is a row (``deployment``) and a routing row, both in the metadata store; the
controller is stateless. :func:`tick` reads the rollout, the serving windows the servers wrote
since its step began, and the production version; analyses when an interval has passed; and
writes its decision in one write transaction that compare-and-sets on the rollout's revision.
So any number of controllers (a ``conveyor deploy`` in a terminal, ``conveyor rollout run`` on
a host) can tick the same rollout: one acts, the others see the new revision next time, and a
controller killed at any point leaves a rollout the next tick continues.

What happens at a tick:

- The production version changed since the rollout began (a rollback, a promotion by hand):
  the stable side of the comparison is another version now, so the analysis restarts.
- Too early (less than ``interval_s`` since the step began or since the last analysis): wait.
- Analysis (:func:`conveyor.deploy.analysis.analyse`), then
  :func:`~conveyor.deploy.analysis.decide_step` over the step's analyses: a ``pass`` advances
  to the next step; more failed analyses in the step than ``failure_limit`` fail the rollout;
  ``inconclusive`` (too few requests yet) waits, up to ``max_inconclusive`` analyses when set.
- Failing or aborting sets the candidate's weight to 0 at once (the routing row), opens an
  incident holding the evidence, and audits it, all in one transaction.
- The step of weight 100 means "promote": when the step before it passes, ``promote`` (the
  project's gated promotion to production) runs while the split stays as it was; once the
  registry has the candidate in production the routing is cleared and every server swaps it in.
  Reviews still missing keep the rollout waiting on its step (``awaiting-approval``); a gate
  that refuses fails the rollout, and traffic goes back to the stable version.

Manual controls: :func:`pause` (the split stays, analysis stops), :func:`resume`, :func:`abort`.
A rollout started while another of the same model is active supersedes it: the new candidate
starts from the first step, with a fresh analysis.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.clock import utcnow
from conveyor.core.errors import ConflictError, ConveyorError, NotFoundError, UsageError
from conveyor.deploy import state
from conveyor.deploy.records import SHADOW, STRATEGIES, Incident, Rollout, Step

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Sequence

    from conveyor.deploy.analysis import AnalysisSettings
    from conveyor.store.metadata import MetadataStore

__all__ = [
    "LIVE",
    "TickOutcome",
    "abort",
    "parse_steps",
    "pause",
    "resume",
    "start_rollout",
    "tick",
]

logger = logging.getLogger(__name__)

#: The role of a version's windows for requests it answered; ``"shadow"`` for mirrored ones.
LIVE = "live"


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """What a tick did.

    Attributes:
        action: ``idle`` (no active rollout), ``paused``, ``waiting`` (not time to analyse),
            ``analysed`` (analysed, staying on the step), ``advanced``, ``restarted``,
            ``awaiting-approval`` (passed, reviews missing), ``succeeded``, ``failed``,
            ``raced`` (another controller acted first).
    """

    action: str
    rollout: Rollout | None
    message: str = ""
    analysis: dict[str, Any] | None = None
    incident: Incident | None = None


def parse_steps(strategy: str, canary: str | None = None) -> tuple[Step, ...]:
    """The plan of a strategy: ``canary`` weights like ``"5,25,50,100"``, shadow, or blue/green.

    Raises:
        UsageError: an unknown strategy, or weights that are not increasing percentages
            ending with 100.
    """
    if strategy == "shadow":
        return (SHADOW,)
    if strategy == "bluegreen":
        return (SHADOW, 100)
    if strategy != "canary":
        raise UsageError(
            f"unknown rollout strategy {strategy!r}", hint=f"use one of: {', '.join(STRATEGIES)}"
        )
    text = canary or "10,50,100"
    try:
        weights = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(
            f"canary steps {text!r} are not whole percentages",
            hint="give increasing percentages ending with 100, e.g. `--canary 5,25,50,100`",
        ) from None
    if (
        not weights
        or any(not 0 < w <= 100 for w in weights)
        or any(a >= b for a, b in itertools.pairwise(weights))
        or weights[-1] != 100
    ):
        raise UsageError(
            f"canary steps {text!r} must be increasing percentages from 1 to 100, ending with 100",
            hint="e.g. `--canary 5,25,50,100` (100 is the promotion)",
        )
    return tuple(weights)


def start_rollout(
    store: MetadataStore,
    *,
    model: str,
    version: int,
    strategy: str,
    steps: Sequence[Step],
    settings: AnalysisSettings,
    actor: str,
    shadow_sample: float = 1.0,
    reason: str = "",
) -> tuple[Rollout, Rollout | None]:
    """Start a rollout of ``version`` against the production version; (it, the one it replaced).

    Raises:
        NotFoundError: no such model or version.
        ConflictError: the version is not a candidate, there is no production version to
            compare with, or it is the production version already.
        UsageError: ``shadow_sample`` is not in (0, 1].
    """
    from conveyor.registry import get_version, production_version

    if not 0 < shadow_sample <= 1:
        raise UsageError(
            f"the shadow sample {shadow_sample} is not a fraction in (0, 1]",
            hint="e.g. `--sample 0.25` mirrors a quarter of the requests",
        )
    target = get_version(store, model, version)  # NotFoundError names what is missing
    if target.stage != "candidate":
        raise ConflictError(
            f"model '{model}' v{version} is {target.stage}, and only a candidate can be deployed",
            hint=f"promote it first: `conveyor promote {model} {version} --to candidate`",
        )
    stable = production_version(store, model)
    if stable is None:
        raise ConflictError(
            f"model '{model}' has no production version to compare a canary with",
            hint=f"promote the first version directly: `conveyor promote {model} {version} "
            "--to production`",
        )
    plan: dict[str, Any] = {"steps": list(steps)}
    if SHADOW in steps:
        plan["shadow_sample"] = shadow_sample
    with store.write(actor) as tx:
        previous = state.active_rollout(tx.conn, model)
        if previous is not None:
            state.update_rollout(
                tx.conn,
                previous,
                phase="superseded",
                ended_at=tx.at,
                updated_at=tx.at,
                reason=f"superseded by a rollout of v{version}",
            )
            tx.audit(
                "rollout.superseded",
                f"model:{model}",
                {"rollout": previous.id, "by_version": version},
            )
        rollout_id = state.insert_rollout(
            tx.conn,
            {
                "model": model,
                "stable_version": stable.version,
                "candidate_version": version,
                "mode": strategy,
                "weights": plan,
                "phase": "progressing",
                "analysis": [],
                "created_at": tx.at,
                "updated_at": tx.at,
                "step": 0,
                "step_started_at": tx.at,
                "failures": 0,
                "revision": 0,
                "settings": dataclasses.asdict(settings),
                "actor": actor,
                "reason": reason,
            },
        )
        started = state.get_rollout(tx.conn, rollout_id)
        assert started is not None
        _route(tx.conn, started, 0, tx.at)
        tx.audit(
            "rollout.started",
            f"model:{model}",
            {
                "rollout": rollout_id,
                "version": version,
                "stable_version": stable.version,
                "strategy": strategy,
                "steps": list(steps),
                "reason": reason,
            },
        )
    logger.info(
        "rollout started", extra={"model": model, "version": version, "rollout": rollout_id}
    )
    return started, previous


def _route(conn: Any, rollout: Rollout, step: int, at: dt.datetime) -> None:
    """Point the routing at step ``step`` of ``rollout``."""
    current = rollout.steps[step]
    if current == SHADOW:
        state.write_routing(
            conn,
            model=rollout.model,
            at=at,
            shadow_version=rollout.candidate_version,
            shadow_sample=rollout.shadow_sample,
            deployment_id=rollout.id,
        )
    else:
        state.write_routing(
            conn,
            model=rollout.model,
            at=at,
            canary_version=rollout.candidate_version,
            canary_weight=float(current),
            deployment_id=rollout.id,
        )


def _active(store: MetadataStore, model: str) -> Rollout:
    with store.read() as conn:
        rollout = state.active_rollout(conn, model)
    if rollout is None:
        raise NotFoundError(
            f"model '{model}' has no rollout in progress",
            hint=f"start one with `conveyor deploy {model} <version> --canary 5,25,50,100`",
        )
    return rollout


def pause(store: MetadataStore, model: str, *, actor: str, reason: str = "") -> Rollout:
    """Stop analysing and advancing ``model``'s rollout; the traffic split stays as it is.

    Raises:
        NotFoundError: no rollout in progress.
        ConflictError: it is paused already, or changed meanwhile.
    """
    rollout = _active(store, model)
    if rollout.phase == "paused":
        raise ConflictError(
            f"the rollout of '{model}' v{rollout.candidate_version} is paused already",
            hint=f"resume it with `conveyor rollout resume {model}`",
        )
    return _set_phase(store, rollout, "paused", actor=actor, reason=reason)


def resume(store: MetadataStore, model: str, *, actor: str, reason: str = "") -> Rollout:
    """Resume a paused rollout; its current step's analysis starts afresh.

    Raises:
        NotFoundError: no rollout in progress.
        ConflictError: it is not paused, or changed meanwhile.
    """
    rollout = _active(store, model)
    if rollout.phase != "paused":
        raise ConflictError(
            f"the rollout of '{model}' v{rollout.candidate_version} is not paused",
            hint=f"see `conveyor rollout status {model}`",
        )
    return _set_phase(store, rollout, "progressing", actor=actor, reason=reason)


def _set_phase(
    store: MetadataStore, rollout: Rollout, phase: str, *, actor: str, reason: str
) -> Rollout:
    with store.write(actor) as tx:
        values: dict[str, Any] = {"phase": phase, "updated_at": tx.at}
        if phase == "progressing":
            values.update(step_started_at=tx.at, failures=0, analyses=())
        if not state.update_rollout(tx.conn, rollout, **values):
            raise _raced(rollout)
        action = "rollout.paused" if phase == "paused" else "rollout.resumed"
        tx.audit(action, f"model:{rollout.model}", {"rollout": rollout.id, "reason": reason})
        changed = state.get_rollout(tx.conn, rollout.id)
    assert changed is not None
    return changed


def _reread(tx: Any, rollout: Rollout) -> Rollout:
    """``rollout`` as the transaction has just written it."""
    changed = state.get_rollout(tx.conn, rollout.id)
    assert changed is not None
    return changed


def _raced(rollout: Rollout) -> ConflictError:
    return ConflictError(
        f"the rollout of '{rollout.model}' changed while this command ran",
        hint=f"see `conveyor rollout status {rollout.model}` and try again",
    )


def abort(
    store: MetadataStore, model: str, *, actor: str, reason: str = ""
) -> tuple[Rollout, Incident]:
    """Stop ``model``'s rollout by hand: the candidate's weight goes to 0 at once.

    Raises:
        NotFoundError: no rollout in progress.
        ConflictError: it changed meanwhile.
    """
    rollout = _active(store, model)
    why = f"aborted by {actor}" + (f": {reason}" if reason else "")
    with store.write(actor) as tx:
        incident = _stop(tx, rollout, "aborted", why, _evidence(rollout))
        if incident is None:
            raise _raced(rollout)
        ended = state.get_rollout(tx.conn, rollout.id)
    assert ended is not None
    return ended, incident


def _evidence(rollout: Rollout, analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    last = analysis or (rollout.analyses[-1] if rollout.analyses else None)
    return {
        "rollout": rollout.id,
        "stable_version": rollout.stable_version,
        "candidate_version": rollout.candidate_version,
        "strategy": rollout.strategy,
        "step": rollout.current,
        "analysis": last,
    }


def _stop(
    tx: Any,
    rollout: Rollout,
    phase: str,
    why: str,
    evidence: dict[str, Any],
    analyses: tuple[dict[str, Any], ...] | None = None,
) -> Incident | None:
    """End ``rollout`` in ``phase``: routing back to stable, an incident, an audit event; the
    analysis that decided it joins the rollout's analyses.

    None when the rollout changed meanwhile (nothing written).
    """
    values: dict[str, Any] = {"phase": phase, "ended_at": tx.at, "updated_at": tx.at, "reason": why}
    if analyses is not None:
        values["analyses"] = analyses
    if not state.update_rollout(tx.conn, rollout, **values):
        return None
    state.write_routing(tx.conn, model=rollout.model, at=tx.at)
    title = f"rollout of {rollout.model} v{rollout.candidate_version} {phase}: {why}"
    incident = state.open_incident(
        tx.conn, title=title, model=rollout.model, evidence=evidence, at=tx.at
    )
    tx.audit(
        f"rollout.{phase}",
        f"model:{rollout.model}",
        {
            "rollout": rollout.id,
            "version": rollout.candidate_version,
            "stable_version": rollout.stable_version,
            "reason": why,
            "incident": incident.id,
        },
    )
    # Info, not warning: the command or server that acted reports it to its user already.
    logger.info(
        "rollout %d of %s v%d %s: %s",
        rollout.id,
        rollout.model,
        rollout.candidate_version,
        phase,
        why,
    )
    return incident


def tick(
    store: MetadataStore,
    model: str,
    *,
    promote: Callable[[Rollout], None],
    actor: str = "controller",
    now: dt.datetime | None = None,
) -> TickOutcome:
    """Move ``model``'s rollout on if it is time (see the module docstring).

    Args:
        promote: Promotes the candidate to production through the gates; raises a
            :class:`~conveyor.core.errors.ConveyorError` when a gate refuses.
        now: The time to act at (the store's clock otherwise); for tests.
    """
    from conveyor.registry import production_version

    now = now or utcnow()
    with store.read() as conn:
        rollout = state.active_rollout(conn, model)
    if rollout is None:
        return TickOutcome("idle", None, f"model '{model}' has no rollout in progress")
    if rollout.phase == "paused":
        return TickOutcome("paused", rollout, "paused by hand")
    production = production_version(store, model)
    if production is not None and production.version == rollout.candidate_version:
        return _finish(store, rollout, actor, "the candidate is in production")
    if production is None or production.version != rollout.stable_version:
        return _restart(store, rollout, production.version if production else None, actor)
    settings = _settings(rollout)
    last = _last_analysis_at(rollout) or rollout.step_started_at or rollout.created_at
    if (now - last).total_seconds() < settings.interval_s:
        return TickOutcome("waiting", rollout, "not time to analyse yet")
    analysis = _analyse(store, rollout, settings, now)
    return _decide(store, rollout, settings, analysis, promote, actor)


def _settings(rollout: Rollout) -> AnalysisSettings:
    from conveyor.deploy.analysis import AnalysisSettings

    return AnalysisSettings(**rollout.settings)


def _last_analysis_at(rollout: Rollout) -> dt.datetime | None:
    import datetime as dt

    if not rollout.analyses:
        return None
    return dt.datetime.fromisoformat(rollout.analyses[-1]["at"])


def _analyse(
    store: MetadataStore, rollout: Rollout, settings: AnalysisSettings, now: dt.datetime
) -> dict[str, Any]:
    from conveyor.deploy.analysis import analyse, shadow_report
    from conveyor.deploy.telemetry import WindowSummary

    since = rollout.step_started_at or rollout.created_at
    with store.read() as conn:
        windows = state.read_windows(conn, rollout.model, since=since)
    shadow = rollout.current == SHADOW
    role = "shadow" if shadow else LIVE
    assert rollout.stable_version is not None
    stable = _merged(WindowSummary, windows.get((rollout.stable_version, LIVE), []))
    candidate = _merged(WindowSummary, windows.get((rollout.candidate_version, role), []))
    result = analyse(stable, candidate, settings)
    record: dict[str, Any] = {
        "at": now.isoformat(),
        "step": rollout.current,
        "verdict": result.verdict,
        **result.to_json(),
        "verdict_of_step": result.verdict,
        "stable_requests": stable.requests,
        "candidate_requests": candidate.requests,
    }
    if shadow:
        record["shadow"] = shadow_report(stable, candidate)
    return record


def _merged(kind: Any, summaries: list[dict[str, Any]]) -> Any:
    return kind.merge([kind.from_json(s) for s in summaries]) if summaries else kind()


def _decide(  # noqa: PLR0911 (one return per outcome of the decision)
    store: MetadataStore,
    rollout: Rollout,
    settings: AnalysisSettings,
    analysis: dict[str, Any],
    promote: Callable[[Rollout], None],
    actor: str,
) -> TickOutcome:
    from conveyor.deploy.analysis import decide_step

    analyses = (*rollout.analyses, analysis)
    decision = decide_step([a["verdict"] for a in analyses], settings)
    with store.write(actor) as tx:
        if decision.action == "abort":
            why = decision.reason
            if analysis["verdict"] == "fail":
                why += "; " + _failed_checks(analysis)
            incident = _stop(
                tx, rollout, "failed", why, _evidence(rollout, analysis), analyses=analyses
            )
            if incident is None:
                return TickOutcome("raced", rollout)
            return TickOutcome("failed", _reread(tx, rollout), why, analysis, incident)
        if decision.action == "wait":
            if not state.update_rollout(
                tx.conn,
                rollout,
                failures=decision.failures,
                analyses=analyses,
                updated_at=tx.at,
            ):
                return TickOutcome("raced", rollout)
            return TickOutcome("analysed", rollout, decision.reason, analysis)
        # Passed: the next step, or the promotion when the next step is 100.
        following = rollout.step + 1
        if following >= len(rollout.steps):  # a shadow-only plan ends with its analysis
            if not state.update_rollout(
                tx.conn,
                rollout,
                phase="succeeded",
                analyses=analyses,
                ended_at=tx.at,
                updated_at=tx.at,
            ):
                return TickOutcome("raced", rollout)
            state.write_routing(tx.conn, model=rollout.model, at=tx.at)
            tx.audit(
                "rollout.succeeded",
                f"model:{rollout.model}",
                {"rollout": rollout.id, "version": rollout.candidate_version, "promoted": False},
            )
            return TickOutcome("succeeded", rollout, "shadow analysis passed", analysis)
        if rollout.steps[following] == 100:
            # Claim the promotion (compare-and-set), so one controller alone promotes.
            if not state.update_rollout(
                tx.conn, rollout, failures=0, analyses=analyses, updated_at=tx.at
            ):
                return TickOutcome("raced", rollout)
            claimed = state.get_rollout(tx.conn, rollout.id)
        else:
            claimed = None
            if not state.update_rollout(
                tx.conn,
                rollout,
                step=following,
                step_started_at=tx.at,
                failures=0,
                analyses=(),
                updated_at=tx.at,
            ):
                return TickOutcome("raced", rollout)
            _route(tx.conn, rollout, following, tx.at)
            tx.audit(
                "rollout.advanced",
                f"model:{rollout.model}",
                {
                    "rollout": rollout.id,
                    "version": rollout.candidate_version,
                    "step": rollout.steps[following],
                    "analysis": {k: analysis[k] for k in ("verdict", "at")},
                },
            )
            advanced = state.get_rollout(tx.conn, rollout.id)
    if claimed is not None:
        return _promote(store, claimed, promote, actor, analysis)
    assert advanced is not None
    return TickOutcome("advanced", advanced, f"advanced to {advanced.current}", analysis)


def _failed_checks(analysis: dict[str, Any]) -> str:
    failed = [c for c in analysis.get("checks", []) if c.get("verdict") == "fail"]
    return "; ".join(c.get("detail") or c.get("name", "?") for c in failed) or "see the analysis"


def _promote(
    store: MetadataStore,
    rollout: Rollout,
    promote: Callable[[Rollout], None],
    actor: str,
    analysis: dict[str, Any] | None = None,
) -> TickOutcome:
    """Promote the candidate (the last step passed). Traffic stays split until it is in
    production; approvals still missing keep the rollout on its step, waiting for them."""
    from conveyor.core.errors import ApprovalPendingError
    from conveyor.registry import production_version

    try:
        promote(rollout)
    except ApprovalPendingError as exc:
        return TickOutcome("awaiting-approval", rollout, exc.message, analysis)
    except ConveyorError as exc:
        current = production_version(store, rollout.model)
        if current is not None and current.version == rollout.candidate_version:
            return _finish(store, rollout, actor, "promoted to production", analysis)
        why = f"promotion to production refused: {exc.message}"
        with store.write(actor) as tx:
            evidence = {**_evidence(rollout, analysis), "promotion_error": exc.message}
            incident = _stop(tx, rollout, "failed", why, evidence)
            ended = _reread(tx, rollout)
        if incident is None:
            return TickOutcome("raced", rollout)
        return TickOutcome("failed", ended, why, analysis, incident)
    return _finish(store, rollout, actor, "promoted to production", analysis)


def _finish(
    store: MetadataStore,
    rollout: Rollout,
    actor: str,
    why: str,
    analysis: dict[str, Any] | None = None,
) -> TickOutcome:
    with store.write(actor) as tx:
        if not state.update_rollout(
            tx.conn, rollout, phase="succeeded", ended_at=tx.at, updated_at=tx.at
        ):
            return TickOutcome("raced", rollout)
        state.write_routing(tx.conn, model=rollout.model, at=tx.at)
        tx.audit(
            "rollout.succeeded",
            f"model:{rollout.model}",
            {"rollout": rollout.id, "version": rollout.candidate_version, "promoted": True},
        )
        done = state.get_rollout(tx.conn, rollout.id)
    return TickOutcome("succeeded", done, why, analysis)


def _restart(store: MetadataStore, rollout: Rollout, stable: int | None, actor: str) -> TickOutcome:
    """The production version changed under the rollout: compare against the new one afresh."""
    with store.write(actor) as tx:
        if stable is None:
            why = "the production version was taken out of production"
            incident = _stop(tx, rollout, "failed", why, _evidence(rollout))
            if incident is None:
                return TickOutcome("raced", rollout)
            return TickOutcome("failed", _reread(tx, rollout), why, None, incident)
        if not state.update_rollout(
            tx.conn,
            rollout,
            stable_version=stable,
            step_started_at=tx.at,
            failures=0,
            analyses=(),
            updated_at=tx.at,
        ):
            return TickOutcome("raced", rollout)
        tx.audit(
            "rollout.restarted",
            f"model:{rollout.model}",
            {"rollout": rollout.id, "from_stable": rollout.stable_version, "to_stable": stable},
        )
        restarted = state.get_rollout(tx.conn, rollout.id)
    return TickOutcome(
        "restarted",
        restarted,
        f"production is v{stable} now (was v{rollout.stable_version}): analysis restarted",
    )
