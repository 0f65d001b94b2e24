"""``reproduce``: a deterministic model rebuilds bit for bit, and a rebuild that differs names
the cause (data, code, environment, nondeterminism); runs record what a rebuild needs."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from conveyor.core import env
from conveyor.core.errors import (
    CheckFailedError,
    ConfigError,
    StepError,
    UsageError,
    ValidationError,
)
from conveyor.pipeline._provenance import (
    code_snapshot,
    extract_snapshot,
    snapshot_members,
    step_seed,
)
from conveyor.project import open_project, promote, run
from conveyor.project._reproduce import reproduce
from conveyor.registry import get_version, parse_policy, register_version
from conveyor.registry.policy import RebuildPolicy
from conveyor.store.metadata.schema import pipeline_run
from conveyor.store.metadata.schema import run as run_table

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conveyor.project import Project, RunReport

PIPE = """
    import random

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from conveyor import Model, Pipeline, step
    from flow import helpers, scoring


    @step(files=("data_path",))
    def raw(data_path):
        return np.loadtxt(data_path, delimiter=",").tolist()


    @step
    def model(raw, noise):
        import pandas as pd

        rows = np.asarray(raw)
        X, y = rows[:, :2] + helpers.OFFSET, rows[:, 2].astype(int)
        # Drawn from the seeded global state: the same seed gives the same jitter.
        jitter = np.random.normal(scale=noise, size=X.shape) + random.random() * 0
        frame = pd.DataFrame(X + jitter, columns=["a", "b"])
        estimator = LogisticRegression().fit(frame, y)
        return Model(estimator=estimator, input_example=frame.head(3))


    @step
    def metrics(model, raw):
        import pandas as pd

        rows = np.asarray(raw)
        frame = pd.DataFrame(rows[:, :2] + helpers.OFFSET, columns=["a", "b"])
        score = float(model.estimator.score(frame, rows[:, 2].astype(int)))
        return {"accuracy": score + scoring.BIAS}


    pipeline = Pipeline([raw, model, metrics], name="flow")
