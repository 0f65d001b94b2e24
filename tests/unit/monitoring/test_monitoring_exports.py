"""The package's public surface, the Prometheus collector, runbooks and the Grafana dashboard."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest

import conveyor.monitoring as monitoring
from conveyor.monitoring import (
    InferenceLogger,
    MonitoringCollector,
    evaluate,
    parse_rules,
    record_window,
    write_runbooks,
)
from conveyor.monitoring._runbooks import RUNBOOKS

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.store.metadata import MetadataStore

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert monitoring.__all__ == sorted(monitoring.__all__)
    for name in monitoring.__all__:
        assert getattr(monitoring, name) is not None


def test_collector_exports_alert_states_windows_and_log_counters(
    sqlite_store: MetadataStore, tmp_path: Path
) -> None:
    record_window(
        sqlite_store,
        model="churn",
        version=1,
        start=T0,
        end=T0 + dt.timedelta(minutes=5),
        metrics={"rows": 10, "drift.share_drifted": 0.25, "latency.p99": 0.9},
    )
    rules = parse_rules(
        "alerts:\n  - {name: slow, metric: latency.p99, op: '>', threshold: 0.5,"
        " actions: [open_incident]}\n"
    )
    evaluate(sqlite_store, rules, model="churn", now=T0 + dt.timedelta(minutes=5))
    log = InferenceLogger(tmp_path, sample_rate=0.0)
    log.log("churn", 1, "r", {"x": 1}, 0, 0.0)
    log.close()
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(sqlite_store, logger=log))
    text = generate_latest(registry).decode()
    assert 'conveyor_monitoring_alert_state{model="churn",rule="slow"} 2.0' in text
    assert 'conveyor_monitoring_window_drift_share{model="churn"} 0.25' in text
    assert 'conveyor_monitoring_window_rows{model="churn"} 10.0' in text
    assert 'conveyor_monitoring_window_metric{metric="latency.p99",model="churn"} 0.9' in text
    assert 'conveyor_monitoring_incidents_open{model="churn"} 1.0' in text
    assert 'conveyor_inference_log_records_total{outcome="sampled_out"} 1.0' in text


def test_runbooks_are_written_once(tmp_path: Path) -> None:
    written = write_runbooks(tmp_path / "runbooks")
    assert sorted(p.name for p in written) == sorted(RUNBOOKS)
    assert (tmp_path / "runbooks" / "drift.md").read_text().startswith("# Runbook: feature")
    (tmp_path / "runbooks" / "drift.md").write_text("ours")
    assert write_runbooks(tmp_path / "runbooks") == []
    assert (tmp_path / "runbooks" / "drift.md").read_text() == "ours"


def test_grafana_dashboard_queries_exported_metrics() -> None:
    text = importlib.resources.files("conveyor.monitoring").joinpath("grafana/conveyor.json")
    dashboard = json.loads(text.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for name in (
        "conveyor_monitoring_alert_state",
        "conveyor_monitoring_window_drift_share",
        "conveyor_monitoring_incidents_open",
        "conveyor_inference_log_records_total",
        "conveyor_inference_request_duration_seconds_bucket",
    ):
        assert any(name in e for e in exprs), name
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
