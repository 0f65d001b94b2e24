"""Rows, transactions, migrations and the audit chain, on SQLite or PostgreSQL."""

from __future__ import annotations

from conveyor.store.metadata import schema
from conveyor.store.metadata.audit import AuditEvent, ChainReport, verify_chain
from conveyor.store.metadata.migrations_runner import HEAD_REVISION, upgrade
from conveyor.store.metadata.rows import insert_ignore
from conveyor.store.metadata.store import (
    MetadataStore,
    RetryPolicy,
    TransactionConflictError,
    Tx,
)

__all__ = [
    "HEAD_REVISION",
    "AuditEvent",
    "ChainReport",
    "MetadataStore",
    "RetryPolicy",
    "TransactionConflictError",
    "Tx",
    "insert_ignore",
    "schema",
    "upgrade",
    "verify_chain",
]
