"""Alert rules: strict parsing with file:line, and the conditions with hysteresis."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest

from conveyor.core.errors import ConfigError, NotFoundError
from conveyor.monitoring import load_rules, parse_rules
from conveyor.monitoring.rules import parse_duration

if TYPE_CHECKING:
    from pathlib import Path

GOOD = """\
alerts:
  - name: feature-drift
    metric: drift.share_drifted
    op: ">"
    threshold: 0.3
    window: 5m
    for: 10m
    resolve_below: 0.2
    severity: page
    notify: [webhook, log]
    actions: [open_incident, rollback]
    runbook: runbooks/drift.md
  - name: accuracy
    metric: perf.accuracy
    op: "<"
    threshold: 0.7
"""


def test_a_rule_file_parses() -> None:
    drift, accuracy = parse_rules(GOOD)
    assert drift.name == "feature-drift"
    assert (drift.op, drift.threshold, drift.resolve_at) == (">", 0.3, 0.2)
    assert drift.window == dt.timedelta(minutes=5)
    assert drift.for_ == dt.timedelta(minutes=10)
    assert drift.notify == ("webhook", "log")
    assert drift.actions == ("open_incident", "rollback")
    assert drift.source == "alerts.yaml:2"
    assert accuracy.for_ == dt.timedelta(0)
    assert accuracy.resolve_at == 0.7
    assert accuracy.notify == ("log",)


def test_conditions_and_hysteresis() -> None:
    drift, accuracy = parse_rules(GOOD)
    assert drift.holds(0.31)
    assert not drift.holds(0.3)
    assert not drift.recovered(0.25)  # between the bounds: a firing alert stays firing
    assert drift.recovered(0.19)
    assert accuracy.holds(0.69)
    assert accuracy.recovered(0.71)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "alerts:\n  - name: a\n    metric: m\n    op: '>'\n    threshold: 1\n    colour: red\n",
            "alerts.yaml:6: unknown alert rule key 'colour'",
        ),
        (
            "alerts:\n  - name: a\n    metric: m\n    op: '=>'\n    threshold: 1\n",
            "alerts.yaml:4: op '=>' is not one of",
        ),
        (
            "alerts:\n  - name: a\n    metric: m\n    op: '>'\n",
            "alerts.yaml:2: alert rule has no 'threshold'",
        ),
        (
            "alerts:\n  - name: a\n    metric: m\n    op: '>'\n    threshold: x\n",
            "alerts.yaml:5: threshold 'x' must be a finite number",
        ),
        (
            "alerts:\n  - name: a\n    metric: m\n    op: '>'\n    threshold: 1\n    for: soon\n",
            "alerts.yaml:6: for 'soon' is not a duration",
        ),
        (
            "alerts:\n  - name: a\n    metric: m\n    op: '>'\n    threshold: 1\n"
            "    resolve_below: 2\n",
            "alerts.yaml:2: rule 'a' would resolve at 2.0 before",
        ),
        (
            "alerts:\n  - name: a\n    metric: m\n    op: '<'\n    threshold: 1\n"
            "    resolve_below: 0\n",
            "alerts.yaml:6: resolve_below does not fit op '<'",
        ),
        (
            "alerts:\n  - name: a\n    metric: m\n    op: '>'\n    threshold: 1\n"
            "    actions: [reboot]\n",
            "alerts.yaml:6: unknown actions 'reboot'",
        ),
        (
            "alerts:\n  - {name: a, metric: m, op: '>', threshold: 1}\n"
            "  - {name: a, metric: n, op: '>', threshold: 2}\n",
            "alerts.yaml:3: rule name 'a' is used twice (first at alerts.yaml:2)",
        ),
        ("alerts: {name: a}\n", "alerts.yaml:1: `alerts` must be a list of rules"),
        ("alerts:\n  - name: [a\n", "alerts.yaml:3: not valid YAML"),
    ],
)
def test_mistakes_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules(text)
    assert caught.value.message.startswith(message), caught.value.message


def test_durations() -> None:
    assert parse_duration("90s", "f:1", "for") == dt.timedelta(seconds=90)
    assert parse_duration("1.5h", "f:1", "for") == dt.timedelta(minutes=90)
    assert parse_duration(30, "f:1", "for") == dt.timedelta(seconds=30)
    with pytest.raises(ConfigError, match="f:1: window '-5m' is not a duration"):
        parse_duration("-5m", "f:1", "window")


def test_load_rules_reads_a_file_and_refuses_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.yaml"
    path.write_text(GOOD)
    assert [r.name for r in load_rules(path)] == ["feature-drift", "accuracy"]
    assert load_rules(path)[0].source == f"{path}:2"
    with pytest.raises(NotFoundError, match="does not exist"):
        load_rules(tmp_path / "nope.yaml")


def test_the_example_file_parses_and_links_shipped_runbooks() -> None:
    from conveyor.monitoring._runbooks import RUNBOOKS
    from conveyor.monitoring.rules import EXAMPLE

    rules = parse_rules(EXAMPLE, name="monitoring.yaml")
    assert [r.name for r in rules] == [
        "feature-drift",
        "latency-p99",
        "null-inputs",
        "accuracy-drop",
    ]
    assert sorted(str(r.runbook).removeprefix("runbooks/") for r in rules) == sorted(RUNBOOKS)


def test_no_alerts_is_no_rules() -> None:
    assert parse_rules("") == []
    assert parse_rules("alerts:\n") == []
    assert parse_rules("webhook: x\n") == []
