"""The CLI entry point maps every outcome to the documented exit code and one error line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conveyor.cli import main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _in_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("CONVEYOR_STORE", "CONVEYOR_ARTIFACTS", "CONVEYOR_CONFIG", "CONVEYOR_PROJECT_DIR"):
        monkeypatch.delenv(var, raising=False)


def test_ok_is_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify"]) == 0
    assert "intact: 0 events" in capsys.readouterr().out


def test_help_and_version_are_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["--version"]) == 0
    assert "conveyor, version" in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_missing_argument_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["promote", "churn"]) == 2
    assert "Missing argument" in capsys.readouterr().err


def test_bad_store_url_is_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", "mongodb://x/y", "audit", "verify"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: metadata store backend 'mongodb' is not supported")
    assert "\n" not in err


def test_bad_since_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "log", "--since", "yesterday-ish"]) == 2
    assert "is not a date" in capsys.readouterr().err


def test_invalid_yaml_names_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conveyor.yaml").write_text("params:\n  a: [1, 2\n")
    assert main(["audit", "verify"]) == 2
    err = capsys.readouterr().err
    assert "conveyor.yaml:" in err
    assert "not valid YAML" in err
