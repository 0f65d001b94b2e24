"""Done-when of CI/CD: ``conveyor init`` a project, then run its CI entry point as CI does.

One project goes through a passing change, a failing change (a gate tightened past what the
model reaches) and a configuration error, each a ``conveyor ci`` process with
``GITHUB_STEP_SUMMARY`` set; the exit code, report.md, junit.xml and metrics.txt are checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.e2e._cli import conveyor

if TYPE_CHECKING:
    from pathlib import Path

TIGHTENED = "roc_auc >= 0.99"


def _junit(root: Path) -> ET.Element:
    return ET.fromstring((root / "ci-report" / "junit.xml").read_bytes())


def _metrics(root: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = (root / "ci-report" / "metrics.txt").read_text()
    return {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def test_scaffolded_project_ci_passes_fails_and_refuses(tmp_path: Path) -> None:
    created = conveyor("init", "acme", "--dir", "acme", cwd=tmp_path)
    assert created.code == 0, created.err
    root = tmp_path / "acme"
    summary = tmp_path / "step-summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}

    # The project's own tests pass as scaffolded (preprocessing units, model vs baseline).
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr

    # A passing change: the fresh project.
    passed = conveyor("ci", "--stage", "candidate", cwd=root, env=env)
    assert passed.code == 0, passed.out + passed.err
    key = conveyor("ci", "--cache-key", cwd=root).out.strip()
    assert f"cache key: {key}" in passed.out
    report = (root / "ci-report" / "report.md").read_text()
    assert "candidate gates passed" in report
    body = json.loads((root / "ci-report" / "report.json").read_text())
    assert (body["passed"], body["version"], body["version_stage"]) == (True, 1, "experimental")
    junit = _junit(root)
    n_checks = len(body["checks"])
    assert n_checks >= 5
    assert junit.get("tests") == str(n_checks + len(body["steps"]) + len(body["skipped"]))
    assert junit.get("failures") == "0"
    metrics = _metrics(root)
    assert metrics["conveyor_ci_passed"][0][1] == 1.0
    assert len(metrics["conveyor_ci_check_passed"]) == n_checks
    assert (root / "ci-report" / "comment.md").read_text().startswith("<!-- conveyor-ci -->\n")
    assert summary.read_text() == report + "\n"

    # A failing change: the candidate gate asks for more than the model reaches.
    policies = root / "policies.yaml"
    policies.write_text(policies.read_text().replace("roc_auc >= 0.75", TIGHTENED))
    failed = conveyor("ci", "--stage", "candidate", cwd=root, env=env)
    assert failed.code == 1, failed.out + failed.err
    assert TIGHTENED in failed.err
    report = (root / "ci-report" / "report.md").read_text()
    assert f"| `{TIGHTENED}` |" in report
    assert "**FAIL**" in report
    junit = _junit(root)
    assert junit.get("failures") == "1"
    [failure_case] = [c for c in junit.iter("testcase") if c.find("failure") is not None]
    assert failure_case.get("name") == TIGHTENED
    failure = failure_case.find("failure")
    assert failure is not None
    assert (failure.get("message") or "").endswith("threshold 0.99")
    assert _metrics(root)["conveyor_ci_passed"][0][1] == 0.0
    assert summary.read_text().count("Conveyor CI: candidate gates") == 2  # appended
    model = conveyor("model", "list", "acme", "--json", cwd=root)
    assert [v["stage"] for v in json.loads(model.out)] == ["experimental"]  # a dry run

    # On merge to main: the gate restored, `--promote` moves the version to candidate.
    policies.write_text(policies.read_text().replace(TIGHTENED, "roc_auc >= 0.75"))
    merged = conveyor("ci", "--stage", "candidate", "--promote", cwd=root)
    assert merged.code == 0, merged.out + merged.err
    model = conveyor("model", "list", "acme", "--json", cwd=root)
    assert [v["stage"] for v in json.loads(model.out)] == ["candidate"]
    assert json.loads((root / "ci-report" / "report.json").read_text())["promoted"] is True

    # A change that breaks a pipeline step: a check failure too (exit 1), the step named.
    train = root / "data" / "train.csv"
    original = train.read_text()
    lines = original.splitlines()
    lines[1] = lines[1][: lines[1].rfind(",")] + ",2"  # a label outside 0 and 1
    train.write_text("\n".join(lines) + "\n")
    broken_step = conveyor("ci", cwd=root)
    assert broken_step.code == 1, broken_step.out + broken_step.err
    failure = _junit(root).find("./testsuite[@name='pipeline']/testcase[@name='train_set']/failure")
    assert failure is not None
    assert "only 0 or 1" in (failure.get("message") or "")
    assert "`train_set` | **failed**" in (root / "ci-report" / "report.md").read_text()
    train.write_text(original)

    # A configuration error: exit 2, one line naming the file and the key.
    config = root / "conveyor.yaml"
    config.write_text(config.read_text() + "unknown_key: 1\n")
    broken = conveyor("ci", cwd=root, env=env)
    assert broken.code == 2
    assert "conveyor.yaml" in broken.err
    assert "unknown_key" in broken.err
    assert "Traceback" not in broken.err
