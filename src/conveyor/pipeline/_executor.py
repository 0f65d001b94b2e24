"""Executors: where a pipeline's steps execute, while the run itself stays in one place.

``run_pipeline`` is the coordinator. It computes every cache key, looks up cached outputs,
decides which steps are ready (all their upstream steps finished) and writes every record of
the metadata store: runs, edges, artifacts, lineage and the audit trail. An :class:`Executor`
only executes the steps it is handed, as many at once as it can; steps with no path between
them in the DAG are handed over together, so they run in parallel.

A step task travels to a worker as names and digests, never as values:

- the step's function as its module and qualified name, imported on the worker (afresh when
  the step's code digest changes, so a long-lived worker never runs yesterday's code);
- its upstream outputs as artifact digests, which the worker reads from the artifact store;
- its output goes the same way back: the worker encodes it and writes it to the artifact store
  under its digest, and returns the digest, size and media type.

So the artifact store must be reachable from the workers (a shared folder, S3...), and the
metadata store need not be. A step that raises on a worker comes back as a
:class:`StepFailure` (type, message, traceback as text), not as a pickled exception, which
might not even unpickle where the project's exception classes are not importable.

The environment digest in each cache key is the workers' (:meth:`Executor.env_digest`), and a
worker checks it before running a task: an output is never stored under the key of an
environment other than the one that computed it.

:class:`InProcessExecutor` is the default and does what ``run_pipeline`` always did: it runs a
step when it is handed over, in this process, with upstream values passed in memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from conveyor.core.errors import ConveyorError, UsageError, ValidationError
from conveyor.pipeline import _codecs, _env

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Iterator, Mapping

    from conveyor.pipeline._step import Step
    from conveyor.store.artifacts import ArtifactStore

__all__ = [
    "Executor",
    "InProcessExecutor",
    "OutputRef",
    "ProcessExecutor",
    "StepFailure",
    "StepOutcome",
    "StepTask",
    "current_executor",
    "execute",
    "executor_for",
    "using_executor",
]

FailureKind = Literal["raised", "invalid", "environment", "unavailable"]

_CURRENT: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "conveyor_executor", default=None
)
# Steps resolved by this (worker) process, by root, module, qualname and code digest.
_RESOLVED: dict[tuple[str, str, str, str], Step[..., Any]] = {}
_RESOLVED_MAX = 256
_RESOLVE_LOCK = threading.Lock()
# One step at a time per process: a step is seeded through the process-global generators
# (random, numpy), which a second step on another thread would reseed under its feet.
_STEP_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class OutputRef:
    """A stored step output: its artifact digest and how it is encoded."""

    digest: str
    media_type: str


@dataclass
class StepTask:
    """One step to execute: everything a worker needs, as names, digests and plain data.

    ``step`` and ``values`` are the coordinator's live objects, which an in-process executor
    uses as they are (no import, no decoding); they are dropped when the task is pickled.
    """

    name: str
    module: str
    qualname: str
    #: The coordinator's project root; a worker that sees the same folder imports from it.
    root: str
    code_digest: str
    env_digest: str
    #: What the function receives besides upstream outputs: params and file paths.
    kwargs: dict[str, Any]
    inputs: dict[str, OutputRef]
    seed: int
    artifacts: ArtifactStore
    step: Step[..., Any] | None = None
    values: Mapping[str, Any] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["step"] = None
        state["values"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@dataclass(frozen=True, slots=True)
class StepFailure:
    """Why a step produced no output, as text that crosses process boundaries.

    ``kind``: ``raised`` (the step's code raised), ``invalid`` (it returned a value that
    cannot be stored), ``environment`` (the worker's environment is not the one in the cache
    key) or ``unavailable`` (the worker could not import the step or read its inputs).
    """

    kind: FailureKind
    summary: str
    traceback: str = ""
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutcome:
    """What executing a step gave: its stored output, or a failure.

    ``value`` and ``exception`` are set by an in-process execution only (the live output, and
    the exception the step raised) and never pickled.
    """

    name: str
    output: OutputRef | None = None
    size: int = 0
    failure: StepFailure | None = None
    value: Any = None
    has_value: bool = False
    exception: BaseException | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(value=None, has_value=False, exception=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@runtime_checkable
class Executor(Protocol):
    """Executes step tasks; ``run_pipeline`` decides which, and when.

    An implementation must be safe to hand several tasks before any finishes, and must return
    a future that completes with the :class:`StepOutcome` of :func:`execute` on the task (or
    fails with an exception when the task could not run at all: a lost worker, say).
    """

    def env_digest(self) -> str:
        """The environment digest of the workers, which every cache key contains.

        Raises:
            InfrastructureError: the workers cannot be reached, or run different environments.
        """

    def environment_document(self) -> dict[str, Any]:
        """The workers' environment, readable (see :mod:`conveyor.pipeline._env`)."""

    def submit(self, task: StepTask) -> cf.Future[StepOutcome]:
        """Start executing ``task``; the future completes when it has."""


