"""``run_pipeline``: run each step whose cache key has no stored output, skip the others.

A step's cache key is the digest of its name, its code digest (its source and the project code
it reaches), the ``params`` it reads, the digests of its upstream outputs and input files, and
the environment digest. Because upstream outputs enter by digest, a changed parameter re-runs
its step and whatever is downstream of it, unless the re-run produces byte-identical output,
in which case the downstream steps stay cached, as they should.

Cached outputs are not read until something needs them: a downstream step that must run, or
:meth:`PipelineResult.load`. A no-op run therefore reads no artifact at all.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conveyor.core.clock import utcnow
from conveyor.core.digest import canonical_json, digest_json
from conveyor.core.errors import (
    ConfigError,
    ConveyorError,
    InfrastructureError,
    NotFoundError,
    StepError,
    ValidationError,
)
from conveyor.core.ids import new_id
from conveyor.pipeline import _codecs
from conveyor.pipeline._codedigest import CodeDigester
from conveyor.pipeline._executor import OutputRef, StepTask, current_executor
from conveyor.pipeline._filedigest import DigestCache, Stat, path_digest
from conveyor.pipeline._locality import ProjectFiles

if TYPE_CHECKING:
    import concurrent.futures as cf
    import datetime as dt
    from collections.abc import Callable, Iterable, Iterator

    from conveyor.pipeline._executor import Executor, StepFailure, StepOutcome
    from conveyor.pipeline._pipeline import Pipeline
    from conveyor.pipeline._provenance import GitProbe
    from conveyor.pipeline._record import PipelineRunRecord, Recorder, StepRecord
    from conveyor.pipeline._step import Step
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

__all__ = ["PipelineResult", "StepEvent", "StepResult", "run_pipeline"]

logger = logging.getLogger(__name__)

Status = Literal["ran", "cached", "failed"]
# Bump to invalidate every cache key, when what a key means changes.
_KEY_VERSION = 1
_EDGE_NAME_MAX = 128
_DIGEST_CACHE = "file-digests.json"
# conveyor.core.config.DEFAULT_STATE_DIR, which a test compares: importing the config module
# (pydantic, YAML) would cost ~150 ms to a script that only runs a pipeline.
STATE_DIR = ".conveyor"


@dataclass(frozen=True, slots=True)
class StepEvent:
    """Progress of a pipeline run, one per step, sent to ``on_event`` as each step finishes."""

    name: str
    status: Status
    duration_s: float
    cache_key: str
    #: The step's full result, for hooks that need more than progress (lineage events).
    result: StepResult | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a step did in a run: ``ran``, ``cached`` or ``failed``, and its output digest.

    ``run_id`` is the run that produced the output: this run's row when the step ran, and the
    original execution when it was cached (whose id a model version records as its origin, so
    registering a cached model again is the same version). The cache hit itself is recorded as
    a row of its own, found by ``pipeline_run_id``.
    """

    name: str
    status: Status
    duration_s: float
    run_id: str
    cache_key: str
    output_digest: str | None
    #: How the output is encoded (see :mod:`conveyor.pipeline._codecs`), when there is one.
    media_type: str | None = None
    #: What the step read: ``("step", upstream step, output digest)`` and
    #: ``("file", path as configured, content digest)``.
    inputs: tuple[tuple[str, str, str], ...] = ()
    code_digest: str = ""


class _Output:
    """A step's output: its digest always, its value once something needed it."""

    __slots__ = ("digest", "loaded", "media_type", "value")

    def __init__(self, digest: str, media_type: str, value: Any = None, *, loaded: bool = False):
        self.digest = digest
        self.media_type = media_type
        self.value = value
        self.loaded = loaded

    def get(self, artifacts: ArtifactStore) -> Any:
        if not self.loaded:
            self.value = _codecs.decode(artifacts.get_bytes(self.digest), self.media_type)
            self.loaded = True
        return self.value


class _LiveValues(Mapping[str, Any]):
    """Upstream values for an in-process execution: decoded on first use, then kept, as the
    ``_Output`` of each step keeps them. Never pickled (a worker reads by digest)."""

    def __init__(self, outputs: dict[str, _Output], artifacts: ArtifactStore) -> None:
        self._outputs = outputs
        self._artifacts = artifacts

    def __getitem__(self, name: str) -> Any:
        return self._outputs[name].get(self._artifacts)

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)


