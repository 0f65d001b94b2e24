"""`conveyor data ...` driven as a user would, in its own process, on the example's data."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

from tests.e2e._cli import conveyor

if TYPE_CHECKING:
    from pathlib import Path


def test_validate_profile_and_drift_from_the_shell(generated_data: Path, tmp_path: Path) -> None:
    for name in ("2026-01.csv", "2026-02.csv", "eval-2026-01.csv"):
        shutil.copy(generated_data / name, tmp_path / name)

    clean = conveyor(
        "data", "validate", "eval-2026-01.csv", "--reference", "2026-01.csv",
        "--target", "churned", "--json", "clean.json", cwd=tmp_path,
    )  # fmt: skip
    assert clean.code == 0, clean.err
    assert json.loads((tmp_path / "clean.json").read_text())["passed"] is True

    drifted = conveyor(
        "data", "validate", "2026-02.csv", "--reference", "2026-01.csv",
        "--report", "feb.html", cwd=tmp_path,
    )  # fmt: skip
    assert drifted.code == 1
    assert "schema.unseen_category" in drifted.err
    assert "digital-wallet" in (tmp_path / "feb.html").read_text()

    profile = conveyor("data", "profile", "2026-01.csv", "--schema-out", "s.json", cwd=tmp_path)
    assert profile.code == 0, profile.err
    assert json.loads((tmp_path / "s.json").read_text())["primaryKey"] == ["customer_id"]

    drift = conveyor("data", "drift", "2026-02.csv", "--reference", "2026-01.csv", cwd=tmp_path)
    assert drift.code == 1
    assert "drift.dataset" in drift.err

    missing = conveyor("data", "validate", "nope.csv", "--reference", "2026-01.csv", cwd=tmp_path)
    assert missing.code == 2
    assert missing.err.startswith("error: dataset nope.csv does not exist")
