"""policies.yaml beyond metric thresholds: confidence, approvals, inference, data, evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conveyor.core.digest import digest_bytes
from conveyor.core.errors import ConfigError
from conveyor.registry import Check, load_policy, parse_policy

if TYPE_CHECKING:
    from pathlib import Path

FULL = """\
evaluation:
  data: data/eval.csv
  target: churned
  slices: [contract, region]
  sensitive: gender
  bootstrap: 500
stages:
  candidate:
    checks:
      - roc_auc >= 0.75
      - fairness.demographic_parity_difference <= 0.1
      - slice.contract.recall >= 0.4
    inference: {p99_ms: 50, concurrency: 8}
    data_checks:
      reference: data/train.csv
  production:
    checks:
      - roc_auc >= production.roc_auc + 0.005 with 95% confidence
      - log_loss <= production.log_loss with 90 % confidence
    approvals:
      count: 2
      roles: [approver, admin]
    reproducible: true
"""


def test_full_policy_parses_every_block_with_its_line() -> None:
    policy = parse_policy(FULL)
    spec = policy.evaluation
    assert spec is not None
    assert (spec.data, spec.target, spec.slices, spec.sensitive, spec.bootstrap) == (
        "data/eval.csv",
        "churned",
        ("contract", "region"),
        ("gender",),
        500,
    )
    assert spec.source == "policies.yaml:2"
    candidate = policy.stage("candidate")
    assert [c.metric for c in candidate.checks] == [
        "roc_auc",
        "fairness.demographic_parity_difference",
        "slice.contract.recall",
    ]
    assert candidate.inference == {"p99_ms": 50, "concurrency": 8}
    assert candidate.data_checks == {"reference": "data/train.csv"}
    assert candidate.sources["inference"] == "policies.yaml:13"
    assert candidate.approvals is None
    production = policy.stage("production")
    assert [(c.confidence, c.value, c.reference) for c in production.checks] == [
        (0.95, 0.005, "roc_auc"),
        (0.90, 0.0, "log_loss"),
    ]
    rule = production.approvals
    assert rule is not None
    assert (rule.count, rule.roles, rule.text) == (
        2,
        ("approver", "admin"),
        "approvals >= 2 from role approver or admin",
    )
    assert production.reproducible
    assert policy.digest == digest_bytes(FULL.encode())
    assert policy.has_checks


def test_evaluation_digest_follows_settings_not_the_data_path() -> None:
    a = parse_policy(FULL).evaluation
    b = parse_policy(FULL.replace("data/eval.csv", "other.csv")).evaluation
    c = parse_policy(FULL.replace("bootstrap: 500", "bootstrap: 500\n  threshold: 0.3")).evaluation
    assert a is not None
    assert b is not None
    assert c is not None
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()


def test_the_policy_digest_is_recorded_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(FULL)
    assert load_policy(path).digest == digest_bytes(path.read_bytes())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "stages:\n  production:\n    checks:\n"
            "      - auc >= production.auc with 95% confidence\n",
            "policies.yaml:4: check 'auc >= production.auc with 95% confidence' asks for "
            "confidence, but policies.yaml has no `evaluation:` section",
        ),
        (
            "evaluation: {data: e.csv, target: y}\nstages:\n  production:\n    checks:\n"
            "      - auc >= production.auc with 100% confidence\n",
            "policies.yaml:5: check 'auc >= production.auc with 100% confidence' asks for "
            "100% confidence",
        ),
        (
            "evaluation: {data: e.csv, target: y}\nstages:\n  production:\n    checks:\n"
            "      - auc >= production.roc_auc with 95% confidence\n",
            "policies.yaml:5: check 'auc >= production.roc_auc with 95% confidence' compares "
            "'auc' with production's 'roc_auc' with confidence",
        ),
        (
            "stages:\n  production:\n    approvals: {count: two}\n",
            "policies.yaml:3: stages.production.approvals.count must be a whole number, not 'two'",
        ),
        (
            "stages:\n  production:\n    approvals: {count: 0}\n",
            "policies.yaml:3: stages.production.approvals.count is 0",
        ),
        (
            "stages:\n  production:\n    approvals: {count: 1, roles: [a, a]}\n",
            "policies.yaml:3: stages.production.approvals.roles names a value twice",
        ),
        (
            "stages:\n  production:\n    approvals: {who: me}\n",
            "policies.yaml:3: unknown key 'who' in stages.production.approvals",
        ),
        (
            "stages:\n  candidate:\n    reproducible: yes please\n",
            "policies.yaml:3: stages.candidate.reproducible must be true or false",
        ),
        (
            "stages:\n  candidate:\n    inference: [p99_ms]\n",
            "policies.yaml:3: stages.candidate.inference must be a mapping",
        ),
        ("evaluation:\n  target: y\n", "policies.yaml:2: evaluation has no `data`"),
        (
            "evaluation:\n  data: e.csv\n  target: y\n  threshold: 1.5\n",
            "policies.yaml:4: evaluation.threshold is 1.5",
        ),
        (
            "evaluation:\n  data: e.csv\n  target: y\n  bootstrap: 10\n",
            "policies.yaml:4: evaluation.bootstrap is 10",
        ),
        (
            "evaluation:\n  data: e.csv\n  target: [y]\n",
            "policies.yaml:3: evaluation.target must be text",
        ),
        (
            "evaluation:\n  data: e.csv\n  target: y\n  slices: {a: 1}\n",
            "policies.yaml:4: evaluation.slices must be a list of names",
        ),
    ],
)
def test_bad_blocks_name_the_file_line_and_fix(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(text)
    assert info.value.message.startswith(message), info.value.message
    assert info.value.hint


@pytest.mark.parametrize(
    ("text", "metric", "reference", "confidence"),
    [
        (
            "fairness.equalized_odds_difference <= 0.1",
            "fairness.equalized_odds_difference",
            None,
            None,
        ),
        ("slice.plan-type.recall >= 0.5", "slice.plan-type.recall", None, None),
        ("roc_auc >= production.roc_auc with 99.5% confidence", "roc_auc", "roc_auc", 0.995),
    ],
)
def test_dotted_metrics_and_confidence(
    text: str, metric: str, reference: str | None, confidence: float | None
) -> None:
    check = Check.parse(text, stage="production")
    assert (check.metric, check.reference, check.confidence) == (metric, reference, confidence)


def test_a_confidence_check_never_passes_on_point_metrics_alone() -> None:
    check = Check.parse("auc >= production.auc with 95% confidence", stage="production")
    result = check.evaluate({"auc": 0.9}, production_version=1, production_metrics={"auc": 0.5})
    assert not result.passed
    assert "same data" in result.detail
