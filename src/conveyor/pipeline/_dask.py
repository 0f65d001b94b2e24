"""The Dask executor: pipeline steps run on a ``distributed`` cluster.

Two ways to get a cluster: the scheduler at an address (``--executor dask://HOST:PORT``),
connected to at once so that an unreachable scheduler fails the command before anything is
recorded; or a ``distributed.LocalCluster`` of worker processes on this machine
(``--executor dask``), started when the first step is handed over, so a fully cached run
starts nothing, and stopped when the run ends.

Dask does no scheduling of its own here: a step is submitted when its upstream steps have
finished (see :mod:`conveyor.pipeline._executor`), as one task with no Dask dependencies, and
its output goes through the artifact store. ``dask`` and ``distributed`` are the optional
extra ``conveyor[dask]``, imported only when a Dask executor is opened.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConfigError, InfrastructureError
from conveyor.pipeline import _env
from conveyor.pipeline._executor import StepOutcome, StepTask, check_shared, execute

if TYPE_CHECKING:
    import concurrent.futures as cf

    from distributed import Client, LocalCluster

__all__ = ["DaskExecutor"]

_SCHEMES = ("dask://", "tcp://", "tls://")


class DaskExecutor:
    """Runs steps as tasks on a Dask cluster; each worker process runs one step at a time.

    Args:
        address: The scheduler, ``dask://HOST:PORT`` (or ``tcp://``, ``tls://``); ``None``
            for a local cluster started for this executor.
        workers: The local cluster's worker processes (default: Dask's, one per core).
        connect_timeout: Seconds to wait for the scheduler (default: Dask's
            ``distributed.comm.timeouts.connect``, 30 s).

    Raises:
        ConfigError: ``dask``/``distributed`` are not installed.
        InfrastructureError: the scheduler cannot be reached, has no workers, or its workers
            run different environments.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        _import_distributed()
        self.address = address
        self._workers = workers
        self._lock = threading.Lock()
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None
        self._environment: dict[str, Any] | None = None
        self._running: set[Any] = set()
        self._log_level = logging.NOTSET
        if address is not None:
            self._client = _connect(address, connect_timeout)
            try:
                self._environment = _cluster_environment(self._client, address)
            except BaseException:
                self.close()
                raise

    def env_digest(self) -> str:
        return str(self.environment_document()["env_digest"])

    def environment_document(self) -> dict[str, Any]:
        # A local cluster's workers are spawned from this interpreter with this sys.path: its
        # environment is this one, known without starting it (and each task checks anyway).
        return self._environment if self._environment is not None else _env.environment_document()

    def submit(self, task: StepTask) -> cf.Future[StepOutcome]:
        check_shared(task.artifacts)
        client = self._ensure_client()
        # Not pure: the same step may legitimately run twice (--force), and no Dask key may
        # stand in for Conveyor's cache.
        dask_future = client.submit(
            execute, task, key=f"conveyor-step-{task.name}-{uuid.uuid4().hex}", pure=False
        )
        import concurrent.futures as cf

        relay: cf.Future[StepOutcome] = cf.Future()
        with self._lock:
            self._running.add(dask_future)

        def done(f: Any) -> None:
            with self._lock:
                self._running.discard(f)
            try:
                relay.set_result(f.result())
            except BaseException as exc:  # a lost worker, a cancelled task: the runner decides
                relay.set_exception(exc)

        dask_future.add_done_callback(done)  # type: ignore[no-untyped-call]
        return relay

    def close(self) -> None:
        """Cancel the steps still running, disconnect, and stop a cluster started here."""
        with self._lock:
            running, self._running = list(self._running), set()
            client, self._client = self._client, None
            cluster, self._cluster = self._cluster, None
        if client is not None:
            if running:
                client.cancel(running)  # type: ignore[no-untyped-call]
            client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()
            logging.getLogger("distributed").setLevel(self._log_level)

    def _ensure_client(self) -> Client:
        with self._lock:
            if self._client is None:
                distributed = _import_distributed()
                # The cluster's scheduler runs in this process, and Dask sets its loggers to
                # INFO: they follow the level the entry point configured while it runs.
                dask_logger = logging.getLogger("distributed")
                self._log_level = dask_logger.level
                dask_logger.setLevel(max(dask_logger.level, logging.getLogger().level))
                self._cluster = distributed.LocalCluster(
                    n_workers=self._workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",  # any free port: never a clash
                )
                self._client = distributed.Client(self._cluster, set_as_default=False)
            return self._client


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError(
            "the Dask executor needs the packages dask and distributed, which are not installed",
            hint="pip install 'conveyor[dask]'",
        ) from exc
    return distributed


def _connect(address: str, timeout: float | None) -> Client:
    distributed = _import_distributed()
    target = address
    if address.startswith("dask://"):
        target = "tcp://" + address.removeprefix("dask://")
    try:
        # Dask refuses timeout=None; left out, its configured connect timeout applies.
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        client: Client = distributed.Client(target, set_as_default=False, **options)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InfrastructureError(
            f"cannot reach the Dask scheduler at {address}: {reason}",
            hint="start it (`dask scheduler`) or fix the address given to --executor",
            details={"address": address},
        ) from exc
    return client


def _cluster_environment(client: Client, address: str) -> dict[str, Any]:
    """The one environment every worker runs.

    Raises:
        InfrastructureError: there are no workers, or they run different environments.
    """
    documents: dict[str, dict[str, Any]] = client.run(_env.environment_document)
    if not documents:
        raise InfrastructureError(
            f"the Dask scheduler at {address} has no workers",
            hint=f"start some (`dask worker {address.removeprefix('dask://')}`), or keep an "
            "adaptive cluster's minimum at 1 or more",
            details={"address": address},
        )
    by_digest: dict[str, list[str]] = {}
    for worker, document in sorted(documents.items()):
        by_digest.setdefault(str(document["env_digest"]), []).append(worker)
    if len(by_digest) > 1:
        groups = "; ".join(f"{len(ws)} with {d}" for d, ws in sorted(by_digest.items()))
        raise InfrastructureError(
            f"the workers of the Dask scheduler at {address} run {len(by_digest)} different "
            f"environments ({groups}), so a step's cache key would depend on where it ran",
            hint="install the same Python and packages on every worker (see docs/dask.md)",
            details={"address": address, "environments": by_digest},
        )
    return next(iter(documents.values()))
