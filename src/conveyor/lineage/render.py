"""Lineage graphs as text: a table, Graphviz DOT and Mermaid (JSON is ``Graph.to_json``).

Node ids are written in full everywhere (``dataset:blake3:...``), so what a user copies from one
output works as input to the next command; DOT and Mermaid show a short label and keep the full
id in a tooltip or a comment.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.lineage.graph import Graph, Node

__all__ = ["FORMATS", "render", "to_dot", "to_mermaid", "to_table"]

FORMATS = ("table", "json", "dot", "mermaid")

_SHAPES = {
    "dataset": ("cylinder", "[({label})]"),
    "artifact": ("note", "[/{label}/]"),
    "run": ("box", "[{label}]"),
    "model": ("doubleoctagon", "{{{{{label}}}}}"),
    "evaluation": ("hexagon", "{{{{{label}}}}}"),
    "feature": ("component", "[[{label}]]"),
}


def render(graph: Graph, fmt: str) -> str:
    """``graph`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return json.dumps(graph.to_json(), indent=2)
    if fmt == "dot":
        return to_dot(graph)
    if fmt == "mermaid":
        return to_mermaid(graph)
    return to_table(graph)


def to_table(graph: Graph) -> str:
    """One line per node: distance, id, what it is."""
    lines = [f"{graph.direction} of {graph.start}: {len(graph.nodes) - 1} nodes"]
    for n in graph.nodes[1:]:
        depth = "" if n.depth is None else f"{n.depth:>3}  "
        lines.append(f"{depth}{n.id}  {n.label}".rstrip())
    return "\n".join(lines)


def _short(n: Node) -> str:
    if n.kind in ("dataset", "artifact"):
        ref = n.ref.split(":", 1)[-1][:12]
        return f"{n.kind} {ref}" + (f"\\n{n.label}" if n.label else "")
    if n.kind == "run":
        return n.label.split(" (")[0] if n.label else f"run {n.ref[:12]}"
    if n.kind == "model":
        return n.label or n.ref
    return n.label or n.id


def to_dot(graph: Graph) -> str:
    """Graphviz DOT (``dot -Tsvg``); edges are labelled with their relation."""
    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for n in graph.nodes:
        shape = _SHAPES.get(n.kind, ("ellipse", ""))[0]
        label = _dot_escape(_short(n))
        extra = ", penwidth=2" if n.id == graph.start else ""
        lines.append(
            f'  {ids[n.id]} [label="{label}", tooltip="{_dot_escape(n.id)}", shape={shape}{extra}];'
        )
    for src, dst, relation in graph.edges:
        lines.append(f'  {ids[src]} -> {ids[dst]} [label="{relation}"];')
    lines.append("}")
    return "\n".join(lines)


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")


def to_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart (renders in GitHub markdown)."""
    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}
    lines = ["flowchart LR"]
    for n in graph.nodes:
        template = _SHAPES.get(n.kind, ("", "[{label}]"))[1]
        label = _mermaid_escape(_short(n).replace("\\n", "<br/>"))
        lines.append(f"  %% {n.id}")
        lines.append(f"  {ids[n.id]}" + template.format(label=f'"{label}"'))
    for src, dst, relation in graph.edges:
        lines.append(f"  {ids[src]} -->|{relation}| {ids[dst]}")
    return "\n".join(lines)


def _mermaid_escape(text: str) -> str:
    return re.sub(r'["]', "#quot;", text)