"""

FILES = {
    "conveyor.yaml": """
        pipeline: flow.pipe:pipeline
        params:
          data_path: data/rows.csv
          noise: 0.1
          seed: 11
        model:
          name: toy
          step: model
          metrics: metrics
    """,
    "flow/__init__.py": "",
    "flow/helpers.py": """
        OFFSET = 0.0
    """,
    "flow/scoring.py": """
        BIAS = 0.0
    """,
    "flow/pipe.py": PIPE,
    "requirements.txt": "scikit-learn\n",
    "data/rows.csv": "".join(
        f"{i % 7},{(i * 3) % 5},{int(i % 7 + (i * 3) % 5 > 5)}\n" for i in range(40)
    ),
    "data/notes.py": "# a data folder may hold .py files too; they are snapshotted\n",
}


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in env.__all__:
        monkeypatch.delenv(getattr(env, name), raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    folder = (tmp_path / "proj").resolve()
    for rel, text in FILES.items():
        _write(folder, rel, text)
    yield folder
    prefix = str(tmp_path.resolve())
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(prefix):
            del sys.modules[name]


def _run(root: Path) -> RunReport:
    with open_project(root) as project:
        return run(project, actor="alice")


def _reproduce(root: Path, version: int = 1, **kwargs: Any) -> Any:
    with open_project(root) as project:
        return reproduce(project, model="toy", version=version, actor="bob", **kwargs)


def _pipeline_row(project: Project, run_id: str) -> dict[str, Any]:
    with project.metadata.read() as conn:
        row = conn.execute(sa.select(pipeline_run).where(pipeline_run.c.id == run_id)).mappings()
        return dict(row.one())


def test_a_deterministic_model_reproduces_bit_for_bit(root: Path) -> None:
    report = _run(root)
    assert report.version is not None
    result = _reproduce(root)
    assert result.identical
    assert result.reproduced
    assert result.verdict == "bit-identical"
    assert result.rebuilt_digest == report.version.artifact_digest
    assert result.causes == []
    assert result.seed == 11
    assert [s.step for s in result.steps] == ["raw", "model", "metrics"]
    assert not any(s.code_changed or s.output_changed for s in result.steps)
    assert [(m.metric, m.within) for m in result.metrics] == [("accuracy", True)]
    assert result.workdir is None
    # JSON-ready, as `--json` prints it.
    assert json.loads(json.dumps(result.to_dict()))["verdict"] == "bit-identical"


def test_a_run_records_params_seed_snapshot_and_environment(root: Path) -> None:
    report = _run(root)
    with open_project(root) as project:
        row = _pipeline_row(project, report.pipeline.pipeline_run_id)
        assert row["status"] == "succeeded"
        assert row["params"] == {"data_path": "data/rows.csv", "noise": 0.1, "seed": 11}
        assert row["seed"] == 11
        with project.metadata.read() as conn:
            seeds = dict(conn.execute(sa.select(run_table.c.step, run_table.c.seed)).all())
        assert seeds == {s: step_seed(11, s) for s in ("raw", "model", "metrics")}
        snapshot = project.artifacts.get_bytes(row["code_snapshot"])
        with tarfile.open(fileobj=io.BytesIO(snapshot)) as tar:
            names = tar.getnames()
        # Source and requirements; not the data file, not .conveyor/.
        assert names == [
            "conveyor.yaml",
            "data/notes.py",
            "flow/__init__.py",
            "flow/helpers.py",
            "flow/pipe.py",
            "flow/scoring.py",
            "requirements.txt",
        ]
        document = json.loads(project.artifacts.get_bytes(row["environment"]))
        run_env = {r.env_digest for r in _runs(project)}
    assert run_env == {document["env_digest"]}
    assert document["python"] == sys.version.split()[0]
    assert any(pin.startswith("scikit-learn==") for pin in document["distributions"])
    # The same code is the same snapshot: stored once, same digest.
    assert code_snapshot(root) == snapshot


def _runs(project: Project) -> list[Any]:
    with project.metadata.read() as conn:
        return list(conn.execute(sa.select(run_table)).all())


def test_a_fully_cached_run_records_no_pipeline_run(root: Path) -> None:
    _run(root)
    again = _run(root)
    assert {s.status for s in again.pipeline.steps} == {"cached"}
    with open_project(root) as project, project.metadata.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(pipeline_run)).scalar()
    assert count == 1


def test_a_version_registered_by_a_later_run_with_a_cached_model_reproduces(root: Path) -> None:
    first = _run(root)
    _write(root, "flow/scoring.py", "BIAS = 0.125\n")  # the metrics step's code only
    second = _run(root)
    assert {s.name: s.status for s in second.pipeline.steps} == {
        "raw": "cached",
        "model": "cached",
        "metrics": "ran",
    }
    assert second.version is not None
    assert first.version is not None
    assert second.version.version == 2
    # Version 2's run is the model's execution in the first pipeline run ...
    assert second.version.run_id == first.version.run_id
    # ... and still it is rebuilt from the second run, the one that registered it.
    for version, report in ((2, second), (1, first)):
        result = _reproduce(root, version)
        assert result.verdict == "bit-identical"
        assert result.pipeline_run_id == report.pipeline.pipeline_run_id


def test_a_changed_data_file_is_named(root: Path) -> None:
    _run(root)
    data = root / "data" / "rows.csv"
    data.write_text(data.read_text().replace("0,0,0", "6,4,0", 1))
    result = _reproduce(root)
    assert not result.identical
    assert list(result.data_changed) == ["data/rows.csv"]
    recorded, now = result.data_changed["data/rows.csv"]
    assert f"data changed: data/rows.csv digest now {now}, recorded {recorded}" in result.causes
    assert not any("code changed" in c or "environment" in c for c in result.causes)


def test_a_missing_data_file_fails_the_rebuild_and_says_so(root: Path) -> None:
    _run(root)
    (root / "data" / "rows.csv").unlink()
    result = _reproduce(root)
    assert not result.reproduced
    assert result.verdict == "not reproduced"
    assert result.causes[0].startswith("data missing: data/rows.csv")
    assert result.rebuild_error is not None


def test_code_edited_after_the_run_does_not_matter(root: Path) -> None:
    _run(root)
    _write(root, "flow/helpers.py", "OFFSET = 5.0\n")
    _write(root, "flow/scoring.py", "BIAS = 0.5\n")
    result = _reproduce(root)
    assert result.verdict == "bit-identical"


def test_a_tampered_snapshot_names_the_step_whose_code_changed(root: Path) -> None:
    report = _run(root)
    with open_project(root) as project:
        row = _pipeline_row(project, report.pipeline.pipeline_run_id)
        # Another project folder holding the changed code stands in for a damaged snapshot.
        other = root.parent / "other"
        shutil.copytree(root, other, ignore=shutil.ignore_patterns(".conveyor"))
        _write(other, "flow/scoring.py", "BIAS = 0.25\n")
        tampered = project.artifacts.put_bytes(code_snapshot(other)).digest
        with project.metadata.write("tester") as tx:
            tx.conn.execute(
                pipeline_run.update()
                .where(pipeline_run.c.id == row["id"])
                .values(code_snapshot=tampered)
            )
    result = _reproduce(root)
    assert not result.reproduced
    assert [s.step for s in result.steps if s.code_changed] == ["metrics"]
    assert "code changed in step metrics" in result.causes
    assert [s.step for s in result.steps if s.output_changed] == ["metrics"]
    [metric] = result.metrics
    assert metric.difference == pytest.approx(0.25, abs=1e-12)


def test_an_environment_difference_is_named(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(root)
    site = tmp_path / "site"
    (site / "fakepkg_extra-1.0.dist-info").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    result = _reproduce(root)
    # The fake distribution changes no output: the rebuild is identical, nothing to explain.
    assert result.identical
    assert result.environment == {"added": {"fakepkg-extra": "1.0"}}
    # When the output does differ, the environment is named as a cause.
    _write(root, "data/rows.csv", FILES["data/rows.csv"].replace("0,0,0", "6,4,0", 1))
    result = _reproduce(root)
    assert "environment: fakepkg-extra 1.0 added" in result.causes


NONDETERMINISTIC = """
    import time

    from conveyor import Pipeline, step
    from flow.pipe import model, raw


    @step
    def metrics(model, raw):
        return {"accuracy": 0.5 + (time.perf_counter_ns() % 1000) * 1e-12}


    pipeline = Pipeline([raw, model, metrics], name="flow")
