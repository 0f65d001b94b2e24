"""Lineage edges: how the writers of facts (pipeline runs, registrations, evaluations) record
"this was used to make that", and how every node is named.

A node is ``kind:ref``, the same string everywhere (CLI, JSON, HTTP, graphs):

==============  ==========================================  ================================
kind            ref                                         example
==============  ==========================================  ================================
``dataset``     content digest of a dataset version / file  ``dataset:blake3:9f2c...``
``artifact``    content digest of a stored artifact         ``artifact:blake3:41d0...``
``run``         run id (one step's execution)               ``run:0192ab...``
``model``       ``name/version`` (as in the audit trail)     ``model:churn/3``
``evaluation``  evaluation id                               ``evaluation:12``
``feature``     ``name@version`` (version = digest)         ``feature:tenure_days@blake3:..``
==============  ==========================================  ================================

Edges point downstream (``src`` was used to make ``dst``), with a relation: ``input`` (a
dataset or artifact read by a run), ``output`` (an artifact a run produced), ``trained``
(the run whose model a version packages), ``metrics`` (the run that measured it), ``bundle``
(the bundle artifact of a version), ``evaluated`` (a version measured by an evaluation),
``evaluated_on`` (the dataset it was measured on). Cache hits add no edges: they produce
nothing new, and the version links the execution that did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.store.metadata.rows import insert_ignore
from conveyor.store.metadata.schema import lineage_edge

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable

    import sqlalchemy as sa

__all__ = ["KINDS", "RELATIONS", "add_edges", "model_node", "node", "parse_node"]

KINDS = ("dataset", "artifact", "run", "model", "evaluation", "feature")
RELATIONS = (
    "input",
    "output",
    "trained",
    "metrics",
    "bundle",
    "evaluated",
    "evaluated_on",
    "computed_from",
)


def node(kind: str, ref: str | int) -> str:
    """The node id of ``ref`` of ``kind`` (see the module docstring)."""
    return f"{kind}:{ref}"


def model_node(model: str, version: int) -> str:
    return f"model:{model}/{version}"


def parse_node(text: str) -> tuple[str, str]:
    """(kind, ref) of a node id; ValueError when it has no known kind."""
    kind, sep, ref = text.partition(":")
    if not sep or kind not in KINDS or not ref:
        raise ValueError(text)
    return kind, ref


def add_edges(conn: sa.Connection, edges: Iterable[tuple[str, str, str]], at: dt.datetime) -> None:
    """Record ``(src, dst, relation)`` edges in the caller's write transaction (idempotent)."""
    insert_ignore(
        conn,
        lineage_edge,
        [{"src": s, "dst": d, "relation": r, "created_at": at} for s, d, r in edges],
    )
