"""Promotion policies: ``policies.yaml`` declares, per stage, what a version must show.

A file has an optional ``evaluation:`` section (the dataset every version is measured on, its
label column, the slices and sensitive attributes to report) and a ``stages:`` section whose
stages (``candidate``, ``production``) each declare any of::

    checks:          # metric thresholds, absolute or relative to the version in production
      - roc_auc >= 0.75
      - roc_auc >= production.roc_auc + 0.005 with 95% confidence
      - log_loss <= production.log_loss + 0.01
      - expected_calibration_error <= 0.05
      - fairness.demographic_parity_difference <= 0.1
      - slice.contract.recall >= 0.5          # the worst group of the slice column
    approvals: {count: 1, roles: [approver]}  # reviews needed, never from the author
    inference: {p99_ms: 50, concurrency: 16}  # conveyor.evaluation.loadtest.InferenceBudget
    data_checks: {reference: data/2026-01.csv} # conveyor.data.gate.DataGateSettings
    reproducible: true                        # the version's run is fully recorded
    reproducible:                             # ... and rebuilt from its records (see below)
      rebuild: true
      tolerance: {roc_auc: 0.001, default: 0}

``reproducible: true`` checks that the version's run is recorded well enough to be rebuilt (a
run, code, environment and parameters by digest, every input file by digest). The mapping form
with ``rebuild: true`` also rebuilds it (``conveyor reproduce``): in a clean folder, from the
recorded code snapshot, parameters and seed, on the recorded data; the check passes when the
rebuilt bundle is bit-identical, or else when every registered metric is within its
``tolerance`` (``default`` for metrics not named; 0 when not given). ``rebuild: false`` means
the same as ``true``.

A top-level ``rollout:`` block sets the analysis of canary and shadow rollouts
(``conveyor.deploy.analysis.AnalysisSettings``: interval, minimum sample, margins, failure
limit).

A check is one comparison of a metric with a number, or with the same (or another) metric of the
version in production shifted by a number; ``with NN% confidence`` makes a relative check hold
only when the whole confidence interval of the paired difference (bootstrap, or DeLong for ROC
AUC) clears the offset, so noise cannot pass for improvement.

Checks are parsed with one regular expression and evaluated by comparing floats: a policy file
can never run code, so reading one from a pull request is safe. The ``inference`` and
``data_checks`` blocks are kept as mappings here and validated, with their file and line, by the
modules that run them before anything runs. The file's digest is recorded with every gate result.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from conveyor.core.digest import digest_bytes, digest_json
from conveyor.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = [
    "GATED_STAGES",
    "ApprovalRule",
    "Check",
    "CheckResult",
    "EvaluationSpec",
    "Policy",
    "RebuildPolicy",
    "StagePolicy",
    "load_policy",
    "parse_policy",
]

# The stages a policy can gate. Versions start in "experimental" and archiving is always allowed,
# so checks for either would never run; naming them is an error rather than a silent no-op.
GATED_STAGES = ("candidate", "production")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A metric name may be dotted: ``fairness.demographic_parity_difference``,
# ``slice.<column>.<metric>``; never ``production.<...>``, which is the reference side.
_METRIC = rf"(?!production\.){_IDENT}(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*"
_UNSIGNED = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_CHECK_RE = re.compile(
    rf"""^\s*(?P<metric>{_METRIC})\s*(?P<op>>=|<=|>|<)\s*
    (?:
        (?P<number>[+-]?{_UNSIGNED})
      | production\.(?P<ref>{_METRIC})(?:\s*(?P<sign>[+-])\s*(?P<offset>{_UNSIGNED}))?
        (?:\s+with\s+(?P<confidence>\d+(?:\.\d+)?)\s*%\s+confidence)?
    )\s*$""",
    re.VERBOSE,
)
_GRAMMAR_HINT = (
    "write `<metric> <op> <number>` or `<metric> <op> production.<metric> [+|- <number>] "
    "[with <NN>% confidence]` with <op> one of >=, <=, >, <; e.g. `roc_auc >= 0.75` or "
    "`roc_auc >= production.roc_auc + 0.005 with 95% confidence`"
)
_MAX_CHECK_LENGTH = 256  # the width of gate_result.check
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check for one version: JSON-ready through ``to_dict()``.

    ``evidence`` holds what a reader needs to trust the verdict beyond the two numbers: the
    confidence interval of a comparison, the measurements of an inference test, the findings of
    a data check, the reviews counted for an approval.
    """

    check: str
    passed: bool
    observed: float | None
    threshold: float | None
    detail: str
    stage: str = ""
    evidence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "stage": self.stage,
            "passed": self.passed,
            "observed": self.observed,
            "threshold": self.threshold,
            "detail": self.detail,
        }
        if self.evidence is not None:
            out["evidence"] = self.evidence
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        """The inverse of :meth:`to_dict` (e.g. for ``CheckFailedError.details["checks"]``)."""
        evidence = data.get("evidence")
        return cls(
            check=str(data["check"]),
            passed=bool(data["passed"]),
            observed=None if data.get("observed") is None else float(data["observed"]),
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
            detail=str(data.get("detail", "")),
            stage=str(data.get("stage", "")),
            evidence=dict(evidence) if isinstance(evidence, Mapping) else None,
        )