def execute(task: StepTask) -> StepOutcome:
    """Execute one step task where this function runs: on a worker, or in this process.

    Reads the upstream outputs, seeds the random generators, calls the step's function,
    encodes its value and stores it in the artifact store. Never raises for what the step did:
    its exception or unstorable value becomes the outcome's :class:`StepFailure`. Steps run
    one at a time per process (the generators are process-global): parallelism comes from
    worker processes, not threads.
    """
    from conveyor.pipeline._provenance import seed_everything

    local = task.step is not None
    if not local and task.env_digest != _env.env_digest():
        return StepOutcome(
            task.name,
            failure=StepFailure(
                "environment",
                f"the worker's environment ({_env.env_digest()}) is not the one of the run "
                f"({task.env_digest})",
                hint="install the same Python and packages on every worker (see docs/dask.md)",
            ),
        )
    try:
        step = task.step if task.step is not None else _resolve(task)
        kwargs = dict(task.kwargs)
        for name, ref in task.inputs.items():
            if name in task.values:
                kwargs[name] = task.values[name]
            else:
                kwargs[name] = _codecs.decode(task.artifacts.get_bytes(ref.digest), ref.media_type)
    except ConveyorError as exc:
        if local:
            raise
        return StepOutcome(task.name, failure=_unavailable(exc))
    with _STEP_LOCK:
        seed_everything(task.seed)
        try:
            value = step.fn(**kwargs)
        except Exception as exc:
            text = str(exc).strip()
            summary = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            failure = StepFailure("raised", summary, _user_traceback(exc))
            return StepOutcome(task.name, failure=failure, exception=exc if local else None)
    try:
        data, media_type = _codecs.encode(value, step=task.name)
    except ValidationError as exc:
        failure = StepFailure("invalid", exc.message, hint=exc.hint, details=exc.details)
        return StepOutcome(task.name, failure=failure, exception=exc if local else None)
    stored = task.artifacts.put_bytes(data)
    return StepOutcome(
        task.name,
        output=OutputRef(stored.digest, media_type),
        size=stored.size,
        value=value if local else None,
        has_value=local,
    )


def _unavailable(exc: ConveyorError) -> StepFailure:
    return StepFailure("unavailable", exc.message, hint=exc.hint, details=exc.details)


def _user_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    # The first frame is execute()'s call into the step; the user's code starts after it.
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _resolve(task: StepTask) -> Step[..., Any]:
    """The task's step, imported in this process; afresh when its code digest is new here.

    When the coordinator's project root is a folder here too (a local cluster, a shared
    file system), the project's modules are imported from it as ``load_pipeline`` does;
    otherwise the project must be installed on the worker.

    Raises:
        ConfigError: the step's module cannot be imported here.
    """
    from conveyor.core.errors import ConfigError
    from conveyor.pipeline._loader import _forget_project_modules
    from conveyor.pipeline._locality import ProjectFiles
    from conveyor.pipeline._step import _import_step

    key = (task.root, task.module, task.qualname, task.code_digest)
    with _RESOLVE_LOCK:
        step = _RESOLVED.get(key)
        if step is not None:
            return step
        root = Path(task.root)
        if root.is_dir():
            files = ProjectFiles(root)
            _forget_project_modules(files, task.module.split(".")[0])
            while files.root.as_posix() in sys.path:
                sys.path.remove(files.root.as_posix())
            sys.path.insert(0, files.root.as_posix())
        try:
            step = _import_step(task.module, task.qualname)
        except Exception as exc:
            raise ConfigError(
                f"a worker cannot import step '{task.name}' ({task.module}.{task.qualname}): "
                f"{type(exc).__name__}: {exc}",
                hint="install the project's code on the workers, or run them where the "
                f"project folder {task.root} is (see docs/dask.md)",
            ) from exc
        if len(_RESOLVED) >= _RESOLVED_MAX:
            _RESOLVED.clear()
        _RESOLVED[key] = step
        return step


