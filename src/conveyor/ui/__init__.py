"""The web dashboard: server-rendered pages over the registry, rollouts, data, monitoring, audit."""

from __future__ import annotations

from conveyor.ui.app import DEFAULT_PREFIX, create_ui_app, ui_app, ui_mount

__all__ = ["DEFAULT_PREFIX", "create_ui_app", "ui_app", "ui_mount"]
