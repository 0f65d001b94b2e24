"""``conveyor promote`` / ``approve`` / ``reject`` / ``evaluate`` as a user runs them, on the
example project with the example policy (evaluation, inference test, data checks, approvals)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.e2e._cli import conveyor

if TYPE_CHECKING:
    from pathlib import Path

AUTHOR = {"CONVEYOR_USER": "sam-scientist"}
REVIEWER = {"CONVEYOR_USER": "rita-reviewer"}


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.serial  # timing-sensitive: run alone, after the parallel part of `make test`
def test_promotion_waits_for_a_review_that_is_never_the_authors(project: Path) -> None:
    assert conveyor("run", cwd=project, env=AUTHOR).code == 0

    evaluated = conveyor("evaluate", "churn", "1", "--json", cwd=project, env=AUTHOR)
    assert evaluated.code == 0, evaluated.err
    body = json.loads(evaluated.out)
    assert body["dataset_version"].startswith("blake3:")
    assert 0.5 < body["metrics"]["roc_auc"] <= 1.0

    candidate = conveyor("promote", "churn", "1", "--to", "candidate", "--json", cwd=project)
    assert candidate.code == 0, candidate.err
    checks = {c["check"]: c for c in json.loads(candidate.out)["checks"]}
    assert checks["inference.p99_ms"]["passed"]
    assert checks["data_checks"]["passed"]
    assert checks["expected_calibration_error <= 0.08"]["passed"]

    waiting = conveyor("promote", "churn", "1", "--to", "production", cwd=project)
    assert waiting.code == 1
    assert "waits for review" in waiting.err
    assert "any user other than sam-scientist (the author)" in waiting.err

    own = conveyor("approve", "churn", "1", "--stage", "production", cwd=project, env=AUTHOR)
    assert own.code == 1
    assert _error_line(own.err).startswith(
        "error: sam-scientist registered model 'churn' version 1 and cannot review it"
    )

    rejected = conveyor(
        "reject",
        "churn",
        "1",
        "--stage",
        "production",
        "--comment",
        "needs a second look",
        cwd=project,
        env=REVIEWER,
    )
    assert rejected.code == 0, rejected.err
    held = conveyor("promote", "churn", "1", "--to", "production", cwd=project)
    assert held.code == 1
    assert "rejected by rita-reviewer (needs a second look)" in held.err

    approved = conveyor("approve", "churn", "1", "--stage", "production", cwd=project, env=REVIEWER)
    assert approved.code == 0, approved.err
    promoted = conveyor("promote", "churn", "1", "--to", "production", cwd=project)
    assert promoted.code == 0, promoted.err
    assert "candidate -> production" in promoted.out

    log = conveyor("audit", "log", "--action", "model.", "--json", cwd=project)
    actions = [json.loads(line)["action"] for line in log.out.splitlines() if line.strip()]
    for action in ("model.evaluated", "model.approval_pending", "model.rejected", "model.approved"):
        assert action in actions


def test_skipping_a_stage_and_a_bad_policy_are_one_line_errors(project: Path) -> None:
    assert conveyor("run", cwd=project, env=AUTHOR).code == 0
    skipped = conveyor("promote", "churn", "1", "--to", "production", cwd=project)
    assert skipped.code == 2
    assert _error_line(skipped.err) == (
        "error: model 'churn' version 1 cannot move from experimental to production; allowed "
        "moves: experimental -> candidate -> production, and any stage -> archived"
    )
    policy = project / "policies.yaml"
    policy.write_text(policy.read_text().replace("accuracy >= 0.70", "acuracy >= 0.70"))
    bad = conveyor("promote", "churn", "1", "--to", "candidate", cwd=project)
    assert bad.code == 2
    line = _error_line(bad.err)
    assert line.startswith("error: policies.yaml:")
    assert "unknown metric 'acuracy'" in line
    assert "did you mean 'accuracy'?" in line
