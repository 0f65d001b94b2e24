"""Monitoring metrics for Prometheus (and the Grafana dashboard in ``grafana/conveyor.json``)::

    conveyor_monitoring_alert_state{model,rule}                 gauge: 0 inactive/resolved,
                                                               1 pending, 2 firing
    conveyor_monitoring_window_drift_share{model}               gauge: last window's share of
                                                               drifted feature columns
    conveyor_monitoring_window_metric{model,metric}             gauge: last window's headline
                                                               metrics (see HEADLINE)
    conveyor_monitoring_window_rows{model}                      gauge: rows in the last window
    conveyor_monitoring_incidents_open{model}                   gauge
    conveyor_inference_log_records_total{outcome}               counter: logged, dropped,
                                                               sampled_out, written, write_error

A :class:`MonitoringCollector` reads the alert, window and incident rows at scrape time (a
scrape every 15 s is a few indexed queries), so every server replica and the monitor process
export the same values without sharing memory. Register it on the server's registry:
``registry.register(MonitoringCollector(store, logger=inference_logger))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from conveyor.store.metadata.schema import alert, incident, monitoring_window

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from conveyor.monitoring._log import InferenceLogger
    from conveyor.store.metadata import MetadataStore

__all__ = ["HEADLINE", "STATE_VALUES", "MonitoringCollector"]

STATE_VALUES = {"inactive": 0.0, "resolved": 0.0, "pending": 1.0, "firing": 2.0}
#: Window metrics exported as ``conveyor_monitoring_window_metric``; the rest stay in the store.
HEADLINE = (
    "prediction.drift",
    "prediction.mean",
    "quality.null_share",
    "quality.out_of_range_share",
    "latency.p50",
    "latency.p99",
    "perf.accuracy",
    "perf.precision",
    "perf.recall",
    "perf.ece",
    "anomaly.nan_share",
    "anomaly.top_answer_share",
    "anomaly.mean_ewma",
)


class MonitoringCollector:
    """A Prometheus collector over the monitoring rows (and an inference logger's counters)."""

    def __init__(self, store: MetadataStore, *, logger: InferenceLogger | None = None) -> None:
        self.store = store
        self.logger = logger

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "conveyor_monitoring_alert_state",
            "Alert state: 0 inactive or resolved, 1 pending, 2 firing.",
            labels=["model", "rule"],
        )
        drift = GaugeMetricFamily(
            "conveyor_monitoring_window_drift_share",
            "Share of feature columns that drifted in the last window.",
            labels=["model"],
        )
        rows = GaugeMetricFamily(
            "conveyor_monitoring_window_rows", "Rows in the last window.", labels=["model"]
        )
        headline = GaugeMetricFamily(
            "conveyor_monitoring_window_metric",
            "Headline metrics of the last window.",
            labels=["model", "metric"],
        )
        open_incidents = GaugeMetricFamily(
            "conveyor_monitoring_incidents_open", "Incidents not resolved.", labels=["model"]
        )
        with self.store.read() as conn:
            for r in conn.execute(sa.select(alert.c.model, alert.c.rule, alert.c.state)):
                state.add_metric([r.model or "", r.rule], STATE_VALUES.get(r.state, 0.0))
            latest = (
                sa.select(
                    monitoring_window.c.model, sa.func.max(monitoring_window.c.start).label("s")
                )
                .group_by(monitoring_window.c.model)
                .subquery()
            )
            query = sa.select(monitoring_window.c.model, monitoring_window.c.metrics).join(
                latest,
                sa.and_(
                    monitoring_window.c.model == latest.c.model,
                    monitoring_window.c.start == latest.c.s,
                ),
            )
            for w in conn.execute(query):
                metrics = dict(w.metrics or {})
                rows.add_metric([w.model], float(metrics.get("rows") or 0))
                if isinstance(metrics.get("drift.share_drifted"), int | float):
                    drift.add_metric([w.model], float(metrics["drift.share_drifted"]))
                for name in HEADLINE:
                    value = metrics.get(name)
                    if isinstance(value, int | float):
                        headline.add_metric([w.model, name], float(value))
            counts = conn.execute(
                sa.select(incident.c.model, sa.func.count())
                .where(incident.c.state != "resolved")
                .group_by(incident.c.model)
            )
            for model, count in counts:
                open_incidents.add_metric([model or ""], float(count))
        yield from (state, drift, rows, headline, open_incidents)
        if self.logger is not None:
            c = self.logger.counters
            records = CounterMetricFamily(
                "conveyor_inference_log_records",
                "Inference log records by outcome.",
                labels=["outcome"],
            )
            for outcome, value in (
                ("logged", c.logged),
                ("dropped", c.dropped),
                ("sampled_out", c.sampled_out),
                ("written", c.written),
                ("write_error", c.write_errors),
            ):
                records.add_metric([outcome], float(value))
            yield records