"""


def test_a_nondeterministic_step_passes_within_tolerance_and_fails_beyond(root: Path) -> None:
    _write(root, "flow/noisy.py", NONDETERMINISTIC)
    conf = root / "conveyor.yaml"
    conf.write_text(conf.read_text().replace("flow.pipe:pipeline", "flow.noisy:pipeline"))
    _run(root)
    loose = _reproduce(root, tolerance=RebuildPolicy(tolerances={"accuracy": 1e-6}))
    assert not loose.identical
    assert loose.reproduced
    assert loose.verdict == "within tolerance"
    assert loose.causes == [
        "nondeterministic: same inputs, different output (first differing output: step metrics)"
    ]
    assert loose.bundle_differences == ["metrics"]
    strict = _reproduce(root, tolerance=RebuildPolicy())
    assert not strict.reproduced
    assert strict.verdict == "not reproduced"


def test_a_version_without_records_is_a_usage_error(root: Path) -> None:
    _run(root)
    with open_project(root) as project:
        register_version(
            project.metadata,
            model="toy",
            artifact_digest="blake3:" + "0" * 64,
            metrics={},
            run_id=None,
            actor="alice",
        )
        with pytest.raises(UsageError, match="version 2 has no recorded pipeline run"):
            reproduce(project, model="toy", version=2, actor="bob")


def test_keep_leaves_the_rebuild_folder(root: Path) -> None:
    _run(root)
    result = _reproduce(root, keep=True)
    try:
        assert (Path(result.workdir) / "project" / "flow" / "pipe.py").is_file()
        assert (Path(result.workdir) / "project" / "data" / "rows.csv").is_file()
    finally:
        shutil.rmtree(result.workdir)


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def test_git_commit_and_dirty_flag_are_recorded(root: Path) -> None:
    if shutil.which("git") is None:
        # No git here: the state is recorded as unknown, never guessed.
        report = _run(root)
        with open_project(root) as project:
            row = _pipeline_row(project, report.pipeline.pipeline_run_id)
        assert (row["git_commit"], row["git_dirty"]) == (None, None)
        return
    report = _run(root)  # not a repository yet
    with open_project(root) as project:
        assert _pipeline_row(project, report.pipeline.pipeline_run_id)["git_commit"] is None
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    _write(root, "conveyor.yaml", FILES["conveyor.yaml"].replace("noise: 0.1", "noise: 0.2"))
    _git(root, "commit", "-q", "-am", "noisier")
    clean = _run(root)  # .conveyor/ is untracked, and is not a change
    _write(root, "flow/scoring.py", "BIAS = 0.125\n")
    dirty = _run(root)
    with open_project(root) as project:
        first = _pipeline_row(project, clean.pipeline.pipeline_run_id)
        second = _pipeline_row(project, dirty.pipeline.pipeline_run_id)
    assert first["git_commit"] != head  # the second commit
    assert len(first["git_commit"]) == 40
    assert first["git_dirty"] is False
    assert (second["git_commit"], second["git_dirty"]) == (first["git_commit"], True)


def test_snapshot_extraction_refuses_links_and_escaping_paths(tmp_path: Path) -> None:
    for name, kind in (
        ("../evil.py", tarfile.REGTYPE),
        ("/abs.py", tarfile.REGTYPE),
        ("link.py", tarfile.SYMTYPE),
    ):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b""))
        with pytest.raises(ValidationError, match="refusing to extract"):
            extract_snapshot(buffer.getvalue(), tmp_path / "out")
        assert not (tmp_path / "evil.py").exists()
    with pytest.raises(ValidationError, match="not a readable tar"):
        extract_snapshot(b"not a tar at all" * 100, tmp_path / "out")


def test_snapshot_leaves_out_state_hidden_folders_and_virtual_environments(root: Path) -> None:
    _write(root, ".conveyor/x.py", "")
    _write(root, ".git/hooks/y.py", "")
    _write(root, "venv/pyvenv.cfg", "home = /usr\n")
    _write(root, "venv/lib/z.py", "")
    _write(root, "flow/__pycache__/w.py", "")
    assert snapshot_members(root) == [
        "conveyor.yaml",
        "data/notes.py",
        "flow/__init__.py",
        "flow/helpers.py",
        "flow/pipe.py",
        "flow/scoring.py",
        "requirements.txt",
    ]


POLICY = """
stages:
  candidate:
    reproducible:
      rebuild: true
      tolerance: {accuracy: 0.001, default: 0}
