"""``conveyor changelog MODEL``: a model's history in markdown, newest version first, generated
from the metadata store (never kept by hand).

For each version: when and by whom it was registered and from which run; the data it was trained
on; parameter, code, environment and metric changes against the version registered before it
(:func:`conveyor.lineage.graph.diff_versions`); its gate results per stage; its reviews; and
every stage change (promotions, rollbacks, archiving) with who, when and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.core.clock import utcnow
from conveyor.core.errors import NotFoundError

if TYPE_CHECKING:
    import datetime as dt

    from conveyor.lineage.graph import VersionDiff
    from conveyor.registry import GateResult, ModelVersion, Review, StageChange
    from conveyor.store.metadata import MetadataStore

__all__ = ["Entry", "changelog", "render_markdown"]


@dataclass(frozen=True)
class Entry:
    """One version's chapter of the changelog."""

    version: ModelVersion
    datasets: list[str]
    diff: VersionDiff | None  # against the version registered before it
    gates: list[GateResult] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    stages: list[StageChange] = field(default_factory=list)
    features: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version.version,
            "stage": self.version.stage,
            "registered_at": self.version.created_at.isoformat(),
            "registered_by": self.version.created_by,
            "run_id": self.version.run_id,
            "artifact_digest": self.version.artifact_digest,
            "datasets": self.datasets,
            "features": self.features,
            "changes": self.diff.to_json() if self.diff is not None else None,
            "gates": [g.to_dict() for g in self.gates],
            "reviews": [r.to_dict() for r in self.reviews],
            "stages": [s.to_dict() for s in self.stages],
        }


def changelog(store: MetadataStore, model: str) -> list[Entry]:
    """Every version of ``model``, newest first, with what the module docstring lists.

    Raises:
        NotFoundError: no model of that name.
    """
    from conveyor.lineage.graph import describe, diff_versions, upstream
    from conveyor.registry import gate_results, list_reviews, list_versions, stage_history

    versions = list_versions(store, model)
    history = stage_history(store, model)
    gates = gate_results(store, model)
    entries: list[Entry] = []
    previous: ModelVersion | None = None
    for version in versions:
        try:
            graph = upstream(store, f"model:{model}/{version.version}", details=False)
            reached = [n.id for n in graph.nodes]
        except NotFoundError:  # registered without a run: no lineage graph
            reached = []
        with store.read() as conn:
            labels = describe(conn, [n for n in reached if n.startswith("dataset:")])
            reviews = list_reviews(conn, model, version.version)
        datasets = sorted(
            f"{labels[n].label} ({n})" if n in labels else n
            for n in reached
            if n.startswith("dataset:")
        )
        entries.append(
            Entry(
                version=version,
                datasets=datasets,
                diff=(
                    diff_versions(store, model, previous.version, version.version)
                    if previous is not None
                    else None
                ),
                gates=[g for g in gates if g.version == version.version],
                reviews=reviews,
                stages=[s for s in history if s.version == version.version],
                features=sorted(n for n in reached if n.startswith("feature:")),
            )
        )
        previous = version
    return entries[::-1]


def render_markdown(model: str, entries: list[Entry], *, now: dt.datetime | None = None) -> str:
    """The changelog as markdown."""
    lines = [
        f"# Changelog of {model}",
        "",
        f"Generated from the metadata store at {_when(now or utcnow())}; newest version first.",
    ]
    for entry in entries:
        v = entry.version
        lines += ["", f"## v{v.version} — {v.stage}", ""]
        run = f", from run `{v.run_id}`" if v.run_id else ""
        lines.append(f"- Registered {_when(v.created_at)} by {v.created_by}{run}.")
        lines.append(f"- Bundle `{v.artifact_digest}`.")
        if entry.datasets:
            lines.append("- Data: " + "; ".join(entry.datasets) + ".")
        if entry.features:
            lines.append("- Features: " + ", ".join(f"`{f}`" for f in entry.features) + ".")
        lines += _changes(entry)
        lines += _gates(entry.gates)
        for review in entry.reviews:
            comment = f": “{review.comment}”" if review.comment else ""
            role = f" ({review.role})" if review.role else ""
            lines.append(
                f"- {review.decision.capitalize()}d for {review.stage} by {review.user}{role} "
                f"{_when(review.at)}{comment}."
            )
        for change in entry.stages:
            reason = f" — {change.reason}" if change.reason else ""
            lines.append(f"- → {change.stage} {_when(change.at)} by {change.actor}{reason}.")
    return "\n".join(lines) + "\n"


def _changes(entry: Entry) -> list[str]:
    diff = entry.diff
    if diff is None:
        return ["- First version."]
    lines: list[str] = []
    against = f"v{diff.old}"
    for added in diff.data["added"]:
        lines.append(f"- Data added vs {against}: {added}.")
    for removed in diff.data["removed"]:
        lines.append(f"- Data removed vs {against}: {removed}.")
    if diff.params:
        changed = ", ".join(f"`{k}` {a!r} → {b!r}" for k, (a, b) in sorted(diff.params.items()))
        lines.append(f"- Parameters vs {against}: {changed}.")
    if diff.code:
        steps = ", ".join(f"`{step}`" for step in sorted(diff.code))
        lines.append(f"- Code changed vs {against} in step(s) {steps}.")
    if diff.environment[0] != diff.environment[1]:
        lines.append(f"- Environment changed vs {against} (installed distributions or Python).")
    if diff.metrics:
        parts = []
        for key, (a, b) in sorted(diff.metrics.items()):
            if a is not None and b is not None:
                parts.append(f"{key} {a:.4g} → {b:.4g} ({b - a:+.4g})")
            else:
                parts.append(f"{key} {a} → {b}")
        lines.append(f"- Metrics vs {against}: " + ", ".join(parts) + ".")
    if not lines:
        lines.append(f"- No change in data, parameters, code, environment or metrics vs {against}.")
    return lines


def _gates(gates: list[GateResult]) -> list[str]:
    by_stage: dict[str, list[GateResult]] = {}
    for g in gates:
        by_stage.setdefault(g.stage, []).append(g)
    lines = []
    for stage, results in by_stage.items():
        # The latest attempt: the results recorded at its time.
        last = max(r.at for r in results)
        attempt = [r for r in results if r.at == last]
        failed = [r.check for r in attempt if not r.passed]
        verdict = "all passed" if not failed else "failed: " + ", ".join(f"`{c}`" for c in failed)
        attempts = len({r.at for r in results})
        tries = f" (attempt {attempts})" if attempts > 1 else ""
        lines.append(f"- Gates for {stage} {_when(last)}{tries}: {len(attempt)} checks, {verdict}.")
    return lines


def _when(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")
