"""The inference server: the Open Inference Protocol v2 over HTTP, with hot-swapped versions."""

from __future__ import annotations

from conveyor.server.app import create_app
from conveyor.server.serve import serve

__all__ = ["create_app", "serve"]