"""


def test_the_rebuild_gate_passes_a_deterministic_model_and_names_a_data_change(
    root: Path,
) -> None:
    (root / "policies.yaml").write_text(POLICY)
    _run(root)
    with open_project(root) as project:
        result = promote(project, model="toy", version=1, to="candidate", actor="carol")
        [check] = [c for c in result.checks if c.check == "reproducible"]
        assert check.passed
        assert check.detail == "model 'toy' version 1: bit-identical"
    data = root / "data" / "rows.csv"
    data.write_text(data.read_text().replace("0,0,0", "6,4,0", 1))
    _run(root)  # version 2, from the changed data
    data.write_text(FILES["data/rows.csv"])
    with open_project(root) as project:
        with pytest.raises(CheckFailedError) as caught:
            promote(project, model="toy", version=2, to="candidate", actor="carol")
        assert get_version(project.metadata, "toy", 2).stage == "experimental"
    [check] = [c for c in caught.value.details["checks"] if c["check"] == "reproducible"]
    assert not check["passed"]
    assert "data changed: data/rows.csv" in check["detail"]


def test_the_rebuild_block_is_validated_with_file_and_line() -> None:
    policy = parse_policy(POLICY)
    rebuild = policy.stage("candidate").rebuild
    assert rebuild is not None
    assert policy.stage("candidate").reproducible
    assert (rebuild.tolerance("accuracy"), rebuild.tolerance("other")) == (0.001, 0.0)
    assert (
        parse_policy("stages:\n  candidate:\n    reproducible: true\n").stage("candidate").rebuild
        is None
    )
    bad = {
        "    reproducible: {rebuild: maybe}\n": "policies.yaml:3: stages.candidate."
        "reproducible.rebuild must be true or false",
        "    reproducible: {rebuild: true, tolerance: {auc: -1}}\n": "policies.yaml:3: "
        "stages.candidate.reproducible.tolerance.auc is -1",
        "    reproducible: {rebuild: true, extra: 1}\n": "policies.yaml:3: unknown key 'extra'",
        "    reproducible: {tolerance: {auc: 0.1}}\n": "policies.yaml:3: stages.candidate."
        "reproducible sets a tolerance but not `rebuild: true`",
    }
    for line, message in bad.items():
        with pytest.raises(ConfigError) as caught:
            parse_policy("stages:\n  candidate:\n" + line)
        assert str(caught.value).startswith(message)


def test_the_command_reports_and_exits_with_the_documented_codes(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.cli._main import main

    _run(root)
    assert main(["-C", str(root), "reproduce", "toy", "1", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["verdict"], body["reproduced"]) == ("bit-identical", True)
    assert main(["-C", str(root), "reproduce", "toy", "1"]) == 0
    assert "toy v1: bit-identical" in capsys.readouterr().out
    assert main(["-C", str(root), "reproduce", "toy", "7"]) == 2
    assert "has no version 7" in capsys.readouterr().err
    data = root / "data" / "rows.csv"
    data.write_text(data.read_text().replace("0,0,0", "6,4,0", 1))
    assert main(["-C", str(root), "reproduce", "toy", "1"]) == 1
    out = capsys.readouterr().out
    assert "not reproduced" in out
    assert "- data changed: data/rows.csv digest now" in out


def test_a_failed_run_is_recorded_as_failed(root: Path) -> None:
    _write(root, "flow/scoring.py", "BIAS = 1 / 0\n")
    with pytest.raises(ConfigError):  # the module fails to import: nothing ran
        _run(root)
    _write(root, "flow/scoring.py", "BIAS = 0.0\n")
    pipe = root / "flow" / "pipe.py"
    pipe.write_text(pipe.read_text().replace("score = float(", "score = 1 / 0 + float("))
    with open_project(root) as project:
        with pytest.raises(StepError):
            run(project, actor="alice")
        with project.metadata.read() as conn:
            rows = conn.execute(sa.select(pipeline_run.c.status, pipeline_run.c.seed)).all()
    assert [tuple(r) for r in rows] == [("failed", 11)]
