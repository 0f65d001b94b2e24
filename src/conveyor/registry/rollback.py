"""Rollback: put the version that was in production before the current one back, at once.

The rollback order is rebuilt from the stage history as a stack of production versions:

- a version entering production for the first time is pushed (a promotion);
- a version entering production again can only be a rollback to it (archived versions cannot be
  promoted), so everything above it is popped;
- the production version leaving production with no new production row before it was archived
  on purpose; it is popped, so no later rollback brings it back. (A replaced version leaves
  after its successor's production row: ``promotion`` writes them in that order.)

So repeated rollbacks walk further back: v1, v2, v3 in production, two rollbacks give v2 then v1.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from conveyor.core.errors import ConflictError
from conveyor.registry._rows import add_stage, fetch_history, require_model
from conveyor.registry.records import RollbackResult

if TYPE_CHECKING:
    from collections.abc import Iterable

    from conveyor.registry.records import StageChange
    from conveyor.store.metadata import MetadataStore

__all__ = ["production_lineage", "rollback"]

logger = logging.getLogger(__name__)


def rollback(store: MetadataStore, *, model: str, actor: str, reason: str = "") -> RollbackResult:
    """Archive the production version of ``model`` and restore the one before it.

    No checks run: a rollback is the way out of an incident and must not be blocked by gates
    the restored version already passed once.

    Raises:
        NotFoundError: no model of that name.
        ConflictError: nothing is in production, or no earlier production version remains.
    """
    with store.write(actor) as tx:
        require_model(tx.conn, model)
        # Production can only be left for "archived", so no other row changes the lineage.
        history = fetch_history(tx.conn, model, stages=("production", "archived"))
        current, stack = production_lineage(history)
        if current is None:
            raise ConflictError(
                f"model '{model}' has no version in production, so there is nothing to roll back",
                hint=f"promote one with `conveyor promote {model} <version> --to production`",
            )
        if len(stack) < 2:
            raise ConflictError(
                f"model '{model}' has no earlier production version to roll back to",
                hint=f"to take version {current} out of production anyway, run "
                f"`conveyor promote {model} {current} --to archived`",
            )
        target = stack[-2]
        why = f"rolled back: {reason}" if reason else "rolled back"
        # The restored version's row first, as promotion does: see the module docstring.
        restored = f"restored by rollback from v{current}" + (f": {reason}" if reason else "")
        add_stage(
            tx.conn,
            model=model,
            version=target,
            stage="production",
            actor=actor,
            reason=restored,
            at=tx.at,
        )
        add_stage(
            tx.conn,
            model=model,
            version=current,
            stage="archived",
            actor=actor,
            reason=why,
            at=tx.at,
        )
        tx.audit(
            "model.rolled_back",
            f"model:{model}",
            {"from_version": current, "to_version": target, "reason": reason},
        )
    logger.info("rolled back", extra={"model": model, "from": current, "to": target})
    return RollbackResult(model=model, from_version=current, to_version=target)


def production_lineage(history: Iterable[StageChange]) -> tuple[int | None, list[int]]:
    """Replay a model's stage history: (the version in production or None, the rollback stack).

    The stack lists the versions that production can roll back through, oldest first; its top
    is the current production version when there is one.
    """
    stack: list[int] = []
    current: int | None = None
    for change in history:
        if change.stage == "production":
            if change.version in stack:
                del stack[stack.index(change.version) + 1 :]
            else:
                stack.append(change.version)
            current = change.version
        elif change.version == current:
            if stack and stack[-1] == current:
                stack.pop()
            current = None
    return current, stack
