"""The models a server answers with: the production version of each, swapped in place.

The registry's routing token changes whenever any stage changes (promote, rollback, a new
version). :meth:`ModelRepository.refresh` compares it with the last one it saw; on a change it
loads the new production versions and then replaces its whole state with one assignment. A
request takes the state (or the :class:`ServedModel`) once and keeps that object to the end, so
a swap never fails or mixes versions within a request. Loading happens before the swap: while a
new version loads, the old one keeps answering, and if it cannot load, the old one stays.

A repository made with ``version`` is pinned: it serves one model at that version (any stage)
where the production version would answer, so a version can be served before it is promoted
(the inference test of a promotion gate does this). A version's bundle never changes, so a
pinned repository loads once; if that load fails there is nothing else to serve, and
``refresh`` raises instead of keeping a failure for later polls.

``refresh`` and ``load_version`` do I/O; call them from a worker thread. Everything else only
reads memory and is safe on the event loop.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor import registry
from conveyor.core.errors import (
    ConveyorError,
    InfrastructureError,
    IntegrityError,
    NotFoundError,
    UsageError,
)
from conveyor.packaging import load_bundle
from conveyor.server.batching import Batcher
from conveyor.server.errors import ModelNotReadyError
from conveyor.server.tensors import tensor_metadata

if TYPE_CHECKING:
    from collections.abc import Sequence

    from conveyor.packaging import LoadedModel
    from conveyor.registry import ModelVersion
    from conveyor.server.metrics import ServerMetrics
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

__all__ = ["ModelRepository", "ServedModel"]

logger = logging.getLogger(__name__)

#: Explicitly requested (non-production) versions kept loaded, least recently used evicted.
VERSION_CACHE_SIZE = 4


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One loaded version of a model, with its protocol metadata worked out once."""

    name: str
    version: int
    digest: str
    model: LoadedModel
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    # Each loaded version batches its own requests: after a swap, requests that hold the old
    # version finish on it while new ones queue on the new one.
    batcher: Batcher

    @classmethod
    def load(cls, artifacts: ArtifactStore, version: ModelVersion) -> ServedModel:
        model = load_bundle(artifacts, version.artifact_digest)
        return cls(
            name=version.model,
            version=version.version,
            digest=version.artifact_digest,
            model=model,
            inputs=tensor_metadata(model.signature.inputs),
            outputs=tensor_metadata(model.signature.outputs),
            batcher=Batcher(version.model, version.version, model),
        )


@dataclass(frozen=True)
class _State:
    """Everything a request needs to know, replaced as a whole on every change."""

    token: int | None = None
    loaded: dict[str, ServedModel] = field(default_factory=dict)
    # Served models whose production version could not be loaded, and why.
    failed: dict[str, str] = field(default_factory=dict)
    # Every registered model -> its version numbers; a model with no production version is here
    # but not in `loaded`.
    known: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # A load failed for a reason that may pass (the store was unreachable): try again next poll.
    retry: bool = False


