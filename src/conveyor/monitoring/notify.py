"""Notifications of alert transitions: a Slack-compatible webhook, and the log/terminal.

A :class:`Notifier` must never stop the monitor: delivery failures are logged (without the
webhook URL, whose path is the secret in Slack's and most chat tools' incoming webhooks) and
the evaluation goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from conveyor.core.redact import redact

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

__all__ = [
    "AlertEvent",
    "LogNotifier",
    "Notifier",
    "WebhookNotifier",
    "safe_target",
    "slack_payload",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertEvent:
    """One alert transition worth telling someone about (``firing`` or ``resolved``)."""

    rule: str
    model: str
    state: str
    value: float
    threshold: float
    metric: str
    op: str
    severity: str
    runbook: str | None = None
    incident_id: str | None = None
    actions: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        head = "FIRING" if self.state == "firing" else self.state.upper()
        line = (
            f"[{head}] {self.rule} on model '{self.model}': {self.metric} = {self.value:.4g} "
            f"({self.op} {self.threshold:g}), severity {self.severity}"
        )
        if self.incident_id:
            line += f"; incident {self.incident_id}"
        return line


class Notifier(Protocol):
    """Somewhere alert transitions go."""

    def notify(self, event: AlertEvent) -> None: ...


def slack_payload(event: AlertEvent) -> dict[str, Any]:
    """Slack-compatible JSON: ``text`` (the fallback) and ``blocks``."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": event.text}},
    ]
    context = [f"rule `{event.rule}`", f"metric `{event.metric}`"]
    if event.runbook:
        context.append(f"runbook: {event.runbook}")
    for action, outcome in event.actions.items():
        context.append(f"{action}: {outcome}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": c} for c in context]})
    return {"text": event.text, "blocks": blocks}


class _MaskWebhooks(logging.Filter):
    """Mask webhook URLs in httpx's own request log lines (``HTTP Request: POST <url> ...``):
    a chat webhook's secret is its path, which :mod:`conveyor.core.redact` cannot recognise."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and any(str(a) in self.urls for a in _args(record.args)):
            record.args = tuple(
                safe_target(str(a)) if str(a) in self.urls else a for a in _args(record.args)
            )
        return True


def _args(args: Any) -> tuple[Any, ...]:
    return tuple(args) if isinstance(args, tuple) else (args,)


_MASK = _MaskWebhooks()


def safe_target(url: str) -> str:
    """What may be written down about a webhook URL: its scheme and host only."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/***"


class WebhookNotifier:
    """POST each event as Slack-compatible JSON.

    Args:
        url: The incoming-webhook URL (a secret: never logged).
        timeout_s: Per request; a slow receiver must not hold the monitor up.
        client: An ``httpx.Client`` to use (tests pass one with a ``MockTransport``).
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0, client: httpx.Client | None = None):
        self._url = url
        self.timeout_s = timeout_s
        if not _MASK.urls:
            logging.getLogger("httpx").addFilter(_MASK)
        _MASK.urls.add(url)
        self._client = client
        self.failures = 0

    def __repr__(self) -> str:
        return f"WebhookNotifier({safe_target(self._url)!r})"

    def notify(self, event: AlertEvent) -> None:
        import httpx

        try:
            if self._client is not None:
                response = self._client.post(
                    self._url, json=slack_payload(event), timeout=self.timeout_s
                )
            else:
                with httpx.Client(timeout=self.timeout_s) as client:
                    response = client.post(self._url, json=slack_payload(event))
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.failures += 1
            # The exception text can hold the URL; only its type and the safe target are logged.
            logger.warning(
                "alert webhook to %s failed (%s)", safe_target(self._url), type(exc).__name__
            )


class LogNotifier:
    """Write each event to the log, and to ``echo`` (the terminal) when given."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self._echo = echo

    def notify(self, event: AlertEvent) -> None:
        level = logging.WARNING if event.state == "firing" else logging.INFO
        logger.log(
            level,
            event.text,
            extra={
                "rule": event.rule,
                "model": event.model,
                "state": event.state,
                "actions": redact(event.actions),
            },
        )
        if self._echo is not None:
            self._echo(event.text)
