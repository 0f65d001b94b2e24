"""Promotion policies: ``policies.yaml`` declares, per stage, the checks a version must pass.

A check is one comparison of a metric with a number, or with the same (or another) metric of
the version now in production, shifted by a number::

    roc_auc >= 0.75
    roc_auc >= production.roc_auc - 0.005
    log_loss <= production.log_loss + 0.01

Checks are parsed with one regular expression and evaluated by comparing floats: a policy file
can never run code, so reading one from a pull request is safe.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from conveyor.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

__all__ = ["GATED_STAGES", "Check", "CheckResult", "Policy", "load_policy", "parse_policy"]

# The stages a policy can gate. Versions start in "experimental" and archiving is always allowed,
# so checks for either would never run; naming them is an error rather than a silent no-op.
GATED_STAGES = ("candidate", "production")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_UNSIGNED = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_CHECK_RE = re.compile(
    rf"""^\s*(?P<metric>{_IDENT})\s*(?P<op>>=|<=|>|<)\s*
    (?:
        (?P<number>[+-]?{_UNSIGNED})
      | production\.(?P<ref>{_IDENT})(?:\s*(?P<sign>[+-])\s*(?P<offset>{_UNSIGNED}))?
    )\s*$""",
    re.VERBOSE,
)
_GRAMMAR_HINT = (
    "write `<metric> <op> <number>` or `<metric> <op> production.<metric> [+|- <number>]` "
    "with <op> one of >=, <=, >, <; e.g. `roc_auc >= 0.75` or "
    "`roc_auc >= production.roc_auc - 0.005`"
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
    """The outcome of one check for one version: JSON-ready through ``to_dict()``."""

    check: str
    passed: bool
    observed: float | None
    threshold: float | None
    detail: str
    stage: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "stage": self.stage,
            "passed": self.passed,
            "observed": self.observed,
            "threshold": self.threshold,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        """The inverse of :meth:`to_dict` (e.g. for ``CheckFailedError.details["checks"]``)."""
        return cls(
            check=str(data["check"]),
            passed=bool(data["passed"]),
            observed=None if data.get("observed") is None else float(data["observed"]),
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
            detail=str(data.get("detail", "")),
            stage=str(data.get("stage", "")),
        )


@dataclass(frozen=True)
class Check:
    """One parsed check. ``reference`` is the production metric for relative checks, where
    ``value`` is the offset added to it; for absolute checks ``value`` is the threshold."""

    text: str
    stage: str
    metric: str
    op: str
    value: float
    reference: str | None = None
    source: str = ""  # "policies.yaml:7", for messages

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
        return cls(
            text=" ".join(text.split()),
            stage=stage,
            metric=match["metric"],
            op=match["op"],
            value=value,
            reference=reference,
            source=source,
        )

    @property
    def relative(self) -> bool:
        return self.reference is not None

    def evaluate(
        self,
        metrics: Mapping[str, float],
        *,
        production_version: int | None = None,
        production_metrics: Mapping[str, float] | None = None,
    ) -> CheckResult:
        """Evaluate against a version's ``metrics`` and, for relative checks, production's."""
        observed = metrics.get(self.metric)
        if observed is None:
            have = ", ".join(sorted(metrics)) or "none"
            return self._result(
                False, None, None, f"the version has no metric '{self.metric}' (it has: {have})"
            )
        if self.reference is None:
            threshold = self.value
            basis = ""
        else:
            if production_metrics is None:
                return self._result(
                    True, observed, None, "no version in production to compare with"
                )
            base = production_metrics.get(self.reference)
            if base is None:
                return self._result(
                    False,
                    observed,
                    None,
                    f"production v{production_version} has no metric '{self.reference}' "
                    "to compare with",
                )
            # Rounded to 12 significant digits, so 0.4 + 0.01 is the 0.41 the author meant and not
            # 0.41000000000000003: a metric exactly on the line must not fail by one ulp.
            threshold = float(f"{base + self.value:.12g}")
            shift = f" {'-' if self.value < 0 else '+'} {abs(self.value):g}" if self.value else ""
            basis = f" (production v{production_version} {self.reference} {base:.6g}{shift})"
        passed = _OPERATORS[self.op](observed, threshold)
        verb = self.op if passed else f"is not {self.op}"
        detail = f"{self.metric} {observed:.6g} {verb} {threshold:.6g}{basis}"
        return self._result(passed, observed, threshold, detail)

    def _result(
        self, passed: bool, observed: float | None, threshold: float | None, detail: str
    ) -> CheckResult:
        return CheckResult(self.text, passed, observed, threshold, detail, self.stage)


@dataclass(frozen=True)
class Policy:
    """The checks of each gated stage. ``note`` says why a policy is empty, when it is."""

    stages: dict[str, tuple[Check, ...]] = field(default_factory=dict)
    source: Path | None = None
    note: str = ""

    def checks_for(self, stage: str) -> tuple[Check, ...]:
        return self.stages.get(stage, ())

    @property
    def has_checks(self) -> bool:
        return any(self.stages.values())


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
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(
            f"cannot read {path}: {reason}", hint="check the `policies:` setting"
        ) from exc
    policy = parse_policy(text, name=path.name)
    return Policy(stages=policy.stages, source=path, note=policy.note)


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
    stages: dict[str, tuple[Check, ...]] = {}
    # "stages" is the only top-level key today; _mapping refuses any other.
    for _key, value in _mapping(root, name, "the top level", ("stages",)):
        for stage_key, stage_node in _mapping(value, name, "stages", None):
            stage = _stage_name(stage_key, name)
            stages[stage] = _checks(stage_node, stage, name)
    note = "" if any(stages.values()) else f"{name} declares no checks"
    return Policy(stages=stages, note=note)


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


def _checks(node: yaml.Node, stage: str, name: str) -> tuple[Check, ...]:
    checks: list[Check] = []
    for key, value in _mapping(node, name, f"stages.{stage}", ("checks",)):
        if _is_null(value):
            continue
        if not isinstance(value, yaml.SequenceNode):
            raise ConfigError(
                f"{_where(name, value)}: stages.{stage}.{key.value} must be a list of checks",
                hint=_GRAMMAR_HINT,
            )
        for item in value.value:
            if not isinstance(item, yaml.ScalarNode) or item.tag != _STR_TAG:
                raise ConfigError(
                    f"{_where(name, item)}: a check of stage '{stage}' must be one line of text",
                    hint=_GRAMMAR_HINT,
                )
            checks.append(Check.parse(item.value, stage=stage, source=_where(name, item)))
    return tuple(checks)
