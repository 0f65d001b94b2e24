"""Every environment variable Conveyor reads, named once.

Precedence everywhere is: command-line flag > environment variable > ``conveyor.yaml`` > default.
"""

from __future__ import annotations

__all__ = [
    "CONVEYOR_ALERT_WEBHOOK",
    "CONVEYOR_ARTIFACTS",
    "CONVEYOR_CONFIG",
    "CONVEYOR_FEATURES_OFFLINE",
    "CONVEYOR_FEATURES_ONLINE",
    "CONVEYOR_HOST",
    "CONVEYOR_LOG_LEVEL",
    "CONVEYOR_POLL_INTERVAL",
    "CONVEYOR_PORT",
    "CONVEYOR_PROJECT_DIR",
    "CONVEYOR_STORE",
    "CONVEYOR_USER",
]

#: Metadata store URL, e.g. ``sqlite:///path/conveyor.db`` or ``postgresql+psycopg://...``.
CONVEYOR_STORE = "CONVEYOR_STORE"
#: Artifact store location, a folder path or an fsspec URL such as ``s3://bucket/prefix``.
CONVEYOR_ARTIFACTS = "CONVEYOR_ARTIFACTS"
#: Path of the project's ``conveyor.yaml`` when it is not in the current folder.
CONVEYOR_CONFIG = "CONVEYOR_CONFIG"
#: Project folder (where ``conveyor.yaml`` lives) when not the current folder.
CONVEYOR_PROJECT_DIR = "CONVEYOR_PROJECT_DIR"
#: The acting user recorded in the audit trail; defaults to the operating-system user.
CONVEYOR_USER = "CONVEYOR_USER"
#: Interface and port ``conveyor serve`` binds.
CONVEYOR_HOST = "CONVEYOR_HOST"
CONVEYOR_PORT = "CONVEYOR_PORT"
#: Seconds between the server's checks for a changed production version.
CONVEYOR_POLL_INTERVAL = "CONVEYOR_POLL_INTERVAL"
#: Logging level of the entry points (``DEBUG``, ``INFO``, ``WARNING``).
CONVEYOR_LOG_LEVEL = "CONVEYOR_LOG_LEVEL"
#: The webhook URL alert notifications are posted to (a secret: never in a versioned file).
CONVEYOR_ALERT_WEBHOOK = "CONVEYOR_ALERT_WEBHOOK"
#: The online feature store (``features.online``) and the offline store's folder.
CONVEYOR_FEATURES_ONLINE = "CONVEYOR_FEATURES_ONLINE"
CONVEYOR_FEATURES_OFFLINE = "CONVEYOR_FEATURES_OFFLINE"