@dataclass(frozen=True)
class Check:
    """One parsed check. ``reference`` is the production metric for relative checks, where
    ``value`` is the offset added to it; for absolute checks ``value`` is the threshold.
    ``confidence`` (e.g. 0.95) asks that the confidence interval of the difference, not just
    the point estimate, clear the offset."""

    text: str
    stage: str
    metric: str
    op: str
    value: float
    reference: str | None = None
    source: str = ""  # "policies.yaml:7", for messages
    confidence: float | None = None

    @classmethod
    def parse(cls, text: str, *, stage: str, source: str = "") -> Check:
        """Parse ``text`` with the check grammar.

        Raises:
            ConfigError: naming ``source`` and the text, with the grammar as hint.
        """
        where = f"{source}: " if source else ""
        if len(text) > _MAX_CHECK_LENGTH:
            raise ConfigError(
                f"{where}check {text[:40]!r}... is longer than {_MAX_CHECK_LENGTH} characters",
                hint="split it into several checks",
            )
        match = _CHECK_RE.match(text)
        if match is None:
            raise ConfigError(f"{where}check {text!r} is not a valid check", hint=_GRAMMAR_HINT)
        if match["number"] is not None:
            value, reference = float(match["number"]), None
        else:
            offset = float(match["offset"]) if match["offset"] else 0.0
            value = -offset if match["sign"] == "-" else offset
            reference = match["ref"]
        if not math.isfinite(value):
            raise ConfigError(f"{where}check {text!r} has a number out of range")
        confidence = None
        if match["confidence"] is not None:
            percent = float(match["confidence"])
            if not 50.0 <= percent < 100.0:
                raise ConfigError(
                    f"{where}check {text!r} asks for {percent:g}% confidence",
                    hint="use a confidence of at least 50% and below 100%, e.g. 95%",
                )
            confidence = percent / 100.0
            if reference != match["metric"]:
                raise ConfigError(
                    f"{where}check {text!r} compares '{match['metric']}' with production's "
                    f"'{reference}' with confidence",
                    hint="a confidence interval is of the difference of one metric between "
                    "the two versions: compare a metric with the same metric of production",
                )
        return cls(
            text=" ".join(text.split()),
            stage=stage,
            metric=match["metric"],
            op=match["op"],
            value=value,
            reference=reference,
            source=source,
            confidence=confidence,
        )

    @property
    def relative(self) -> bool:
        return self.reference is not None

    @property
    def higher_is_better(self) -> bool:
        """What the operator says the author wants: ``>``/``>=`` means higher is better."""
        return self.op in (">", ">=")

    def compare(self, observed: float, threshold: float) -> bool:
        """``observed <op> threshold``."""
        return _OPERATORS[self.op](observed, threshold)

    def evaluate(
        self,
        metrics: Mapping[str, float],
        *,
        production_version: int | None = None,
        production_metrics: Mapping[str, float] | None = None,
    ) -> CheckResult:
        """Evaluate against a version's ``metrics`` and, for relative checks, production's.

        A check with ``confidence`` needs both versions' predictions on the same data; this
        point comparison refuses to judge it (the promotion workflow evaluates it instead).
        """
        observed = metrics.get(self.metric)
        if observed is None:
            have = ", ".join(sorted(metrics)) or "none"
            return self.result(
                False, None, None, f"the version has no metric '{self.metric}' (it has: {have})"
            )
        if self.reference is None:
            threshold = self.value
            basis = ""
        else:
            if production_metrics is None:
                return self.result(True, observed, None, "no version in production to compare with")
            if self.confidence is not None:
                return self.result(
                    False,
                    observed,
                    None,
                    "a check with confidence needs both versions evaluated on the same data; "
                    "declare `evaluation:` in the policy",
                )
            base = production_metrics.get(self.reference)
            if base is None:
                return self.result(
                    False,
                    observed,
                    None,
                    f"production v{production_version} has no metric '{self.reference}' "
                    "to compare with",
                )
            threshold = self.shifted(base)
            shift = f" {'-' if self.value < 0 else '+'} {abs(self.value):g}" if self.value else ""
            basis = f" (production v{production_version} {self.reference} {base:.6g}{shift})"
        passed = self.compare(observed, threshold)
        verb = self.op if passed else f"is not {self.op}"
        detail = f"{self.metric} {observed:.6g} {verb} {threshold:.6g}{basis}"
        return self.result(passed, observed, threshold, detail)

    def shifted(self, base: float) -> float:
        """Production's value plus the offset, rounded to 12 significant digits so that
        0.4 + 0.01 is the 0.41 the author meant and not 0.41000000000000003: a metric exactly on
        the line must not fail by one ulp."""
        return float(f"{base + self.value:.12g}")

    def result(
        self,
        passed: bool,
        observed: float | None,
        threshold: float | None,
        detail: str,
        evidence: dict[str, Any] | None = None,
    ) -> CheckResult:
        """A :class:`CheckResult` of this check."""
        return CheckResult(self.text, passed, observed, threshold, detail, self.stage, evidence)


