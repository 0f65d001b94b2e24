"""The long-running rollout controller (`conveyor rollout run --watch`): what it reports and how
it survives a store that cannot serve a tick. The ticks are scripted here (the controller's
own ticks are tested in tests/unit/deploy); the whole command runs in tests/e2e."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from conveyor.core.errors import InfrastructureError
from conveyor.deploy import TickOutcome
from conveyor.project import _deploy


def _script(monkeypatch: pytest.MonkeyPatch, steps: list[Any], stop: threading.Event) -> None:
    """tick_rollout plays ``steps`` (an outcome's action, or an exception), then stops."""
    remaining = list(steps)

    def tick(project: Any, *, model: str, actor: str) -> TickOutcome:
        step = remaining.pop(0)
        if not remaining:
            stop.set()
        if isinstance(step, Exception):
            raise step
        return TickOutcome(step, None, f"{step} {model}")

    monkeypatch.setattr(_deploy, "tick_rollout", tick)


def test_watch_reports_idle_once_per_quiet_spell_and_counts_rollouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = threading.Event()
    steps = ["idle", "idle", "waiting", "advanced", "failed", "idle", "idle", "succeeded", "idle"]
    _script(monkeypatch, steps, stop)
    reported: list[str] = []
    ended = _deploy.watch(
        None,  # type: ignore[arg-type]  # the scripted tick needs no project
        model="churn",
        actor="ctl",
        stop=stop,
        every=0.001,
        report=lambda outcome: reported.append(outcome.action),
    )
    assert reported == ["idle", "advanced", "failed", "idle", "succeeded", "idle"]
    assert ended == 2


def test_watch_tries_again_when_the_store_cannot_serve_a_tick(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stop = threading.Event()
    down = InfrastructureError("the metadata store is unreachable", hint="start it")
    _script(monkeypatch, [down, down, "succeeded"], stop)
    ended = _deploy.watch(None, model="churn", actor="ctl", stop=stop, every=0.001)  # type: ignore[arg-type]
    assert ended == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "tick failed, trying again: the metadata store is unreachable" in warnings[0]


def test_watch_lets_other_errors_through(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    _script(monkeypatch, [ValueError("a bug"), "idle"], stop)
    with pytest.raises(ValueError, match="a bug"):
        _deploy.watch(None, model="churn", actor="ctl", stop=stop, every=0.001)  # type: ignore[arg-type]
