"""Promotion through evaluated gates, on the example's data with real models (issue 4).

Each test builds a throwaway project (conveyor.yaml, policies.yaml, the evaluation CSV), packages
real scikit-learn models into it and promotes them with :func:`conveyor.project.promote`, the
workflow behind ``conveyor promote``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from tests.integration import _gates_support as support

from conveyor.core.errors import ApprovalPendingError, CheckFailedError, ConfigError, ConflictError
from conveyor.project import open_project, promote, review
from conveyor.registry import gate_results, get_version, list_evaluations
from conveyor.store.metadata.schema import evaluation as evaluation_table

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from conveyor.project import Project

EVALUATION = """\
evaluation:
  data: data/eval.csv
  target: churned
  slices: [contract]
  sensitive: [gender]
  bootstrap: 400
"""


@pytest.fixture
def make_project(tmp_path: Path, store_url: str) -> Iterator[Callable[[str], Project]]:
    opened: list[Project] = []

    def _make(policy: str) -> Project:
        root = support.write_project(tmp_path / "proj", EVALUATION + policy)
        project = open_project(
            root, overrides={"store": store_url, "artifacts": str(tmp_path / "artifacts")}
        )
        opened.append(project)
        return project

    yield _make
    for project in opened:
        project.close()


def _to_production(project: Project, version: int) -> None:
    promote(project, model="churn", version=version, to="candidate", actor="lead")
    promote(project, model="churn", version=version, to="production", actor="lead")


def test_a_better_candidate_passes_with_a_confidence_interval_on_the_same_data(
    make_project: Callable[[str], Project],
) -> None:
    project = make_project(
        "stages:\n  production:\n    checks:\n"
        "      - roc_auc >= production.roc_auc + 0.005 with 95% confidence\n"
    )
    weak = support.register(project, "weak")
    _to_production(project, weak.version)
    strong = support.register(project, "strong")
    promote(project, model="churn", version=strong.version, to="candidate", actor="lead")
    result = promote(project, model="churn", version=strong.version, to="production", actor="lead")

    assert result.replaced_version == weak.version
    [check] = result.checks
    assert check.passed
    evidence = check.evidence
    assert evidence is not None
    assert evidence["method"] == "delong"
    assert evidence["ci_low"] >= 0.005
    assert evidence["production_version"] == weak.version
    # Both versions were measured on the same dataset version, recorded with the gate result.
    [cand_eval] = list_evaluations(project.metadata, "churn", strong.version)
    prod_evals = list_evaluations(project.metadata, "churn", weak.version)
    assert {e.dataset_version for e in prod_evals} == {cand_eval.dataset_version}
    assert evidence["dataset_version"] == cand_eval.dataset_version
    [recorded] = [g for g in gate_results(project.metadata, "churn", strong.version)]
    assert recorded.dataset_version == cand_eval.dataset_version
    policy_bytes = (project.config.root / "policies.yaml").read_bytes()
    from conveyor.core.digest import digest_bytes

    assert recorded.policy_digest == digest_bytes(policy_bytes)


def test_a_candidate_better_only_within_noise_is_held(
    make_project: Callable[[str], Project],
) -> None:
    project = make_project(
        "stages:\n  production:\n    checks:\n"
        "      - roc_auc >= production.roc_auc with 95% confidence\n"
        "      - log_loss <= production.log_loss with 95% confidence\n"
    )
    base = support.register(project, "twin")
    _to_production(project, base.version)
    near = support.register(project, "strong")
    promote(project, model="churn", version=near.version, to="candidate", actor="lead")
    with pytest.raises(CheckFailedError) as info:
        promote(project, model="churn", version=near.version, to="production", actor="lead")
    checks = {c["check"]: c for c in info.value.details["checks"]}
    auc = checks["roc_auc >= production.roc_auc with 95% confidence"]
    evidence = auc["evidence"]
    # On the point estimate alone it looks no worse; the interval shows it is noise.
    assert evidence["ci_low"] < 0.0 < evidence["ci_high"]
    assert not auc["passed"]
    assert "95% CI [" in auc["detail"]
    assert get_version(project.metadata, "churn", near.version).stage == "candidate"


def test_fairness_and_calibration_bounds_hold_a_version_with_the_numbers(
    make_project: Callable[[str], Project],
) -> None:
    project = make_project(
        "stages:\n  candidate:\n    checks:\n"
        "      - roc_auc >= 0.6\n"
        "      - fairness.demographic_parity_difference <= 0.1\n"
        "      - expected_calibration_error <= 0.05\n"
    )
    fair = support.register(project, "strong")
    result = promote(project, model="churn", version=fair.version, to="candidate", actor="lead")
    assert all(c.passed for c in result.checks)

    biased = support.register(project, "biased")
    with pytest.raises(CheckFailedError) as info:
        promote(project, model="churn", version=biased.version, to="candidate", actor="lead")
    # Trained on labels that favour one group, it is also overconfident for that group.
    assert "fairness.demographic_parity_difference <= 0.1" in info.value.details["failed"]
    [dp] = [c for c in info.value.details["checks"] if c["check"].startswith("fairness")]
    assert dp["observed"] > 0.1
    assert "gender" in str(dp["evidence"]["fairness"])

    skewed = support.register(project, "miscalibrated")
    with pytest.raises(CheckFailedError) as info:
        promote(project, model="churn", version=skewed.version, to="candidate", actor="lead")
    assert info.value.details["failed"] == ["expected_calibration_error <= 0.05"]
    [ece] = [c for c in info.value.details["checks"] if c["check"].startswith("expected")]
    assert ece["observed"] > 0.05
    assert ece["evidence"]["reliability_curve"]


def test_production_waits_for_an_approval_that_is_never_the_authors(
    make_project: Callable[[str], Project],
) -> None:
    from conveyor.core.errors import ForbiddenError

    project = make_project(
        "stages:\n  production:\n    checks: [roc_auc >= 0.6]\n    approvals: {count: 1}\n"
    )
    v = support.register(project, "strong").version
    promote(project, model="churn", version=v, to="candidate", actor="lead")
    with pytest.raises(ApprovalPendingError) as info:
        promote(project, model="churn", version=v, to="production", actor="lead")
    assert "waits for review" in info.value.message
    assert "any user other than scientist (the author)" in info.value.message
    with pytest.raises(ForbiddenError):
        review(
            project,
            model="churn",
            version=v,
            stage="production",
            decision="approve",
            actor=support.AUTHOR,
        )
    review(project, model="churn", version=v, stage="production", decision="approve", actor="ann")
    result = promote(project, model="churn", version=v, to="production", actor="lead")
    assert result.to_stage == "production"


def test_two_concurrent_promotions_leave_exactly_one_winner(
    make_project: Callable[[str], Project], store_url: str, tmp_path: Path
) -> None:
    project = make_project("stages:\n  candidate:\n    checks: [roc_auc >= 0.6]\n")
    first = support.register(project, "strong").version
    second = support.register(project, "twin").version
    barrier = threading.Barrier(2)
    outcomes: dict[int, object] = {}

    def race(version: int) -> None:
        # Each contender opens the project itself, as two `conveyor promote` processes would.
        own = open_project(
            project.config.root,
            overrides={"store": store_url, "artifacts": str(tmp_path / "artifacts")},
        )
        try:
            barrier.wait(timeout=30)
            outcomes[version] = promote(
                own, model="churn", version=version, to="candidate", actor=f"u{version}"
            )
        except Exception as exc:
            outcomes[version] = exc
        finally:
            own.close()

    threads = [threading.Thread(target=race, args=(v,)) for v in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [o for o in outcomes.values() if isinstance(o, Exception)]
    assert len(outcomes) == 2
    assert len(errors) == 1, outcomes
    assert isinstance(errors[0], ConflictError)
    assert "changed stage while the gates" in errors[0].message
    stages = {v: get_version(project.metadata, "churn", v).stage for v in (first, second)}
    assert sorted(stages.values()) == ["candidate", "experimental"]


def test_policy_errors_are_refused_with_file_and_line_before_anything_runs(
    make_project: Callable[[str], Project],
) -> None:
    project = make_project("stages:\n  candidate:\n    checks: [rocauc >= 0.6]\n")
    v = support.register(project, "strong").version
    with pytest.raises(ConfigError) as info:
        promote(project, model="churn", version=v, to="candidate", actor="lead")
    assert info.value.message == (
        "policies.yaml:9: check 'rocauc >= 0.6' names unknown metric 'rocauc'"
    )
    assert "did you mean 'roc_auc'?" in (info.value.hint or "")
    with project.metadata.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(evaluation_table)).scalar() == 0

    (project.config.root / "policies.yaml").write_text(
        EVALUATION.replace("[contract]", "[plan]")
        + "stages:\n  candidate:\n    checks: [roc_auc >= 0.6]\n"
    )
    with pytest.raises(ConfigError) as info:
        promote(project, model="churn", version=v, to="candidate", actor="lead")
    assert info.value.message.startswith(
        "policies.yaml:4: evaluation.slices names column 'plan', which data/eval.csv does not have"
    )

    (project.config.root / "policies.yaml").write_text(
        EVALUATION + "stages:\n  candidate:\n    checks: [slice.region.recall >= 0.1]\n"
    )
    with pytest.raises(ConfigError) as info:
        promote(project, model="churn", version=v, to="candidate", actor="lead")
    assert "uses slice column 'region', which the evaluation does not declare" in (
        info.value.message
    )

    (project.config.root / "policies.yaml").write_text(
        EVALUATION + "stages:\n  candidate:\n    inference: {p99_ms: fast}\n"
    )
    with pytest.raises(ConfigError) as info:
        promote(project, model="churn", version=v, to="candidate", actor="lead")
    assert info.value.message.startswith("policies.yaml:9: ")
    assert "p99_ms" in info.value.message
    assert get_version(project.metadata, "churn", v).stage == "experimental"


@pytest.mark.slow
@pytest.mark.serial  # a latency budget: run alone, after the parallel part of `make test`
@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_inference_test_holds_a_model_that_breaks_its_latency_budget(
    make_project: Callable[[str], Project],
) -> None:
    project = make_project(
        "stages:\n  candidate:\n    inference: {p99_ms: 60, concurrency: 4, requests: 150, "
        "warmup: 10}\n"
    )
    fast = support.register(project, "strong").version
    result = promote(project, model="churn", version=fast, to="candidate", actor="lead")
    p99 = next(c for c in result.checks if c.check == "inference.p99_ms")
    assert p99.passed
    assert p99.observed is not None
    assert p99.observed < 60

    slow = support.register(project, "slow").version
    with pytest.raises(CheckFailedError) as info:
        promote(project, model="churn", version=slow, to="candidate", actor="lead")
    failed = info.value.details["failed"]
    assert "inference.p99_ms" in failed
    [check] = [c for c in info.value.details["checks"] if c["check"] == "inference.p99_ms"]
    assert check["observed"] > 60
    assert "p99 latency" in check["detail"]