@dataclass(frozen=True)
class ApprovalRule:
    """How many reviews a stage needs, and from which roles (any role when empty).

    The author of a version never counts: four eyes, always.
    """

    count: int
    roles: tuple[str, ...] = ()
    source: str = ""

    @property
    def text(self) -> str:
        who = f" from role {' or '.join(self.roles)}" if self.roles else ""
        return f"approvals >= {self.count}{who}"

    def who(self, author: str) -> str:
        """Who may give the approval, in words."""
        role = f"a user with role {' or '.join(self.roles)}" if self.roles else "any user"
        return f"{role} other than {author} (the author)"


@dataclass(frozen=True)
class RebuildPolicy:
    """``reproducible: {rebuild: true, tolerance: {...}}``: rebuild the version and compare.

    ``tolerances`` maps a metric to the largest absolute difference accepted between the
    registered and the rebuilt value when the bundles are not bit-identical; ``default`` is
    for the metrics not named.
    """

    tolerances: dict[str, float] = field(default_factory=dict)
    default: float = 0.0
    source: str = ""

    def tolerance(self, metric: str) -> float:
        return self.tolerances.get(metric, self.default)


@dataclass(frozen=True)
class StagePolicy:
    """What one stage requires. ``sources`` maps each declared key to its ``file:line``."""

    checks: tuple[Check, ...] = ()
    approvals: ApprovalRule | None = None
    inference: dict[str, Any] | None = None
    data_checks: dict[str, Any] | None = None
    reproducible: bool = False
    #: Set by the mapping form with ``rebuild: true`` (``reproducible`` is then true as well).
    rebuild: RebuildPolicy | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.checks
            or self.approvals
            or self.inference is not None
            or self.data_checks is not None
            or self.reproducible
        )


@dataclass(frozen=True)
class EvaluationSpec:
    """The ``evaluation:`` section: what every version is measured on, and how.

    ``data`` is relative to the project folder. Changing any field changes :meth:`digest`, and
    so which stored evaluations can be reused.
    """

    data: str
    target: str
    slices: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()
    threshold: float = 0.5
    bins: int = 10
    bootstrap: int = 1000
    seed: int = 0
    min_group_size: int = 30
    source: str = ""
    #: ``file:line`` of each key, for messages about its value.
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def settings(self) -> dict[str, Any]:
        """The fields that decide an evaluation's numbers (not where the file is)."""
        return {
            "target": self.target,
            "slices": list(self.slices),
            "sensitive": list(self.sensitive),
            "threshold": self.threshold,
            "bins": self.bins,
            "min_group_size": self.min_group_size,
        }

    def digest(self) -> str:
        return digest_json(self.settings())


