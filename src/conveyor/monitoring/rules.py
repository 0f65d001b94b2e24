"""Alert rules, read from YAML strictly: every mistake is refused with its file and line.

::

    alerts:
      - name: feature-drift
        metric: drift.share_drifted     # a window metric, see conveyor.monitoring.windows
        op: ">"
        threshold: 0.3
        window: 5m                      # the metric's mean over the windows of the last 5m
        for: 10m                        # the condition must hold this long before firing
        resolve_below: 0.2              # hysteresis: firing until the value drops below this
        severity: page
        notify: [webhook, log]
        actions: [open_incident, rollback]   # or halt_rollout
        runbook: runbooks/drift.md

``resolve_below`` belongs to ``>``/``>=`` rules and ``resolve_above`` to ``<``/``<=`` rules;
without one a rule resolves when its condition stops holding. Durations are ``<n>s|m|h|d``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.core.errors import ConfigError, NotFoundError

__all__ = [
    "ACTIONS",
    "EXAMPLE",
    "NOTIFIERS",
    "OPS",
    "AlertRule",
    "load_rules",
    "parse_duration",
    "parse_rules",
]

OPS = (">", ">=", "<", "<=")
ACTIONS = ("open_incident", "halt_rollout", "rollback")
NOTIFIERS = ("webhook", "log")
SEVERITIES = ("info", "ticket", "page")

_KEYS = (
    "name",
    "metric",
    "op",
    "threshold",
    "window",
    "for",
    "resolve_below",
    "resolve_above",
    "severity",
    "notify",
    "actions",
    "runbook",
    "description",
)
_REQUIRED = ("name", "metric", "op", "threshold")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: A starting ``monitoring.yaml`` for a new project (``conveyor init`` may write it): one rule per
#: shipped runbook. The webhook URL is not here: it is a secret, read from the environment.
EXAMPLE = """\
# Alert rules over the monitoring windows (see `conveyor monitor --help`).
alerts:
  - name: feature-drift
    metric: drift.share_drifted
    op: ">"
    threshold: 0.3
    resolve_below: 0.2
    window: 15m
    for: 30m
    severity: ticket
    notify: [webhook, log]
    actions: [open_incident]
    runbook: runbooks/drift.md
  - name: latency-p99
    metric: latency.p99
    op: ">"
    threshold: 0.25
    resolve_below: 0.15
    window: 5m
    for: 10m
    severity: page
    notify: [webhook, log]
    actions: [open_incident]
    runbook: runbooks/latency.md
  - name: null-inputs
    metric: quality.null_share
    op: ">"
    threshold: 0.1
    resolve_below: 0.02
    window: 5m
    for: 10m
    severity: page
    notify: [webhook, log]
    actions: [open_incident]
    runbook: runbooks/error-spike.md
  - name: accuracy-drop
    metric: perf.accuracy
    op: "<"
    threshold: 0.7
    resolve_above: 0.75
    window: 1h
    for: 1h
    severity: page
    notify: [webhook, log]
    actions: [open_incident, rollback]
    runbook: runbooks/bad-rollout.md
"""
_EXAMPLE = "{name: drift, metric: drift.share_drifted, op: '>', threshold: 0.3, for: 10m}"


@dataclass(frozen=True)
class AlertRule:
    """One rule: a condition over a window metric that must hold ``for_`` before firing."""

    name: str
    metric: str
    op: str
    threshold: float
    window: dt.timedelta
    for_: dt.timedelta
    resolve_at: float  # the hysteresis bound: firing ends once the value is past it
    severity: str = "ticket"
    notify: tuple[str, ...] = ("log",)
    actions: tuple[str, ...] = ()
    runbook: str | None = None
    description: str = ""
    source: str = ""  # file:line

    def holds(self, value: float) -> bool:
        """Whether the condition holds for ``value``."""
        if self.op == ">":
            return value > self.threshold
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<":
            return value < self.threshold
        return value <= self.threshold

    def recovered(self, value: float) -> bool:
        """Whether a firing alert resolves at ``value`` (past the hysteresis bound)."""
        if self.op in (">", ">="):
            return value < self.resolve_at
        return value > self.resolve_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "window_s": self.window.total_seconds(),
            "for_s": self.for_.total_seconds(),
            "resolve_at": self.resolve_at,
            "severity": self.severity,
            "notify": list(self.notify),
            "actions": list(self.actions),
            "runbook": self.runbook,
            "source": self.source,
        }


def parse_duration(text: Any, where: str, key: str) -> dt.timedelta:
    """``30s``, ``5m``, ``1h``, ``1d`` (or a number of seconds) as a timedelta.

    Raises:
        ConfigError: anything else, or a negative duration.
    """
    if type(text) in (int, float) and math.isfinite(text) and text >= 0:
        return dt.timedelta(seconds=float(text))
    match = _DURATION.match(str(text).strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(
            f"{where}: {key} {text!r} is not a duration", hint=f"e.g. `{key}: 5m` (s, m, h, d)"
        )
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def load_rules(path: Path) -> list[AlertRule]:
    """The rules of an alerts file.

    Raises:
        NotFoundError: the file does not exist.
        ConfigError: as :func:`parse_rules`.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"alert rules file {path} does not exist",
            hint="create it with an `alerts:` list, see `conveyor monitor --help`",
        ) from exc
    return parse_rules(text, name=str(path))