class ModelRepository:
    """The production version of each served model, and a few explicitly requested versions.

    Args:
        metadata: The metadata store holding the registry.
        artifacts: The artifact store holding the bundles.
        models: Serve only these models; default: every model with a production version.
        version: Serve this version of the one model in ``models`` instead of its production
            version (see the module docstring).
        metrics: Where the loaded models' batchers record their ``predict`` calls.

    Raises:
        UsageError: ``version`` is given without exactly one model.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        *,
        models: Sequence[str] | None = None,
        version: int | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        if version is not None and (models is None or len(models) != 1):
            raise UsageError(
                f"serving version {version} needs exactly one model",
                hint="name the model whose version to serve: `--model NAME --version N`",
            )
        self._metadata = metadata
        self._artifacts = artifacts
        self._only = tuple(models) if models is not None else None
        self._pinned = version
        self._metrics = metrics
        self._state: _State | None = None
        self._versions: OrderedDict[tuple[str, int], ServedModel] = OrderedDict()
        self._versions_lock = threading.Lock()
        # One explicit-version load at a time: a burst of requests for a version that is not
        # loaded yet loads it once, instead of once per request (each on a worker thread).
        self._load_lock = threading.Lock()
        # Bundles that failed for good (corrupt, missing, refused): not fetched again.
        self._broken: dict[str, ConveyorError] = {}

    # -- reading (event loop) ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether every model this server should serve has a loaded version."""
        state = self._state
        if state is None or state.failed.keys() - state.loaded.keys():
            return False
        return self._only is None or all(name in state.loaded for name in self._only)

    def production(self, name: str) -> ServedModel:
        """The loaded production version of ``name``.

        Raises:
            NotFoundError: the model is unknown, not served here, or has no production version.
            ModelNotReadyError: it should be served, but no version of it is loaded.
        """
        self._check_served(name)
        state = self._state
        if state is None:
            raise ModelNotReadyError(
                f"model '{name}' is not loaded yet: the server has not read the registry",
                hint="the server retries on every poll; check that the metadata store is up",
            )
        served = state.loaded.get(name)
        if served is not None:
            return served
        if name in state.failed:
            raise ModelNotReadyError(state.failed[name], hint="see the server log")
        if name not in state.known:
            raise NotFoundError(
                f"there is no model '{name}'", hint="see `conveyor model list` for the models"
            )
        raise NotFoundError(
            f"model '{name}' has no production version",
            hint=f"promote a version to production: `conveyor promote {name} <version> "
            "--to production`",
        )

    def versions(self, name: str) -> tuple[int, ...]:
        """The registered version numbers of ``name`` (as of the last refresh)."""
        state = self._state or _State()
        return state.known.get(name, ())

    def cached_version(self, name: str, version: int) -> ServedModel | None:
        """``name`` at ``version`` if it is loaded already (production or cached), else None."""
        self._check_served(name)
        state = self._state
        served = state.loaded.get(name) if state is not None else None
        if served is not None and served.version == version:
            return served
        with self._versions_lock:
            served = self._versions.get((name, version))
            if served is not None:
                self._versions.move_to_end((name, version))
            return served

    def _check_served(self, name: str) -> None:
        if self._only is not None and name not in self._only:
            raise NotFoundError(
                f"model '{name}' is not served here",
                hint=f"this server serves {', '.join(self._only)}; start it with "
                f"`--model {name}` to serve that one",
            )

    # -- loading (worker thread) ---------------------------------------------------------------

    def load_version(self, name: str, version: int) -> ServedModel:
        """Load ``name`` at ``version`` (any stage) and keep it among the cached versions.

        Raises:
            NotFoundError: no such model or version.
            IntegrityError: its bundle is corrupt.
        """
        with self._load_lock:
            cached = self.cached_version(name, version)
            if cached is not None:
                return cached
            target = registry.get_version(self._metadata, name, version)
            served = self._attach(ServedModel.load(self._artifacts, target))
            with self._versions_lock:
                self._versions[(name, version)] = served
                while len(self._versions) > VERSION_CACHE_SIZE:
                    self._versions.popitem(last=False)
            return served

    def refresh(self) -> bool:
        """Load what changed in the registry since the last call; True if anything was swapped.

        Raises:
            InfrastructureError: the metadata store is unreachable (the old state stays).
            ConveyorError: pinned to a version that does not exist or cannot be loaded.
        """
        old = self._state
        token = registry.routing_token(self._metadata)
        if old is not None and token == old.token and not old.retry:
            return False
        previous = old or _State()
        summaries = {m.name: m for m in registry.list_models(self._metadata)}
        # Version numbers are 1, 2, 3 ... with no gaps (the registry serialises registration).
        known = {
            name: tuple(range(1, (m.latest_version or 0) + 1)) for name, m in summaries.items()
        }
        loaded: dict[str, ServedModel] = {}
        failed: dict[str, str] = {}
        retry = False
        for name in self._only if self._only is not None else sorted(known):
            if self._pinned is not None:
                # NotFoundError names the model or version that is missing.
                target = registry.get_version(self._metadata, name, self._pinned)
            elif name not in summaries:
                logger.warning("model '%s' is not registered; nothing to serve for it", name)
                continue
            elif summaries[name].production_version is None:
                continue
            else:
                found = registry.production_version(self._metadata, name)
                if found is None:  # demoted between the two reads; the next poll sees it
                    continue
                target = found
            current = previous.loaded.get(name)
            if current is not None and current.digest == target.artifact_digest:
                loaded[name] = current
                continue
            try:
                loaded[name] = self._load(target)
            except ConveyorError as exc:
                if self._pinned is not None and current is None:
                    raise
                retry |= _transient(exc)
                failed[name] = f"model '{name}' v{target.version} could not be loaded: {exc}"
                if current is not None:
                    loaded[name] = current
                    logger.error("%s; still serving v%d", failed[name], current.version)
                else:
                    logger.error("%s; not serving it", failed[name])
        self._state = _State(token, loaded, failed, known, retry)
        self._log_changes(previous, loaded)
        return True

    def _attach(self, served: ServedModel) -> ServedModel:
        # Set here, not passed to ServedModel.load: a loaded version is the same whatever
        # records its calls.
        served.batcher.metrics = self._metrics
        return served

    def _load(self, target: ModelVersion) -> ServedModel:
        broken = self._broken.get(target.artifact_digest)
        if broken is not None:
            raise type(broken)(broken.message, hint=broken.hint)
        try:
            return self._attach(ServedModel.load(self._artifacts, target))
        except ConveyorError as exc:
            if not _transient(exc):
                self._broken[target.artifact_digest] = exc
            raise

    @staticmethod
    def _log_changes(previous: _State, loaded: dict[str, ServedModel]) -> None:
        for name, served in loaded.items():
            before = previous.loaded.get(name)
            if before is None:
                logger.info("serving %s v%d", name, served.version)
            elif before.version != served.version:
                logger.info("switched %s from v%d to v%d", name, before.version, served.version)
        for name in previous.loaded.keys() - loaded.keys():
            logger.info("stopped serving %s: it has no production version", name)


def _transient(exc: ConveyorError) -> bool:
    """Whether a failed load may succeed later (the store was unreachable, not the bundle bad)."""
    return isinstance(exc, InfrastructureError) and not isinstance(exc, IntegrityError)