@dataclass(frozen=True)
class Policy:
    """What each gated stage requires. ``note`` says why a policy is empty, when it is."""

    stages: dict[str, StagePolicy] = field(default_factory=dict)
    source: Path | None = None
    note: str = ""
    evaluation: EvaluationSpec | None = None
    #: The digest of the policy file's bytes; recorded with every gate result.
    digest: str | None = None
    #: The ``rollout:`` block (canary analysis settings) as written, and where it starts
    #: (``policies.yaml:40``); validated by ``conveyor.deploy.analysis.AnalysisSettings``.
    rollout: dict[str, Any] | None = None
    rollout_source: str = ""

    def checks_for(self, stage: str) -> tuple[Check, ...]:
        return self.stage(stage).checks

    def stage(self, stage: str) -> StagePolicy:
        return self.stages.get(stage, _EMPTY_STAGE)

    @property
    def has_checks(self) -> bool:
        return any(not s.empty for s in self.stages.values())


_EMPTY_STAGE = StagePolicy()


def load_policy(path: Path | None) -> Policy:
    """Read a ``policies.yaml``. No path, or a path that does not exist, gives an empty policy
    (every promotion passes) whose ``note`` says so.

    Raises:
        ConfigError: the file is unreadable, not YAML, or has a bad key, stage or check; the
            message names the file and line.
    """
    if path is None:
        return Policy(note="no policies.yaml is configured, so no checks ran")
    if not path.exists():
        return Policy(source=path, note=f"{path} does not exist, so no checks ran")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(
            f"cannot read {path}: {reason}", hint="check the `policies:` setting"
        ) from exc
    policy = parse_policy(text, name=path.name)
    return Policy(
        stages=policy.stages,
        source=path,
        note=policy.note,
        evaluation=policy.evaluation,
        digest=policy.digest,
        rollout=policy.rollout,
        rollout_source=policy.rollout_source,
    )


