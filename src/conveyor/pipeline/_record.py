"""The metadata side of a pipeline run: cache look-ups and batched run records.

Records are kept in memory and written in one transaction per executed step, plus one at the
end; a run where every step is cached therefore costs one write transaction. Each record is one
``run`` row with its ``run_input``/``run_output`` edges, the ``artifact`` row of a new output,
its lineage edges (executed runs only: a cache hit makes nothing new) and one audit event, all
in the same transaction.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.store.metadata import insert_ignore
from conveyor.store.metadata.lineage import add_edges, node
from conveyor.store.metadata.schema import artifact, run, run_input, run_output

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterator

    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

__all__ = ["ENVIRONMENT_MEDIA_TYPE", "CacheHit", "PipelineRunRecord", "Recorder", "StepRecord"]

ENVIRONMENT_MEDIA_TYPE = "application/vnd.conveyor.environment+json"

# Several candidates, newest first: an older execution may still have its output stored.
_CANDIDATES = 3
# No condition on run_output.kind: with one, SQLite (no statistics) walks the kind index over
# every output ever recorded instead of the cache_key index. The few rows are filtered here.
_LOOKUP = (
    sa.select(run.c.id, run_output.c.kind, run_output.c.ref, artifact.c.media_type)
    .select_from(
        run.join(run_output, run_output.c.run_id == run.c.id).join(
            artifact, artifact.c.digest == run_output.c.ref
        )
    )
    .where(
        run.c.cache_key == sa.bindparam("cache_key"),
        run.c.status == "succeeded",
        # Executions only: a cache hit repeats an execution's output, and every no-op run adds
        # one per step, which would make this look-up slower with every run.
        run.c.cache_hit.is_(False),
    )
    .order_by(run.c.started_at.desc())
    .limit(_CANDIDATES)
)


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A stored output for a cache key, and the run that produced it."""

    run_id: str
    digest: str
    media_type: str


@dataclass
class StepRecord:
    """What one step did in a pipeline run, as it will be written."""

    run_id: str
    step: str
    succeeded: bool
    cache_hit: bool
    params: dict[str, Any]
    code_digest: str
    env_digest: str
    cache_key: str
    started_at: dt.datetime
    ended_at: dt.datetime
    # (edge name, kind, ref): upstream outputs by parameter name, files by path.
    inputs: list[tuple[str, str, str]] = field(default_factory=list)
    output_digest: str | None = None
    # Set when this run stored a new output, whose artifact row must be written.
    new_artifact: tuple[int, str] | None = None  # (size, media type)
    error: str | None = None
    #: The seed given to random, numpy and the frameworks before the step ran (executed only).
    seed: int | None = None


@dataclass
class PipelineRunRecord:
    """The ``pipeline_run`` row: what a rebuild needs beyond the step rows."""

    params: dict[str, Any]
    seed: int
    git_commit: str | None
    git_dirty: bool | None
    #: (digest, size) of the code snapshot and of the environment document artifacts.
    code_snapshot: tuple[str, int]
    environment: tuple[str, int]
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    succeeded: bool = False