class InProcessExecutor:
    """Runs each step in this process as soon as it is handed over: one at a time, in the
    pipeline's order. The default."""

    def env_digest(self) -> str:
        return _env.env_digest()

    def environment_document(self) -> dict[str, Any]:
        return _env.environment_document()

    def submit(self, task: StepTask) -> cf.Future[StepOutcome]:
        import concurrent.futures as cf  # ~10 ms: not for a script that only imports a step

        future: cf.Future[StepOutcome] = cf.Future()
        try:
            future.set_result(execute(task))
        except BaseException as exc:
            # KeyboardInterrupt included: the coordinator records what finished, then re-raises.
            future.set_exception(exc)
        return future


class ProcessExecutor:
    """Runs steps in up to ``jobs`` worker processes of this machine (``--jobs N``).

    The processes are started (with ``spawn``: no fork of a threaded process) when the first
    step is handed over, so a fully cached run starts none. They share this machine's
    interpreter and packages, hence its environment digest, and its artifact store.

    Args:
        jobs: How many steps may run at once.

    Raises:
        UsageError: ``jobs`` is less than 1.
    """

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise UsageError(f"--jobs {jobs}: the number of processes must be at least 1")
        self.jobs = jobs
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def env_digest(self) -> str:
        return _env.env_digest()

    def environment_document(self) -> dict[str, Any]:
        return _env.environment_document()

    def submit(self, task: StepTask) -> cf.Future[StepOutcome]:
        check_shared(task.artifacts)
        with self._lock:
            if self._pool is None:
                import concurrent.futures as cf
                import multiprocessing

                self._pool = cf.ProcessPoolExecutor(
                    self.jobs, mp_context=multiprocessing.get_context("spawn")
                )
            pool = self._pool
        return pool.submit(execute, task)

    def close(self) -> None:
        """Stop the worker processes, once the steps handed over have finished."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def check_shared(artifacts: ArtifactStore) -> None:
    """Refuse an artifact store that lives in this process's memory: workers cannot see it.

    Raises:
        UsageError: the store is ``memory://``.
    """
    if artifacts.uri == "memory://":
        raise UsageError(
            "the artifact store memory:// lives in this process, out of the workers' reach",
            hint="use a folder or an object store (CONVEYOR_ARTIFACTS), or run in-process",
        )


def current_executor() -> Executor:
    """The executor of :func:`using_executor` in effect, else a new in-process one."""
    return _CURRENT.get() or InProcessExecutor()


@contextlib.contextmanager
def using_executor(executor: Executor) -> Iterator[Executor]:
    """Make ``executor`` the one ``run_pipeline`` uses when it is given none, in this block.

    This is how a face chooses the executor of a run whose ``run_pipeline`` call sits in a
    service function (``conveyor run --executor``), much as ``dask.config.set`` does.
    """
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def executor_for(spec: str | None, *, jobs: int | None = None) -> Iterator[Executor]:
    """Open the executor named by ``--executor`` and ``--jobs``; close it after the block.

    ``spec``: ``None`` or ``local`` (in this process; with ``jobs`` > 1, a process pool),
    ``processes`` (a process pool of ``jobs`` processes, default the CPU count), ``dask`` (a
    ``distributed.LocalCluster`` of ``jobs`` worker processes, started for the run) or
    ``dask://HOST:PORT`` (the Dask scheduler there; also ``tcp://`` and ``tls://``).

    Raises:
        UsageError: the spec is not one of these, or ``jobs`` is given with a scheduler.
        InfrastructureError: the scheduler cannot be reached.
        ConfigError: ``dask``/``distributed`` are not installed.
    """
    import os

    if spec in (None, "", "local"):
        if jobs is None or jobs == 1:
            yield InProcessExecutor()
            return
        spec = "processes"
    if spec == "processes":
        pool = ProcessExecutor(jobs if jobs is not None else os.cpu_count() or 1)
        try:
            yield pool
        finally:
            pool.close()
        return
    if spec == "dask" or spec.startswith(("dask://", "tcp://", "tls://")):
        from conveyor.pipeline._dask import DaskExecutor

        address = None if spec == "dask" else spec
        if address is not None and jobs is not None:
            raise UsageError(
                f"--jobs applies to a local cluster, not to the scheduler at {address}",
                hint="size the cluster where it runs, or use `--executor dask --jobs N`",
            )
        dask_executor = DaskExecutor(address, workers=jobs)
        try:
            yield dask_executor
        finally:
            dask_executor.close()
        return
    raise UsageError(
        f"--executor {spec!r} is not an executor",
        hint="use local, processes, dask (a local Dask cluster) or dask://HOST:PORT",
    )
