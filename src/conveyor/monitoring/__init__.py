"""Monitoring in production: inference logging, windows against the reference, alerts, incidents.

- :mod:`~conveyor.monitoring._log`: the sampled, bounded, non-blocking inference logger.
- :mod:`~conveyor.monitoring.windows`: drift, data quality and performance per window.
- :mod:`~conveyor.monitoring.anomaly`: NaN / out-of-range answers, EWMA of the mean, spikes.
- :mod:`~conveyor.monitoring.rules`: alert rules in YAML.
- :mod:`~conveyor.monitoring.alerts`: their evaluation, state machine and actions.
- :mod:`~conveyor.monitoring.notify`: webhook (Slack-compatible) and log notifiers.
- :mod:`~conveyor.monitoring.incidents`: incidents and a model's timeline.
- :mod:`~conveyor.monitoring.reference`: the model's predictions on its reference, cached.
- :mod:`~conveyor.monitoring.monitor`: the loop tying them together.
- :mod:`~conveyor.monitoring.metrics`: the Prometheus collector.

Names are imported on first use: the server imports the logger, which needs none of pandas,
scipy or the registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.monitoring._log import (
        InferenceLogger,
        LogCounters,
        prune_log,
        read_labels,
        read_log,
    )
    from conveyor.monitoring._runbooks import write_runbooks
    from conveyor.monitoring.alerts import AlertState, Transition, evaluate, list_alerts
    from conveyor.monitoring.anomaly import Ewma, output_anomalies
    from conveyor.monitoring.incidents import (
        IncidentView,
        TimelineEvent,
        acknowledge,
        get_incident,
        list_incidents,
        resolve,
        timeline,
    )
    from conveyor.monitoring.metrics import MonitoringCollector
    from conveyor.monitoring.monitor import Monitor, Round, training_reference
    from conveyor.monitoring.notify import AlertEvent, LogNotifier, Notifier, WebhookNotifier
    from conveyor.monitoring.reference import ReferencePredictions, reference_predictions
    from conveyor.monitoring.rules import AlertRule, load_rules, parse_rules
    from conveyor.monitoring.windows import Window, WindowSpec, compute_window, record_window

__all__ = [
    "AlertEvent",
    "AlertRule",
    "AlertState",
    "Ewma",
    "IncidentView",
    "InferenceLogger",
    "LogCounters",
    "LogNotifier",
    "Monitor",
    "MonitoringCollector",
    "Notifier",
    "ReferencePredictions",
    "Round",
    "TimelineEvent",
    "Transition",
    "WebhookNotifier",
    "Window",
    "WindowSpec",
    "acknowledge",
    "compute_window",
    "evaluate",
    "get_incident",
    "list_alerts",
    "list_incidents",
    "load_rules",
    "output_anomalies",
    "parse_rules",
    "prune_log",
    "read_labels",
    "read_log",
    "record_window",
    "reference_predictions",
    "resolve",
    "timeline",
    "training_reference",
    "write_runbooks",
]

_LAZY = {
    "InferenceLogger": "conveyor.monitoring._log",
    "LogCounters": "conveyor.monitoring._log",
    "prune_log": "conveyor.monitoring._log",
    "read_labels": "conveyor.monitoring._log",
    "read_log": "conveyor.monitoring._log",
    "write_runbooks": "conveyor.monitoring._runbooks",
    "AlertState": "conveyor.monitoring.alerts",
    "Transition": "conveyor.monitoring.alerts",
    "evaluate": "conveyor.monitoring.alerts",
    "list_alerts": "conveyor.monitoring.alerts",
    "Ewma": "conveyor.monitoring.anomaly",
    "output_anomalies": "conveyor.monitoring.anomaly",
    "IncidentView": "conveyor.monitoring.incidents",
    "TimelineEvent": "conveyor.monitoring.incidents",
    "acknowledge": "conveyor.monitoring.incidents",
    "get_incident": "conveyor.monitoring.incidents",
    "list_incidents": "conveyor.monitoring.incidents",
    "resolve": "conveyor.monitoring.incidents",
    "timeline": "conveyor.monitoring.incidents",
    "MonitoringCollector": "conveyor.monitoring.metrics",
    "Monitor": "conveyor.monitoring.monitor",
    "Round": "conveyor.monitoring.monitor",
    "training_reference": "conveyor.monitoring.monitor",
    "AlertEvent": "conveyor.monitoring.notify",
    "LogNotifier": "conveyor.monitoring.notify",
    "Notifier": "conveyor.monitoring.notify",
    "WebhookNotifier": "conveyor.monitoring.notify",
    "ReferencePredictions": "conveyor.monitoring.reference",
    "reference_predictions": "conveyor.monitoring.reference",
    "AlertRule": "conveyor.monitoring.rules",
    "load_rules": "conveyor.monitoring.rules",
    "parse_rules": "conveyor.monitoring.rules",
    "Window": "conveyor.monitoring.windows",
    "WindowSpec": "conveyor.monitoring.windows",
    "compute_window": "conveyor.monitoring.windows",
    "record_window": "conveyor.monitoring.windows",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.monitoring' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