def parse_rules(text: str, *, name: str = "alerts.yaml") -> list[AlertRule]:
    """Parse the ``alerts:`` list of a YAML text (other top-level keys are left to others).

    Raises:
        ConfigError: not YAML, no list, an unknown key, a missing or bad value, a rule name
            used twice; the message names ``file:line``.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML ({problem})") from exc
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{_where(name, root)}: the top level must be a mapping with `alerts:`")
    items: yaml.Node | None = None
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "alerts":
            items = value
    if items is None or (isinstance(items, yaml.ScalarNode) and items.value in ("", "~", "null")):
        return []
    if not isinstance(items, yaml.SequenceNode):
        raise ConfigError(
            f"{_where(name, items)}: `alerts` must be a list of rules", hint=f"e.g. - {_EXAMPLE}"
        )
    rules: list[AlertRule] = []
    seen: dict[str, str] = {}
    for node in items.value:
        rule = _rule(node, name)
        if rule.name in seen:
            raise ConfigError(
                f"{rule.source}: rule name {rule.name!r} is used twice "
                f"(first at {seen[rule.name]})",
                hint="give each rule its own name: alerts are stored per rule name",
            )
        seen[rule.name] = rule.source
        rules.append(rule)
    return rules


def _where(name: str, node: yaml.Node) -> str:
    return f"{name}:{node.start_mark.line + 1}"


def _rule(node: yaml.Node, name: str) -> AlertRule:  # noqa: PLR0912 (one branch per key)
    where = _where(name, node)
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{where}: an alert rule must be a mapping", hint=f"e.g. {_EXAMPLE}")
    raw: dict[str, Any] = {}
    lines: dict[str, str] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.value not in _KEYS:
            raise ConfigError(
                f"{_where(name, key)}: unknown alert rule key {getattr(key, 'value', key)!r}",
                hint=f"the keys are: {', '.join(_KEYS)}",
            )
        if key.value in raw:
            raise ConfigError(f"{_where(name, key)}: key {key.value!r} is given twice")
        raw[key.value] = yaml.safe_load(yaml.serialize(value))
        lines[key.value] = _where(name, value)
    for key in _REQUIRED:
        if raw.get(key) is None:
            raise ConfigError(f"{where}: alert rule has no {key!r}", hint=f"e.g. {_EXAMPLE}")
    for key in ("name", "metric"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ConfigError(f"{lines[key]}: {key} must be a non-empty text")
    if raw["op"] not in OPS:
        raise ConfigError(
            f"{lines['op']}: op {raw['op']!r} is not one of {', '.join(OPS)}",
            hint='quote it in YAML: `op: ">"`',
        )
    numbers = {}
    for key in ("threshold", "resolve_below", "resolve_above"):
        value = raw.get(key)
        if value is None:
            continue
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ConfigError(f"{lines[key]}: {key} {value!r} must be a finite number")
        numbers[key] = float(value)
    threshold = numbers["threshold"]
    above = raw["op"] in (">", ">=")
    wrong = "resolve_above" if above else "resolve_below"
    if wrong in numbers:
        raise ConfigError(
            f"{lines[wrong]}: {wrong} does not fit op {raw['op']!r}",
            hint=f"use {'resolve_below' if above else 'resolve_above'} for this rule",
        )
    resolve = numbers.get("resolve_below" if above else "resolve_above", threshold)
    if (above and resolve > threshold) or (not above and resolve < threshold):
        raise ConfigError(
            f"{where}: rule {raw['name']!r} would resolve at {resolve} before it fires at "
            f"{threshold}",
            hint="the resolve bound lies on the healthy side of the threshold (hysteresis)",
        )
    window = parse_duration(raw.get("window", "5m"), lines.get("window", where), "window")
    for_ = parse_duration(raw.get("for", "0s"), lines.get("for", where), "for")
    if window <= dt.timedelta(0):
        raise ConfigError(f"{lines.get('window', where)}: window must be positive")
    severity = raw.get("severity", "ticket")
    if severity not in SEVERITIES:
        raise ConfigError(
            f"{lines['severity']}: severity {severity!r} is not one of {', '.join(SEVERITIES)}"
        )
    notify = _names(raw, lines, "notify", NOTIFIERS, default=("log",))
    actions = _names(raw, lines, "actions", ACTIONS, default=())
    runbook = raw.get("runbook")
    if runbook is not None and not isinstance(runbook, str):
        raise ConfigError(f"{lines['runbook']}: runbook must be a path or a link")
    return AlertRule(
        name=raw["name"].strip(),
        metric=raw["metric"].strip(),
        op=raw["op"],
        threshold=threshold,
        window=window,
        for_=for_,
        resolve_at=resolve,
        severity=severity,
        notify=notify,
        actions=actions,
        runbook=runbook,
        description=str(raw.get("description") or ""),
        source=where,
    )


def _names(
    raw: dict[str, Any],
    lines: dict[str, str],
    key: str,
    allowed: tuple[str, ...],
    *,
    default: tuple[str, ...],
) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{lines[key]}: {key} must be a list of names")
    for item in value:
        if item not in allowed:
            raise ConfigError(
                f"{lines[key]}: unknown {key} {item!r}", hint=f"use any of: {', '.join(allowed)}"
            )
    return tuple(dict.fromkeys(value))
