"""The data gate end to end on files, with its findings recorded against the dataset version."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from tests.unit.data._data_support import churn

from conveyor.data.gate import DataGateSettings, record_findings, run_data_gate
from conveyor.data.versions import register_dataset
from conveyor.store.metadata.schema import audit_event, dataset_check

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.store.metadata import MetadataStore


def test_findings_are_recorded_per_dataset_version(
    metadata_store: MetadataStore, tmp_path: Path
) -> None:
    churn(3000).to_csv(tmp_path / "train.csv", index=False)
    churn(1500, seed=8, drift=True, month="2026-02").to_csv(tmp_path / "feb.csv", index=False)
    settings = DataGateSettings.from_mapping(
        {"reference": "train.csv", "target": "churned"}, where="policies.yaml", root=tmp_path
    )
    report = run_data_gate(settings, current=tmp_path / "feb.csv")
    assert not report.passed
    current = register_dataset(metadata_store, tmp_path / "feb.csv", name="feb", actor="ci")
    reference = register_dataset(metadata_store, tmp_path / "train.csv", name="train", actor="ci")
    written = record_findings(
        metadata_store, current.id, report, reference_id=reference.id, actor="ci"
    )
    assert written == len(report.findings) + 1
    with metadata_store.read() as conn:
        rows = conn.execute(sa.select(dataset_check).order_by(dataset_check.c.id)).mappings().all()
        actions = (
            conn.execute(sa.select(audit_event.c.action).order_by(audit_event.c.seq))
            .scalars()
            .all()
        )
    assert {r["dataset_version"] for r in rows} == {current.id}
    assert {r["reference_version"] for r in rows} == {reference.id}
    blocking = [(r["check"], r["column"]) for r in rows if r["blocking"] and not r["passed"]]
    assert ("schema.unseen_category", "payment_method") in blocking
    assert ("drift.dataset", None) in blocking
    summary = rows[-1]
    assert summary["check"] == "data_checks"
    assert summary["passed"] is False
    assert summary["observed"] == len(report.blocking)
    unseen = next(r for r in rows if r["check"] == "schema.unseen_category")
    assert unseen["details"]["categories"] == ["digital-wallet"]
    assert actions[-1] == "dataset.checked"