@dataclass
class PipelineResult:
    """The steps of one pipeline run, and their outputs on demand."""

    pipeline: str
    pipeline_run_id: str
    steps: list[StepResult]
    _outputs: dict[str, _Output] = field(repr=False)
    _artifacts: ArtifactStore = field(repr=False)
    #: The data files and folders the steps read (``files=`` parameters), by absolute path,
    #: each with the stat ``(mtime_ns, size, inode)`` it had before it was digested.
    input_stats: dict[str, Stat] = field(default_factory=dict)

    def load(self, name: str) -> Any:
        """The output of step ``name``, read from the artifact store if it was cached.

        Raises:
            NotFoundError: the pipeline has no step of that name.
        """
        try:
            output = self._outputs[name]
        except KeyError as exc:
            raise NotFoundError(
                f"pipeline '{self.pipeline}' has no step '{name}'",
                hint=f"its steps are: {', '.join(s.name for s in self.steps)}",
            ) from exc
        return output.get(self._artifacts)


@dataclass
class _Plan:
    """A step with its parameters resolved against ``params`` and its files digested."""

    step: Step[..., Any]
    upstream: tuple[str, ...]
    params: dict[str, Any]  # the config params it reads: in the key and the run row
    call_args: dict[str, Any]  # what the function receives besides upstream outputs
    files: dict[str, str] = field(default_factory=dict)  # path as configured -> digest


def run_pipeline(
    pipeline: Pipeline,
    *,
    params: dict[str, Any],
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    actor: str,
    root: Path,
    force: bool = False,
    on_event: Callable[[StepEvent], None] | None = None,
    pipeline_run_id: str | None = None,
    executor: Executor | None = None,
) -> PipelineResult:
    """Run a pipeline: each step runs unless a previous run with its cache key is stored.

    Steps with no path between them in the pipeline may run at the same time, on an executor
    that runs several at once; cache keys, outputs and records are the same on every executor.

    Args:
        pipeline: The pipeline to run.
        params: The ``params:`` of conveyor.yaml; each step receives the keys it names.
        metadata: Where runs, artifacts and audit events are recorded.
        artifacts: Where step outputs are stored.
        actor: Who runs it, for the audit trail.
        root: The project root: relative paths in ``files=`` parameters start here, and the
            code under it is part of each step's code digest.
        force: Run every step, even those with a stored output for their cache key.
        on_event: Called with a :class:`StepEvent` as each step finishes.
        pipeline_run_id: The id of this run (:func:`~conveyor.core.ids.new_id`), for a caller
            that announces the run before it starts; a new one if not given.
        executor: Where the steps execute (see :mod:`conveyor.pipeline._executor`); the one
            of ``using_executor`` in effect if not given, else this process, one step at a time.

    Returns:
        The steps' results, in the pipeline's order (the order they run in-process).

    Raises:
        ConfigError: a parameter is neither a step output, a key of ``params``, nor defaulted.
        NotFoundError: an input file does not exist.
        StepError: a step raised; its run is recorded as failed, the steps that finished as
            done (steps running beside it are waited for), and no further step starts.
        ValidationError: a step returned a value that cannot be stored.
        InfrastructureError: the executor lost a step (a worker died), or cannot run any.
    """
    from conveyor.pipeline._record import Recorder  # SQLAlchemy: only when a pipeline runs

    started = utcnow()
    root = root.resolve()
    digests = DigestCache(root / STATE_DIR / _DIGEST_CACHE)
    digests.load()
    input_stats: dict[str, Stat] = {}
    plans = _plan(pipeline, params, root, input_stats)
    pipeline_run_id = pipeline_run_id or new_id()
    executor = executor if executor is not None else current_executor()
    runner = _Runner(
        pipeline=pipeline,
        recorder=Recorder(
            metadata,
            artifacts,
            actor=actor,
            pipeline=pipeline.name,
            pipeline_run_id=pipeline_run_id,
        ),
        artifacts=artifacts,
        digester=CodeDigester(ProjectFiles(root)),
        force=force,
        on_event=on_event,
        env_digest=executor.env_digest(),
        provenance=_Provenance(root, params, started, executor),
        executor=executor,
        root=root,
    )
    succeeded = False
    try:
        results = runner.run_all(plans)
        succeeded = True
    finally:
        # Whatever happened, the steps that finished are recorded (and stay cached).
        runner.recorder.flush()
        runner.provenance.write(runner.recorder, succeeded=succeeded)
        digests.save()
    return PipelineResult(
        pipeline.name, pipeline_run_id, results, runner.outputs, artifacts, input_stats
    )


