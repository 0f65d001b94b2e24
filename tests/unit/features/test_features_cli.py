"""``conveyor features ...`` on a project folder, driven like a user would."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd
from click.testing import CliRunner

from conveyor.cli._main import cli
from conveyor.core.errors import ConveyorError

from .conftest import events, leaky_labels

if TYPE_CHECKING:
    from pathlib import Path

DEFINITIONS = """
import datetime as dt
from conveyor.features import Feature, FeatureService

spend = Feature(
    "spend", entity="customer_id", dtype="float64", source="data/orders.parquet",
    transform=lambda df, factor: df["amount"] * factor, params={"factor": FACTOR},
)
churn = FeatureService("churn", [spend])
"""


def _project(root: Path, factor: float) -> None:
    (root / "features").mkdir(exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "conveyor.yaml").write_text("project: p\n")
    (root / "features" / "defs.py").write_text(DEFINITIONS.replace("FACTOR", str(factor)))
    events().to_parquet(root / "data" / "orders.parquet")


def _run(root: Path, *args: str) -> tuple[int, str]:
    """Exit code and output; a ConveyorError maps to its exit code, as the entry point does."""
    result = CliRunner().invoke(cli, ["-C", str(root), "features", *args])
    error = result.exception
    if isinstance(error, ConveyorError):
        return int(error.exit_code), result.output + str(error)
    if error is not None and not isinstance(error, SystemExit):
        raise error
    return result.exit_code, result.output


def test_apply_materialize_get_skew_and_training_set(tmp_path: Path) -> None:
    _project(tmp_path, 2.0)
    code, out = _run(tmp_path, "apply")
    assert code == 0
    assert "registered spend@" in out
    assert "computed spend@" in out

    assert _run(tmp_path, "materialize")[1].startswith("churn: 40 values for 1 features")
    code, out = _run(tmp_path, "get", "churn", "3")
    source = events()
    latest = source.sort_values("event_timestamp").groupby("customer_id")["amount"].last()
    assert json.loads(out) == {"3": {"spend": latest[3] * 2.0}}
    assert _run(tmp_path, "skew", "churn")[0] == 0

    labels = tmp_path / "labels.parquet"
    leaky_labels(source).to_parquet(labels)
    out_file = tmp_path / "train.parquet"
    code, _ = _run(tmp_path, "training-set", "churn", str(labels), "--out", str(out_file))
    assert code == 0
    assert len(pd.read_parquet(out_file)) == len(leaky_labels(source))

    code, out = _run(tmp_path, "list", "--json")
    listed = json.loads(out)
    assert [f["name"] for f in listed["features"]] == ["spend"]
    assert [s["name"] for s in listed["services"]] == ["churn"]


def test_a_new_definition_registers_a_new_version_and_skew_then_fails(tmp_path: Path) -> None:
    _project(tmp_path, 2.0)
    _run(tmp_path, "apply")
    _run(tmp_path, "materialize")
    _project(tmp_path, 3.0)
    code, out = _run(tmp_path, "apply")
    assert "registered spend@" in out

    # The new version has offline values but nothing online yet: skew fails (exit 1).
    code, out = _run(tmp_path, "skew", "churn")
    assert code == 1
    assert "spend: 40 of 40 differ" in out
    assert "online values differ from offline for spend" in out
    code, out = _run(tmp_path, "show", "spend", "--json")
    versions = json.loads(_run(tmp_path, "list", "--json")[1])["features"]
    assert len(versions) == 2
    assert json.loads(out)["version"] == versions[-1]["version"]
