"""``conveyor ci``: the cache key, and the report files each checked by its own consumer's rules."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conveyor.cli import _main
from conveyor.core.config import load_config
from conveyor.core.errors import ConfigError, UsageError
from conveyor.project import open_project
from conveyor.project._ci import CiResult, CiStep, cache_key, run_ci
from conveyor.project._ci_report import (
    COMMENT_LIMIT,
    COMMENT_MARKER,
    SUMMARY_LIMIT,
    render_comment,
    render_junit,
    render_markdown,
    render_openmetrics,
    truncate,
    write_reports,
)
from conveyor.registry import CheckResult

if TYPE_CHECKING:
    from pathlib import Path

PROJECT = {
    "conveyor.yaml": "project: p\npipeline: flow.pipe:pipeline\nparams:\n  data: data/x.csv\n",
    "policies.yaml": "stages: {}\n",
    "requirements.txt": "conveyor\n",
    "flow/__init__.py": "",
    "flow/pipe.py": "VALUE = 1\n",
    "data/x.csv": "a\n1\n",
    "tests/test_flow.py": "def test_x():\n    pass\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for rel, text in PROJECT.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def _key(root: Path) -> str:
    return cache_key(load_config(root))


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("flow/pipe.py", "VALUE = 2\n"),  # code
        ("flow/new.py", ""),  # new code
        ("requirements.txt", "conveyor==9.9\n"),  # environment lock
        ("uv.lock", "x"),  # a new lock file
        ("data/x.csv", "a\n2\n"),  # data a parameter names
        ("conveyor.yaml", PROJECT["conveyor.yaml"] + "  seed: 1\n"),  # parameters
    ],
)
def test_cache_key_covers_code_locks_data_and_params(project: Path, path: str, text: str) -> None:
    before = _key(project)
    (project / path).write_text(text)

    after = _key(project)

    assert after != before
    assert len(after) == 64
    assert int(after, 16) >= 0


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("policies.yaml", "stages: {candidate: {checks: ['auc >= 0.9']}}\n"),
        ("tests/test_flow.py", "def test_y():\n    pass\n"),
        (".venv/lib/site.py", "x = 1\n"),
        ("ci-report/report.md", "old"),
    ],
)
def test_cache_key_ignores_what_does_not_change_step_outputs(
    project: Path, path: str, text: str
) -> None:
    before = _key(project)
    (project / path).parent.mkdir(parents=True, exist_ok=True)
    (project / path).write_text(text)

    assert _key(project) == before


def _result(*, failing: bool = False, detail: str = "ok") -> CiResult:
    checks = (
        CheckResult("roc_auc >= 0.75", True, 0.81, 0.75, detail, "candidate"),
        CheckResult("log_loss <= 0.5", not failing, 0.53 if failing else 0.4, 0.5, detail, ""),
        CheckResult("reproducible", True, None, None, "recorded", "candidate"),
    )
    return CiResult(
        project="acme",
        stage="candidate",
        cache_key="ab" * 32,
        steps=(CiStep("train", "ran", 0.5), CiStep("metrics", "cached", 0.0)),
        checks=checks,
        skipped=(("approvals", "people decide"),),
        model="acme",
        version=3,
        version_stage="experimental",
    )


def _parse(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def test_junit_has_one_case_per_step_and_check_with_counts() -> None:
    root = _parse(render_junit(_result(failing=True)))

    suites = {s.get("name"): s for s in root.iter("testsuite")}
    gates = suites["gates.candidate"]
    cases = gates.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "roc_auc >= 0.75",
        "log_loss <= 0.5",
        "reproducible",
        "approvals",
    ]
    assert (gates.get("tests"), gates.get("failures"), gates.get("skipped")) == ("4", "1", "1")
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "observed 0.53, threshold 0.5"
    assert cases[3].find("skipped") is not None
    assert len(suites["pipeline"].findall("testcase")) == 2
    assert (root.get("tests"), root.get("failures")) == ("6", "1")


def test_junit_of_a_failed_step_names_it() -> None:
    result = CiResult(
        project="acme",
        stage="candidate",
        cache_key="0" * 64,
        steps=(CiStep("train", "failed", 0.1, "ValueError: no rows"),),
    )

    root = _parse(render_junit(result))

    failure = root.find("./testsuite[@name='pipeline']/testcase[@name='train']/failure")
    assert failure is not None
    assert failure.get("message") == "ValueError: no rows"
    assert result.failed == ("step:train",)
    assert root.get("failures") == "1"


def test_openmetrics_parses_and_carries_each_check() -> None:
    text = render_openmetrics(_result(failing=True)).decode()

    families = {f.name: f for f in text_string_to_metric_families(text)}

    assert text.endswith("# EOF\n")
    assert families["conveyor_ci_passed"].samples[0].value == 0.0
    assert families["conveyor_ci_failed_checks"].samples[0].value == 1.0
    observed = {s.labels["check"]: s.value for s in families["conveyor_ci_check_observed"].samples}
    assert observed == {"roc_auc >= 0.75": 0.81, "log_loss <= 0.5": 0.53}
    passed = {s.labels["check"]: s.value for s in families["conveyor_ci_check_passed"].samples}
    assert passed["log_loss <= 0.5"] == 0.0
    assert math.isclose(
        sum(s.value for s in families["conveyor_ci_step_duration_seconds"].samples), 0.5
    )


def test_markdown_and_comment_name_the_failing_check() -> None:
    result = _result(failing=True, detail="a | pipe\nand a newline")

    markdown = render_markdown(result)
    comment = render_comment(result)

    assert "FAILED" in markdown
    assert "| `log_loss <= 0.5` | 0.53 | 0.5 | **FAIL** | a \\| pipe and a newline |" in markdown
    assert comment.startswith(COMMENT_MARKER + "\n")
    assert comment.count(COMMENT_MARKER) == 1
    assert "log_loss <= 0.5" in comment


def test_comment_stays_under_githubs_limit() -> None:
    comment = render_comment(_result(detail="x" * 200 + "\n" + "y" * 100_000))

    assert len(comment) <= COMMENT_LIMIT
    assert comment.startswith(COMMENT_MARKER)
    assert "was cut at" in comment


def test_truncate_keeps_whole_lines_and_says_so() -> None:
    text = "".join(f"line {i}\n" for i in range(1000))

    cut = truncate(text, 500, unit="bytes")

    assert len(cut.encode()) <= 500
    assert cut.startswith("line 0\nline 1\n")
    assert "was cut at 500 bytes" in cut
    assert truncate("short\n", 500) == "short\n"


def test_write_reports_writes_five_files_and_appends_the_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    result = _result()

    write_reports(result, tmp_path / "out", step_summary=summary)

    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["comment.md", "junit.xml", "metrics.txt", "report.json", "report.md"]
    body = json.loads((tmp_path / "out" / "report.json").read_text())
    assert body["passed"] is True
    assert body["exit_code"] == 0
    assert [c["stage"] for c in body["checks"]] == ["candidate", "", "candidate"]
    text = summary.read_text()
    assert text.startswith("# earlier step\n")
    assert text.endswith(render_markdown(result) + "\n")


def test_step_summary_is_kept_under_one_mebibyte(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_bytes(b"x" * (SUMMARY_LIMIT - 2000) + b"\n")
    result = _result(detail="é" * 5000)

    write_reports(result, tmp_path / "out", step_summary=summary)

    assert summary.stat().st_size <= SUMMARY_LIMIT
    assert "was cut at" in summary.read_text()
    assert len((tmp_path / "out" / "report.md").read_text()) > 5000  # the file is whole


def test_run_ci_refuses_an_ungated_stage_and_a_project_without_a_model(project: Path) -> None:
    with open_project(project) as opened:
        with pytest.raises(UsageError, match="stage 'experimental' has no gates"):
            run_ci(opened, stage="experimental", actor="ci")
        with pytest.raises(ConfigError, match="no `model:` section"):
            run_ci(opened, stage="candidate", actor="ci")


def test_cli_exit_codes_for_usage_and_config_errors(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(_main._COMMANDS, "ci", ("conveyor.cli.ci", "ci"))

    assert _main.main(["-C", str(project), "ci", "--stage", "archived"]) == 2
    assert _main.main(["-C", str(project), "ci"]) == 2
    assert "no `model:` section" in capsys.readouterr().err
    assert _main.main(["-C", str(project), "ci", "--cache-key"]) == 0
    assert capsys.readouterr().out.strip() == _key(project)


def test_cli_ci_help_runs_without_the_entry_point() -> None:
    from conveyor.cli.ci import ci

    result = CliRunner().invoke(ci, ["--help"])

    assert result.exit_code == 0
    assert "--promote" in result.output