@dataclass
class _Running:
    """A step handed to the executor, and what its record needs when it comes back."""

    plan: _Plan
    record: StepRecord
    t0: float


@dataclass
class _Runner:
    pipeline: Pipeline
    recorder: Recorder
    artifacts: ArtifactStore
    digester: CodeDigester
    force: bool
    on_event: Callable[[StepEvent], None] | None
    env_digest: str
    provenance: _Provenance
    executor: Executor
    root: Path
    outputs: dict[str, _Output] = field(default_factory=dict)

    def run_all(self, plans: list[_Plan]) -> list[StepResult]:
        """Hand each step to the executor once its upstream steps are done; the lowest
        pipeline index first, so that one step at a time is exactly the pipeline's order."""
        import concurrent.futures as cf  # ~10 ms, for a run that executes something

        index = {p.step.name: i for i, p in enumerate(plans)}
        waiting = {p.step.name: len(p.upstream) for p in plans}
        downstream: dict[str, list[int]] = {p.step.name: [] for p in plans}
        for i, p in enumerate(plans):
            for up in p.upstream:
                downstream[up].append(i)
        ready = [i for i, p in enumerate(plans) if not p.upstream]
        heapq.heapify(ready)
        results: dict[str, StepResult] = {}
        running: dict[cf.Future[StepOutcome], _Running] = {}
        errors: list[BaseException] = []

        def done(result: StepResult) -> None:
            results[result.name] = result
            for i in downstream[result.name]:
                waiting[plans[i].step.name] -= 1
                if waiting[plans[i].step.name] == 0:
                    heapq.heappush(ready, i)

        def collect(futures: Iterable[cf.Future[StepOutcome]]) -> None:
            for future in sorted(futures, key=lambda f: index[running[f].plan.step.name]):
                try:
                    result = self._complete(running.pop(future), future)
                except BaseException as exc:
                    errors.append(exc)
                else:
                    done(result)

        try:
            while running or (ready and not errors):
                while ready and not errors:
                    plan = plans[heapq.heappop(ready)]
                    started = self._start(plan)
                    if isinstance(started, StepResult):
                        done(started)
                        continue
                    future, pending = started
                    running[future] = pending
                    # In-process, the step has run already: record it before the next starts.
                    collect([f for f in running if f.done()])
                if running:
                    self.recorder.end_read()
                    finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                    collect(finished)
        except BaseException:
            # Interrupted: what is still running on the executor is not recorded, and is
            # cancelled where the executor can (the Dask executor's close cancels the rest).
            for future in running:
                future.cancel()
            raise
        if errors:
            raise errors[0]
        return [results[p.step.name] for p in plans]

    def _start(self, plan: _Plan) -> StepResult | tuple[cf.Future[StepOutcome], _Running]:
        """The cached result of ``plan``'s step, or the future of its execution."""
        from conveyor.pipeline._record import StepRecord

        t0 = time.perf_counter()
        name = plan.step.name
        inputs = {up: self.outputs[up].digest for up in plan.upstream}
        code_digest = self.digester.digest(plan.step)
        key = digest_json(
            {
                "v": _KEY_VERSION,
                "step": name,
                "code": code_digest,
                "params": plan.params,
                "inputs": inputs,
                "files": plan.files,
                "env": self.env_digest,
            }
        )
        started = utcnow()
        record = StepRecord(
            run_id=new_id(),
            step=name,
            succeeded=True,
            cache_hit=False,
            params=plan.params,
            code_digest=code_digest,
            env_digest=self.env_digest,
            cache_key=key,
            started_at=started,
            ended_at=started,
            inputs=[(up, "artifact", d) for up, d in inputs.items()]
            + [(_edge_name(path), "file", d) for path, d in plan.files.items()],
        )
        hit = None if self.force or not plan.step.cache else self.recorder.lookup(key)
        if hit is not None:
            self.outputs[name] = _Output(hit.digest, hit.media_type)
            record.cache_hit = True
            record.output_digest = hit.digest
            return self._finish(record, "cached", t0, plan, produced_by=hit.run_id)

        # No read transaction stays open while user code runs, for minutes perhaps.
        self.recorder.end_read()
        self.provenance.capture(self.artifacts)
        record.seed = self.provenance.step_seed(name)
        task = StepTask(
            name=name,
            module=plan.step.__module__,
            qualname=plan.step.__qualname__,
            root=str(self.root),
            code_digest=code_digest,
            env_digest=self.env_digest,
            kwargs=dict(plan.call_args),
            inputs={
                up: OutputRef(self.outputs[up].digest, self.outputs[up].media_type)
                for up in plan.upstream
            },
            seed=record.seed,
            artifacts=self.artifacts,
            step=plan.step,
            values=_LiveValues(self.outputs, self.artifacts),
        )
        return self.executor.submit(task), _Running(plan, record, t0)

    def _complete(self, pending: _Running, future: cf.Future[StepOutcome]) -> StepResult:
        """Record a step the executor has finished with; raise its failure, if it failed."""
        plan, record, name = pending.plan, pending.record, pending.plan.step.name
        try:
            outcome = future.result()
        except ConveyorError:
            raise  # the step could not start in-process (an unreadable input): as before
        except Exception as exc:
            # The executor lost the step (a worker died, the task was cancelled): recorded
            # failed like a step that raised, but it is the infrastructure's failure.
            summary = _summary(exc)
            record.succeeded = False
            record.error = f"the executor lost the step: {summary}"
            self._finish(record, "failed", pending.t0, plan)
            raise InfrastructureError(
                f"step '{name}' did not finish: the executor lost it ({summary})",
                hint="check the workers (memory, logs) and run again; "
                "the steps that finished stay cached",
                details=self._details(record, summary),
            ) from exc
        failure = outcome.failure
        if failure is None:
            assert outcome.output is not None
            self.outputs[name] = _Output(
                outcome.output.digest,
                outcome.output.media_type,
                outcome.value,
                loaded=outcome.has_value,
            )
            record.output_digest = outcome.output.digest
            record.new_artifact = (outcome.size, outcome.output.media_type)
            result = self._finish(record, "ran", pending.t0, plan)
            # Written now, so that a crash later in the run does not lose this (maybe long) work.
            self.recorder.flush()
            return result
        record.succeeded = False
        record.error = (
            f"{failure.summary}\n\n{failure.traceback}" if failure.traceback else failure.summary
        )
        self._finish(record, "failed", pending.t0, plan)
        raise self._error(failure, record, outcome.exception)

    def _error(
        self, failure: StepFailure, record: StepRecord, cause: BaseException | None
    ) -> ConveyorError:
        error: ConveyorError
        name = record.step
        if failure.kind == "invalid":
            if isinstance(cause, ValidationError):
                return cause  # in-process: the very error, as before
            error = ValidationError(failure.summary, hint=failure.hint, details=failure.details)
        elif failure.kind == "raised":
            details = self._details(record, failure.summary)
            details["traceback"] = failure.traceback
            error = StepError(
                f"step '{name}' failed: {failure.summary}",
                hint="fix the step and run again; the steps that finished stay cached",
                details=details,
            )
        else:
            error = InfrastructureError(
                f"step '{name}' could not run on a worker: {failure.summary}",
                hint=failure.hint,
                details=self._details(record, failure.summary),
            )
        if cause is not None:
            error.__cause__ = cause
            error.__suppress_context__ = True
        return error

    def _details(self, record: StepRecord, summary: str) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline.name,
            "step": record.step,
            "run_id": record.run_id,
            "pipeline_run_id": self.recorder.pipeline_run_id,
            "error": summary,
        }

    def _finish(
        self,
        record: StepRecord,
        status: Status,
        t0: float,
        plan: _Plan,
        *,
        produced_by: str | None = None,
    ) -> StepResult:
        record.ended_at = utcnow()
        self.recorder.add(record)
        duration = time.perf_counter() - t0
        logger.debug(
            "step %s %s in %.1f ms",
            record.step,
            status,
            duration * 1000,
            extra={"step": record.step, "status": status, "cache_key": record.cache_key},
        )
        output = self.outputs.get(record.step)
        result = StepResult(
            record.step,
            status,
            duration,
            produced_by or record.run_id,
            record.cache_key,
            record.output_digest,
            media_type=None if output is None else output.media_type,
            inputs=tuple(("step", up, self.outputs[up].digest) for up in plan.upstream)
            + tuple(("file", path, d) for path, d in plan.files.items()),
            code_digest=record.code_digest,
        )
        if self.on_event is not None:
            self.on_event(StepEvent(record.step, status, duration, record.cache_key, result))
        return result


