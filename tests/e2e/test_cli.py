"""The installed CLI, driven like a user: the happy path and every kind of bad input."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.e2e._cli import conveyor

if TYPE_CHECKING:
    from pathlib import Path


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_help_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "conveyor", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    for heavy in ("pandas", "sklearn", "numpy", "sqlalchemy", "starlette", "pyarrow"):
        assert heavy not in imported, f"`conveyor --help` imported {heavy}"
    assert "conveyor promote" in proc.stdout


def test_run_is_cached_then_promote_and_rollback(project: Path) -> None:
    first = conveyor("run", cwd=project)
    assert first.code == 0, first.err
    assert "registered version 1" in first.out
    assert "7 steps: 7 ran, 0 cached" in first.out

    again = conveyor("run", cwd=project)
    assert again.code == 0, again.err
    assert "7 steps: 0 ran, 7 cached" in again.out
    assert "already registered as version 1" in again.out

    candidate = conveyor("promote", "churn", "1", "--to", "candidate", cwd=project)
    assert candidate.code == 0, candidate.err
    assert "candidate" in candidate.out
    # The example's production gate needs one review from someone other than the author.
    reviewed = conveyor(
        "approve",
        "churn",
        "1",
        "--stage",
        "production",
        cwd=project,
        env={"CONVEYOR_USER": "e2e-reviewer"},
    )
    assert reviewed.code == 0, reviewed.err
    promoted = conveyor("promote", "churn", "1", "--to", "production", cwd=project)
    assert promoted.code == 0, promoted.err
    assert "production" in promoted.out

    # A new model: change a hyper-parameter; only the model and its evaluation re-run.
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace("n_estimators: 200", "n_estimators: 50"))
    second = conveyor("run", cwd=project)
    assert second.code == 0, second.err
    assert "7 steps: 2 ran, 5 cached" in second.out
    assert "registered version 2" in second.out

    listing = conveyor("model", "list", "churn", "--json", cwd=project)
    assert listing.code == 0, listing.err
    assert '"version": 2' in listing.out

    rollback_without_history = conveyor("rollback", "churn", cwd=project)
    assert rollback_without_history.code == 2
    assert "no earlier production version" in _one_error_line(rollback_without_history.err)

    verify = conveyor("audit", "verify", cwd=project)
    assert verify.code == 0, verify.err
    assert "intact" in verify.out


def test_invalid_config_names_key_and_line(project: Path) -> None:
    (project / "conveyor.yaml").write_text("pipeline: training.pipeline:pipeline\nmodle: {}\n")
    result = conveyor("run", cwd=project)
    assert result.code == 2
    line = _one_error_line(result.err)
    assert "conveyor.yaml:2" in line
    assert "modle" in line


def test_missing_data_file_is_named(project: Path) -> None:
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace("data/2026-01.csv", "data/nope.csv"))
    result = conveyor("run", cwd=project)
    assert result.code == 2
    assert "data/nope.csv" in _one_error_line(result.err)
    assert not (project / ".conveyor" / "metadata.db").exists() or conveyor(
        "model", "list", "--json", cwd=project
    ).out.strip() in ("[]", "")


def test_unknown_model_and_version(project: Path) -> None:
    assert conveyor("run", cwd=project).code == 0
    unknown_model = conveyor("promote", "nope", "1", "--to", "candidate", cwd=project)
    assert unknown_model.code == 2
    assert "nope" in _one_error_line(unknown_model.err)

    unknown_version = conveyor("promote", "churn", "9", "--to", "candidate", cwd=project)
    assert unknown_version.code == 2
    line = _one_error_line(unknown_version.err)
    assert "9" in line
    assert "latest is 1" in line


def test_gate_failure_exits_1_and_moves_nothing(project: Path) -> None:
    assert conveyor("run", cwd=project).code == 0
    (project / "policies.yaml").write_text(
        "stages:\n  candidate:\n    checks:\n      - roc_auc >= 0.999\n"
    )
    result = conveyor("promote", "churn", "1", "--to", "candidate", cwd=project)
    assert result.code == 1
    assert "roc_auc" in result.err
    listing = conveyor("model", "list", "churn", "--json", cwd=project)
    assert '"stage": "experimental"' in listing.out


def test_audit_verify_catches_an_edited_row(project: Path) -> None:
    assert conveyor("run", cwd=project).code == 0
    assert conveyor("promote", "churn", "1", "--to", "candidate", cwd=project).code == 0
    db = sqlite3.connect(project / ".conveyor" / "metadata.db")
    with db:
        seq = db.execute(
            "SELECT seq FROM audit_event WHERE action LIKE 'model.stage%' ORDER BY seq LIMIT 1"
        ).fetchone()[0]
        # The table refuses updates; an attacker with the file drops the trigger first.
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_event SET actor = 'mallory' WHERE seq = ?", (seq,))
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_event'"
        ).fetchall():
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute("UPDATE audit_event SET actor = 'mallory' WHERE seq = ?", (seq,))
    db.close()
    result = conveyor("audit", "verify", cwd=project)
    assert result.code == 1
    assert f"event {seq}" in _one_error_line(result.err)


def test_unreachable_store_exits_3(project: Path) -> None:
    result = conveyor(
        "model",
        "list",
        cwd=project,
        env={"CONVEYOR_STORE": "postgresql+psycopg://nobody:x@127.0.0.1:1/none"},
    )
    assert result.code == 3
    assert "unavailable" in _one_error_line(result.err)


def test_corrupt_bundle_file_is_refused_with_exit_3(project: Path) -> None:
    assert conveyor("run", cwd=project).code == 0
    shown = conveyor("model", "show", "churn", "1", "--json", cwd=project)
    assert shown.code == 0, shown.err
    manifest = json.loads(shown.out)["manifest"]
    digest = manifest["files"]["model/model.skops"]["digest"]
    algo, hexdigest = digest.split(":")
    path = project / ".conveyor" / "artifacts" / algo / hexdigest[:2] / hexdigest[2:]
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    result = conveyor("model", "show", "churn", "1", cwd=project)
    assert result.code == 3
    line = _one_error_line(result.err)
    assert "corrupt" in line
    assert digest in line


@pytest.mark.serial  # a canary under live traffic: run alone, after the parallel part
@pytest.mark.timeout(300)  # the whole path, about a minute on a quiet machine
def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    result = conveyor("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.code == 0, result.err + result.out
    out = result.out
    assert "7 steps, 7 cached" in out  # the second run skipped everything
    assert "waiting for 1 more approval" in out  # production waits for a review
    assert "demo-reviewer approved" in out
    assert "FAIL" in out  # the drifted model was stopped by a gate
    # The tuned model went out as a canary under live traffic, analysed, then promoted.
    assert "--canary 25,100" in out
    assert "analysis: pass on" in out
    assert re.search(
        r"promoted: \d+ requests during the rollout, [1-9]\d* answered by the canary, 0 failed", out
    )
    assert "demo-reviewer approved v3 for production" in out
    assert "rolled back from v3 to v1" in out
    assert "exactly v1's predictions" in out
    # One monitoring round over the logged traffic: drift, prediction drift, quality, alerts.
    assert "monitoring.yaml: 6 alert rules" in out
    assert "1 window in" in out
    window = re.search(
        r"churn v\d: [\d:]+-[\d:]+, (\d+) rows, drift (\d+)/(\d+) columns.*, prediction drift "
        r"[\d.]+ \((stable|drifted)\), mean prediction [\d.]+ \(EWMA z [-+][\d.]+\), "
        r"nulls 0\.0%",
        out,
    )
    assert window is not None, out
    assert int(window[1]) > 300  # the canary's traffic and more, as the server logged it
    assert int(window[3]) > 0
    assert re.search(r"alert states: .*feature-drift inactive", out)
    assert "firing" not in out.split("alert states:")[1].split("\n")[0]
    assert "incident timeline of churn" in out
    assert re.search(r"rollback +v1 -> production by demo-oncall", out)
    assert "every hash link intact" in out
