"""`conveyor data validate|drift|profile`: findings printed, reports written, exit codes 0/1/2."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from tests.unit.data._data_support import churn, split

from conveyor.cli import main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    train, holdout = split(churn(3000), 0)
    train.to_csv("train.csv", index=False)
    holdout.to_csv("holdout.csv", index=False)
    churn(1500, seed=8, drift=True, month="2026-02").to_csv("feb.csv", index=False)
    return tmp_path


def test_clean_holdout_exits_0_with_reports(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "data",
            "validate",
            "holdout.csv",
            "--reference",
            "train.csv",
            "--target",
            "churned",
            "--report",
            "report.html",
            "--json",
            "report.json",
        ]
    )
    assert code == 0
    assert "0 blocking, 0 warning(s)" in capsys.readouterr().out
    body = json.loads((files / "report.json").read_text())
    assert body["passed"] is True
    assert body["findings"] == []
    assert len(body["drift"]) == 12
    page = (files / "report.html").read_text()
    assert "PASSED" in page
    assert "<svg" in page
    assert "http" not in page.replace("http-equiv", "")


def test_drifted_month_exits_1_and_prints_each_finding(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "data",
            "validate",
            "feb.csv",
            "--reference",
            "train.csv",
            "--report",
            "feb.html",
            "--json",
            "feb.json",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "schema.unseen_category" in err
    assert "blocking" in err
    assert "warning" in err
    assert "error: " in err
    assert "blocking data finding" in err
    body = json.loads((files / "feb.json").read_text())
    assert body["passed"] is False
    checks = {(f["check"], f["column"]) for f in body["findings"]}
    assert ("drift.dataset", None) in checks
    assert "digital-wallet" in (files / "feb.html").read_text()


def test_drift_and_profile(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "drift", "holdout.csv", "--reference", "train.csv"]) == 0
    assert main(["data", "drift", "feb.csv", "--reference", "train.csv"]) == 1
    assert main(["data", "profile", "train.csv", "--schema-out", "schema.json"]) == 0
    schema = json.loads((files / "schema.json").read_text())
    assert schema["primaryKey"] == ["customer_id"]
    # The written schema is what validate then checks against.
    assert (
        main(
            [
                "data",
                "validate",
                "holdout.csv",
                "--reference",
                "train.csv",
                "--schema",
                "schema.json",
            ]
        )
        == 0
    )
    assert main(["data", "profile", "train.csv", "--json"]) == 0
    assert '"rows": 2100' in capsys.readouterr().out


def test_usage_and_bad_input_exit_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", "holdout.csv"]) == 2  # no --reference
    assert main(["data", "validate", "holdout.csv", "--reference", "nope.csv"]) == 2
    (files / "broken.json").write_text("{")
    assert (
        main(
            [
                "data",
                "validate",
                "holdout.csv",
                "--reference",
                "train.csv",
                "--schema",
                "broken.json",
            ]
        )
        == 2
    )
    (files / "empty.csv").write_text("")
    assert main(["data", "validate", "empty.csv", "--reference", "train.csv"]) == 2
    assert (
        main(["data", "validate", "holdout.csv", "--reference", "train.csv", "--target", "nope"])
        == 2
    )
    err = capsys.readouterr().err
    assert "nope.csv does not exist" in err
    assert "broken.json is not valid JSON" in err
    assert "empty.csv is an empty file" in err
    assert "target 'nope' is not a column" in err