class Recorder:
    """Looks up cached outputs and writes the records of one pipeline run."""

    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        *,
        actor: str,
        pipeline: str,
        pipeline_run_id: str,
    ) -> None:
        self._metadata = metadata
        self._artifacts = artifacts
        self._actor = actor
        self._pipeline = pipeline
        self.pipeline_run_id = pipeline_run_id
        self._pending: list[StepRecord] = []
        self._reading: contextlib.ExitStack | None = None
        self._conn: sa.Connection | None = None

    def lookup(self, cache_key: str) -> CacheHit | None:
        """The newest execution with this cache key whose output is still stored, if any.

        Consecutive look-ups share one read transaction (on PostgreSQL, a connection check-out
        with its ping, BEGIN and COMMIT cost three round trips more than the query itself);
        :meth:`end_read` ends it before a step runs and before anything is written.
        """
        if self._reading is None:
            stack = contextlib.ExitStack()
            self._conn = stack.enter_context(self._metadata.read())
            self._reading = stack
        assert self._conn is not None
        try:
            rows = self._conn.execute(_LOOKUP, {"cache_key": cache_key}).all()
        except BaseException:
            # Through the store's read(), which turns database errors into Conveyor errors.
            self.end_read(*sys.exc_info())
            raise
        for run_id, kind, digest, media_type in rows:
            if kind == "artifact" and self._artifacts.exists(digest):
                return CacheHit(run_id, digest, media_type)
        return None

    def end_read(self, *exc_info: Any) -> None:
        """End the read transaction of the look-ups, if one is open."""
        stack, self._reading, self._conn = self._reading, None, None
        if stack is not None:
            stack.__exit__(*(exc_info or (None, None, None)))

    def add(self, record: StepRecord) -> None:
        self._pending.append(record)

    def flush(self) -> None:
        """Write every pending record in one transaction."""
        self.end_read()
        if not self._pending:
            return
        records, self._pending = self._pending, []
        with self._metadata.write(self._actor) as tx:
            tx.conn.execute(run.insert(), [self._run_row(r) for r in records])
            inputs = [
                {"run_id": r.run_id, "name": name, "kind": kind, "ref": ref}
                for r in records
                for name, kind, ref in r.inputs
            ]
            if inputs:
                tx.conn.execute(run_input.insert(), inputs)
            outputs = [
                {"run_id": r.run_id, "name": r.step, "kind": "artifact", "ref": r.output_digest}
                for r in records
                if r.output_digest is not None
            ]
            if outputs:
                tx.conn.execute(run_output.insert(), outputs)
            insert_ignore(
                tx.conn,
                artifact,
                [
                    {
                        "digest": r.output_digest,
                        "size": r.new_artifact[0],
                        "media_type": r.new_artifact[1],
                        "uri": self._artifacts.location(r.output_digest),
                        "created_at": r.ended_at,
                    }
                    for r in records
                    if r.new_artifact is not None and r.output_digest is not None
                ],
            )
            add_edges(tx.conn, _lineage(records), tx.at)
            for r in records:
                tx.audit(
                    "run.step_completed" if r.succeeded else "run.step_failed",
                    f"run:{r.run_id}",
                    self._audit_payload(r),
                )

    def _run_row(self, r: StepRecord) -> dict[str, Any]:
        return {
            "id": r.run_id,
            "pipeline_run_id": self.pipeline_run_id,
            "pipeline": self._pipeline,
            "step": r.step,
            "status": "succeeded" if r.succeeded else "failed",
            "params": r.params,
            "code_digest": r.code_digest,
            "env_digest": r.env_digest,
            "seed": r.seed,
            "cache_key": r.cache_key,
            "cache_hit": r.cache_hit,
            "error": r.error,
            "started_at": r.started_at,
            "ended_at": r.ended_at,
        }

    def write_pipeline_run(self, p: PipelineRunRecord) -> None:
        """Write the ``pipeline_run`` row and its two artifacts' rows, in one transaction.

        Called once, when the run ends: its status is known then. The artifacts' bytes are
        stored already (content-addressed, so an unchanged project adds no bytes).
        """
        from conveyor.pipeline._provenance import SNAPSHOT_MEDIA_TYPE
        from conveyor.store.metadata.schema import pipeline_run

        self.end_read()
        with self._metadata.write(self._actor) as tx:
            insert_ignore(
                tx.conn,
                artifact,
                [
                    {
                        "digest": digest,
                        "size": size,
                        "media_type": media_type,
                        "uri": self._artifacts.location(digest),
                        "created_at": p.started_at,
                    }
                    for (digest, size), media_type in (
                        (p.code_snapshot, SNAPSHOT_MEDIA_TYPE),
                        (p.environment, ENVIRONMENT_MEDIA_TYPE),
                    )
                ],
            )
            tx.conn.execute(
                pipeline_run.insert(),
                {
                    "id": self.pipeline_run_id,
                    "pipeline": self._pipeline,
                    "status": "succeeded" if p.succeeded else "failed",
                    "params": p.params,
                    "seed": p.seed,
                    "git_commit": p.git_commit,
                    "git_dirty": p.git_dirty,
                    "code_snapshot": p.code_snapshot[0],
                    "environment": p.environment[0],
                    "started_at": p.started_at,
                    "ended_at": p.ended_at,
                },
            )

    def _audit_payload(self, r: StepRecord) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "pipeline": self._pipeline,
            "pipeline_run_id": self.pipeline_run_id,
            "step": r.step,
            "cache_key": r.cache_key,
            "cache_hit": r.cache_hit,
        }
        if r.output_digest is not None:
            payload["output"] = r.output_digest
        if r.error is not None:
            payload["error"] = r.error.splitlines()[0]
        return payload


def _lineage(records: list[StepRecord]) -> Iterator[tuple[str, str, str]]:
    """The lineage edges of executed runs: what each read, and what it produced."""
    for r in records:
        if r.cache_hit:
            continue
        run_node = node("run", r.run_id)
        for _name, kind, ref in r.inputs:
            yield node("dataset" if kind == "file" else kind, ref), run_node, "input"
        if r.output_digest is not None and r.succeeded:
            yield run_node, node("artifact", r.output_digest), "output"