def _summary(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Provenance:
    """The ``pipeline_run`` record (see :mod:`conveyor.pipeline._provenance`), captured before
    the first step that executes and written when the run ends; a fully cached run has none."""

    def __init__(
        self, root: Path, params: dict[str, Any], started: dt.datetime, executor: Executor
    ) -> None:
        # Imported here: tarfile and subprocess are not needed to load a pipeline module.
        from conveyor.pipeline import _provenance

        self._p = _provenance
        self.root = root
        self.params: dict[str, Any] = json.loads(canonical_json(params))
        self.seed = _provenance.base_seed(self.params)
        self.started = started
        self.record: PipelineRunRecord | None = None
        self.git: GitProbe | None = None
        self.executor = executor

    def capture(self, artifacts: ArtifactStore) -> None:
        if self.record is not None:
            return
        from conveyor.pipeline._record import PipelineRunRecord

        self.git = self._p.GitProbe(self.root)
        snapshot = artifacts.put_bytes(self._p.code_snapshot(self.root))
        environment = artifacts.put_bytes(
            canonical_json(self.executor.environment_document()).encode()
        )
        self.record = PipelineRunRecord(
            params=self.params,
            seed=self.seed,
            git_commit=None,
            git_dirty=None,
            code_snapshot=(snapshot.digest, snapshot.size),
            environment=(environment.digest, environment.size),
            started_at=self.started,
        )

    def step_seed(self, step: str) -> int:
        """The seed of ``step`` in this run; the executor seeds the generators with it."""
        return self._p.step_seed(self.seed, step)

    def write(self, recorder: Recorder, *, succeeded: bool) -> None:
        if self.record is None:
            return
        if self.git is not None:
            self.record.git_commit, self.record.git_dirty = self.git.result()
        self.record.ended_at = utcnow()
        self.record.succeeded = succeeded
        recorder.write_pipeline_run(self.record)


def _plan(
    pipeline: Pipeline, params: dict[str, Any], root: Path, seen: dict[str, Stat]
) -> list[_Plan]:
    """Resolve every step's parameters and files before anything runs, so that a mistake in
    the configuration fails at once, not after an hour of training."""
    missing: list[tuple[str, str]] = []
    plans = []
    for s in pipeline.steps:
        upstream = pipeline.upstream(s.name)
        read: dict[str, Any] = {}
        call_args: dict[str, Any] = {}
        for p in s.params:
            if p.name in upstream:
                continue
            if p.name in params:
                read[p.name] = call_args[p.name] = params[p.name]
            elif not p.has_default:
                missing.append((s.name, p.name))
            elif p.name in s.files:
                call_args[p.name] = p.default
        # Stored as JSON in the run row and hashed into the key: the same values both ways.
        plans.append(_Plan(s, upstream, json.loads(canonical_json(read)), call_args))
    if missing:
        listed = ", ".join(f"'{param}' (step {step_name})" for step_name, param in missing)
        raise ConfigError(
            f"pipeline '{pipeline.name}' needs {_plural(len(missing), 'parameter')} that no step "
            f"produces and `params:` in conveyor.yaml does not set: {listed}",
            hint=f"add `{missing[0][1]}: <value>` under `params:` in conveyor.yaml, "
            "or give the function parameter a default",
            details={"missing": [{"step": st, "param": pa} for st, pa in missing]},
        )
    for plan in plans:
        _resolve_files(plan, root, from_params=set(plan.params), seen=seen)
    return plans


def _resolve_files(
    plan: _Plan, root: Path, *, from_params: set[str], seen: dict[str, Stat]
) -> None:
    s = plan.step
    for name in s.files:
        value = plan.call_args[name]
        where = (
            f"`{name}:` under `params:` in conveyor.yaml"
            if name in from_params
            else f"the default of '{name}' in {s.fn.__module__}.{s.fn.__qualname__}"
        )
        if not isinstance(value, str | os.PathLike):
            raise ConfigError(
                f"step '{s.name}' lists '{name}' in files=, but its value {value!r} is not a path",
                hint=f"set {where} to a path relative to the project root",
            )
        configured = Path(value)
        path = configured if configured.is_absolute() else root / configured
        if not path.exists():
            raise NotFoundError(
                f"step '{s.name}' reads {configured.as_posix()} (param {name}), "
                "which does not exist",
                hint=f"fix {where} (relative paths start at {root}), or create the file",
                details={"step": s.name, "param": name, "path": str(path)},
            )
        plan.files[configured.as_posix()] = path_digest(path, seen)
        # The function gets an absolute path, so it works from any working directory.
        plan.call_args[name] = path if isinstance(value, os.PathLike) else str(path)


def _edge_name(path: str) -> str:
    # run_input.name holds 128 characters; the end of a long path is the telling part.
    return path if len(path) <= _EDGE_NAME_MAX else "..." + path[-(_EDGE_NAME_MAX - 3) :]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
