"""Progressive delivery: the routing of traffic between versions, rollouts and their analysis.

- :mod:`~conveyor.deploy.records`: routing, rollout and incident records.
- :mod:`~conveyor.deploy.state`: their rows in the metadata store, and the serving windows.
- :mod:`~conveyor.deploy.telemetry`: per-version telemetry the servers record and store.
- :mod:`~conveyor.deploy.analysis`: the statistical comparison of a canary with stable.
- :mod:`~conveyor.deploy.controller`: start, analyse, advance, promote, pause, abort.
- :mod:`~conveyor.deploy.k8s`: KServe ``InferenceService`` manifests.

Names are imported on first use: the analysis needs scipy, which the server's routing does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.deploy.analysis import Analysis, AnalysisSettings, analyse, shadow_report
    from conveyor.deploy.controller import (
        TickOutcome,
        abort,
        parse_steps,
        pause,
        resume,
        start_rollout,
        tick,
    )
    from conveyor.deploy.records import SHADOW, STRATEGIES, Incident, Rollout, Routing
    from conveyor.deploy.state import (
        active_rollout,
        list_incidents,
        list_rollouts,
        read_routing,
    )
    from conveyor.deploy.telemetry import Telemetry, WindowSummary

__all__ = [
    "SHADOW",
    "STRATEGIES",
    "Analysis",
    "AnalysisSettings",
    "Incident",
    "Rollout",
    "Routing",
    "Telemetry",
    "TickOutcome",
    "WindowSummary",
    "abort",
    "active_rollout",
    "analyse",
    "list_incidents",
    "list_rollouts",
    "parse_steps",
    "pause",
    "read_routing",
    "resume",
    "shadow_report",
    "start_rollout",
    "tick",
]

_LAZY = {
    "Analysis": "conveyor.deploy.analysis",
    "AnalysisSettings": "conveyor.deploy.analysis",
    "analyse": "conveyor.deploy.analysis",
    "shadow_report": "conveyor.deploy.analysis",
    "TickOutcome": "conveyor.deploy.controller",
    "abort": "conveyor.deploy.controller",
    "parse_steps": "conveyor.deploy.controller",
    "pause": "conveyor.deploy.controller",
    "resume": "conveyor.deploy.controller",
    "start_rollout": "conveyor.deploy.controller",
    "tick": "conveyor.deploy.controller",
    "SHADOW": "conveyor.deploy.records",
    "STRATEGIES": "conveyor.deploy.records",
    "Incident": "conveyor.deploy.records",
    "Rollout": "conveyor.deploy.records",
    "Routing": "conveyor.deploy.records",
    "active_rollout": "conveyor.deploy.state",
    "list_incidents": "conveyor.deploy.state",
    "list_rollouts": "conveyor.deploy.state",
    "read_routing": "conveyor.deploy.state",
    "Telemetry": "conveyor.deploy.telemetry",
    "WindowSummary": "conveyor.deploy.telemetry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
