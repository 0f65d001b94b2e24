"""The stores: content-addressed bytes (``artifacts``) and rows with migrations (``metadata``)."""

from __future__ import annotations

__all__: list[str] = []