def parse_policy(text: str, *, name: str = "policies.yaml") -> Policy:
    """Parse the text of a policy file; ``name`` is used in error messages.

    Raises:
        ConfigError: as :func:`load_policy`.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML ({problem})") from exc
    stages: dict[str, StagePolicy] = {}
    evaluation: EvaluationSpec | None = None
    rollout: dict[str, Any] | None = None
    rollout_source = ""
    for key, value in _mapping(root, name, "the top level", ("evaluation", "stages", "rollout")):
        if key.value == "evaluation":
            evaluation = _evaluation(value, name)
            continue
        if key.value == "rollout":
            if _is_null(value):
                continue
            block = _plain(value, name, "rollout")
            if not isinstance(block, dict):
                raise ConfigError(
                    f"{_where(name, value)}: rollout must be a mapping",
                    hint="e.g. `rollout: {interval_s: 30, min_requests: 200}`",
                )
            rollout, rollout_source = block, _where(name, value)
            continue
        for stage_key, stage_node in _mapping(value, name, "stages", None):
            stage = _stage_name(stage_key, name)
            stages[stage] = _stage(stage_node, stage, name)
    if evaluation is None:
        for stage_policy in stages.values():
            for check in stage_policy.checks:
                if check.confidence is not None:
                    raise ConfigError(
                        f"{check.source}: check {check.text!r} asks for confidence, but "
                        f"{name} has no `evaluation:` section",
                        hint="add `evaluation: {data: <file>, target: <label column>}`: both "
                        "versions are then measured on that data and their difference bounded",
                    )
    has_any = any(not s.empty for s in stages.values())
    note = "" if has_any else f"{name} declares no checks"
    return Policy(
        stages=stages,
        note=note,
        evaluation=evaluation,
        digest=digest_bytes(text.encode()),
        rollout=rollout,
        rollout_source=rollout_source,
    )


def _where(name: str, node: yaml.Node) -> str:
    return f"{name}:{node.start_mark.line + 1}"


def _is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG)


def _mapping(
    node: yaml.Node | None, name: str, what: str, allowed: tuple[str, ...] | None
) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    """The (key, value) pairs of a mapping node, checked for text keys, duplicates, unknowns."""
    if _is_null(node):
        return []
    assert node is not None
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            f"{_where(name, node)}: {what} must be a mapping",
            hint="see the example in the documentation: `stages: {candidate: {checks: [...]}}`",
        )
    pairs: list[tuple[yaml.ScalarNode, yaml.Node]] = []
    seen: set[str] = set()
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag != _STR_TAG:
            raise ConfigError(f"{_where(name, key)}: the keys of {what} must be names")
        if allowed is not None and key.value not in allowed:
            raise ConfigError(
                f"{_where(name, key)}: unknown key '{key.value}' in {what}",
                hint=f"known keys here: {', '.join(allowed)}",
            )
        if key.value in seen:
            raise ConfigError(f"{_where(name, key)}: '{key.value}' appears twice in {what}")
        seen.add(key.value)
        pairs.append((key, value))
    return pairs


def _stage_name(key: yaml.ScalarNode, name: str) -> str:
    stage = str(key.value)
    if stage in GATED_STAGES:
        return stage
    if stage in ("experimental", "archived"):
        raise ConfigError(
            f"{_where(name, key)}: stage '{stage}' cannot have checks",
            hint="versions start in experimental and can always be archived; "
            f"gate {' or '.join(GATED_STAGES)} instead",
        )
    raise ConfigError(
        f"{_where(name, key)}: unknown stage '{stage}'",
        hint=f"stages that can have checks: {', '.join(GATED_STAGES)}",
    )


_STAGE_KEYS = ("checks", "approvals", "inference", "data_checks", "reproducible")


def _stage(node: yaml.Node, stage: str, name: str) -> StagePolicy:
    checks: tuple[Check, ...] = ()
    approvals: ApprovalRule | None = None
    inference: dict[str, Any] | None = None
    data_checks: dict[str, Any] | None = None
    reproducible = False
    rebuild: RebuildPolicy | None = None
    sources: dict[str, str] = {}
    for key, value in _mapping(node, name, f"stages.{stage}", _STAGE_KEYS):
        sources[key.value] = _where(name, key)
        if key.value == "checks":
            checks = _checks(value, stage, name)
        elif key.value == "approvals":
            approvals = _approvals(value, stage, name)
        elif key.value == "reproducible":
            if isinstance(value, yaml.MappingNode):
                reproducible, rebuild = True, _rebuild(value, stage, name)
            else:
                reproducible = _typed(
                    value, name, f"stages.{stage}.reproducible", bool, "true or false"
                )
        elif _is_null(value):
            continue
        else:
            block = _plain(value, name, f"stages.{stage}.{key.value}")
            if not isinstance(block, dict):
                raise ConfigError(
                    f"{_where(name, value)}: stages.{stage}.{key.value} must be a mapping",
                    hint="e.g. `inference: {p99_ms: 50}` or `data_checks: {reference: <file>}`",
                )
            if key.value == "inference":
                inference = block
            else:
                data_checks = block
    return StagePolicy(
        checks=checks,
        approvals=approvals,
        inference=inference,
        data_checks=data_checks,
        reproducible=reproducible,
        rebuild=rebuild,
        sources=sources,
    )


def _rebuild(node: yaml.Node, stage: str, name: str) -> RebuildPolicy | None:
    what = f"stages.{stage}.reproducible"
    enabled = False
    tolerances: dict[str, float] = {}
    default = 0.0
    for key, value in _mapping(node, name, what, ("rebuild", "tolerance")):
        if key.value == "rebuild":
            enabled = _typed(value, name, f"{what}.rebuild", bool, "true or false")
            continue
        for metric, limit in _mapping(value, name, f"{what}.tolerance", None):
            number = _typed(limit, name, f"{what}.tolerance.{metric.value}", float, "a number")
            if not math.isfinite(number) or number < 0:
                raise ConfigError(
                    f"{_where(name, limit)}: {what}.tolerance.{metric.value} is {number:g}",
                    hint="a tolerance is the largest absolute difference accepted: a finite "
                    "number >= 0",
                )
            if metric.value == "default":
                default = number
            else:
                tolerances[metric.value] = number
    if not enabled:
        if tolerances or default:
            raise ConfigError(
                f"{_where(name, node)}: {what} sets a tolerance but not `rebuild: true`",
                hint="tolerances apply to a rebuild; add `rebuild: true`",
            )
        return None
    return RebuildPolicy(tolerances=tolerances, default=default, source=_where(name, node))


def _checks(node: yaml.Node, stage: str, name: str) -> tuple[Check, ...]:
    if _is_null(node):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(
            f"{_where(name, node)}: stages.{stage}.checks must be a list of checks",
            hint=_GRAMMAR_HINT,
        )
    checks: list[Check] = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or item.tag != _STR_TAG:
            raise ConfigError(
                f"{_where(name, item)}: a check of stage '{stage}' must be one line of text",
                hint=_GRAMMAR_HINT,
            )
        checks.append(Check.parse(item.value, stage=stage, source=_where(name, item)))
    return tuple(checks)


def _approvals(node: yaml.Node, stage: str, name: str) -> ApprovalRule | None:
    what = f"stages.{stage}.approvals"
    count = 1
    roles: tuple[str, ...] = ()
    for key, value in _mapping(node, name, what, ("count", "roles")):
        if key.value == "count":
            count = _typed(value, name, f"{what}.count", int, "a whole number")
            if not 1 <= count <= 10:
                raise ConfigError(
                    f"{_where(name, value)}: {what}.count is {count}",
                    hint="ask for between 1 and 10 approvals",
                )
        else:
            roles = tuple(_names(value, name, f"{what}.roles"))
    return ApprovalRule(count=count, roles=roles, source=_where(name, node))


_EVALUATION_KEYS = (
    "data",
    "target",
    "slices",
    "sensitive",
    "threshold",
    "bins",
    "bootstrap",
    "seed",
    "min_group_size",
)


def _evaluation(node: yaml.Node, name: str) -> EvaluationSpec | None:
    if _is_null(node):
        return None
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in _mapping(node, name, "evaluation", _EVALUATION_KEYS):
        what = f"evaluation.{key.value}"
        sources[key.value] = _where(name, key)
        if key.value in ("data", "target"):
            values[key.value] = _typed(value, name, what, str, "text")
        elif key.value in ("slices", "sensitive"):
            values[key.value] = tuple(_names(value, name, what))
        elif key.value == "threshold":
            number = _typed(value, name, what, float, "a number between 0 and 1")
            if not 0.0 < number < 1.0:
                raise ConfigError(
                    f"{_where(name, value)}: {what} is {number:g}",
                    hint="the decision threshold is a probability strictly between 0 and 1",
                )
            values["threshold"] = number
        else:
            low, high = _INT_RANGES[key.value]
            number = _typed(value, name, what, int, "a whole number")
            if not low <= number <= high:
                raise ConfigError(
                    f"{_where(name, value)}: {what} is {number}",
                    hint=f"use a whole number from {low} to {high}",
                )
            values[key.value] = number
    for required in ("data", "target"):
        if required not in values:
            raise ConfigError(
                f"{_where(name, node)}: evaluation has no `{required}`",
                hint="write `evaluation: {data: <file relative to the project>, "
                "target: <label column>}`",
            )
    return EvaluationSpec(source=_where(name, node), sources=sources, **values)


_INT_RANGES = {
    "bins": (2, 100),
    "bootstrap": (100, 100_000),
    "seed": (0, 2**32 - 1),
    "min_group_size": (1, 1_000_000),
}


def _typed(node: yaml.Node, name: str, what: str, kind: type[Any], words: str) -> Any:
    """A scalar of YAML type ``kind`` (bool, int, float accepting ints, str), else ConfigError."""
    value = _plain(node, name, what)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(
            f"{_where(name, node)}: {what} must be {words}, not {value!r}",
            hint=f"write {what.rsplit('.', 1)[-1]}: <{words}>",
        )
    return value


def _names(node: yaml.Node, name: str, what: str) -> list[str]:
    value = _plain(node, name, what)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"{_where(name, node)}: {what} must be a list of names",
            hint=f"e.g. `{what.rsplit('.', 1)[-1]}: [a, b]`",
        )
    if len(set(value)) != len(value):
        raise ConfigError(
            f"{_where(name, node)}: {what} names a value twice", hint="name each one once"
        )
    return value


def _plain(node: yaml.Node, name: str, what: str) -> Any:
    """The Python value of a node (safe YAML types only)."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except yaml.YAMLError as exc:  # pragma: no cover - composed nodes always serialise
        raise ConfigError(f"{_where(name, node)}: {what} cannot be read ({exc})") from exc
