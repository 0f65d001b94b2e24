"""The models a server answers with: the production version of each, swapped in place.

The registry's routing token changes whenever any stage changes (promote, rollback, a new
version). :meth:`ModelRepository.refresh` compares it with the last one it saw; on a change it
loads the new production versions and then replaces its whole state with one assignment. A
request takes the state (or the :class:`ServedModel`) once and keeps that object to the end, so
a swap never fails or mixes versions within a request. Loading happens before the swap: while a
new version loads, the old one keeps answering, and if it cannot load, the old one stays.

Beside the production version, a model can have a canary (a share of the requests) or a shadow
(a mirrored sample of them) while a rollout runs: the ``routing`` rows of the metadata store say
which (:mod:`conveyor.deploy`). The repository reads them on every poll with the routing token,
loads those versions before it swaps, and keeps serving its last state when the store cannot be
read, so a restarted server resumes the stored routing and a store outage changes nothing.
A canary or shadow that cannot be loaded is left out (all traffic stays on production) and
logged; it never makes the server unready.

A repository made with ``version`` is pinned: it serves one model at that version (any stage)
where the production version would answer, so a version can be served before it is promoted
(the inference test of a promotion gate does this). A version's bundle never changes, so a
pinned repository loads once; if that load fails there is nothing else to serve, and
``refresh`` raises instead of keeping a failure for later polls.

``refresh`` and ``load_version`` do I/O; call them from a worker thread. Everything else only
reads memory and is safe on the event loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
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
from conveyor.deploy.state import read_routing
from conveyor.packaging import load_bundle
from conveyor.server.batching import Batcher
from conveyor.server.errors import ModelNotReadyError
from conveyor.server.features import ServedLookup
from conveyor.server.tensors import tensor_metadata

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from conveyor.deploy import Routing
    from conveyor.packaging import LoadedModel
    from conveyor.registry import ModelVersion
    from conveyor.server.features import OnlineFeatures
    from conveyor.server.metrics import ServerMetrics
    from conveyor.server.recorder import ServingRecorder
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.metadata import MetadataStore

__all__ = ["ModelRepository", "Route", "ServedModel"]

logger = logging.getLogger(__name__)

#: Telemetry roles: requests a version answered, and requests mirrored to it as a shadow.
LIVE_ROLE = "live"
SHADOW_ROLE = "shadow"

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
    # Set when the bundle names a feature service: requests may send entity keys instead.
    lookup: ServedLookup | None = None

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
            lookup=ServedLookup.for_model(model),
        )


@dataclass(frozen=True, slots=True)
class Route:
    """How one model's requests are split: the production version, and a canary or a shadow."""

    stable: ServedModel
    canary: ServedModel | None = None
    canary_weight: float = 0.0
    shadow: ServedModel | None = None
    shadow_sample: float = 0.0

    def pick(self, key: str | None) -> tuple[ServedModel, bool]:
        """The version that answers a request, and whether it is the canary.

        With a key (a user or session id sent by the client) the choice is sticky: the same key
        always lands on the same side for a given weight, and a key on the canary at 5% stays on
        it at 25%. Without one it is a fresh random draw per request.
        """
        canary = self.canary
        if canary is None or self.canary_weight <= 0:
            return self.stable, False
        if self.canary_weight >= 100:
            return canary, True
        point = _bucket(key) if key else random.random() * 100.0  # noqa: S311 (not security)
        return (canary, True) if point < self.canary_weight else (self.stable, False)

    def mirrors(self) -> bool:
        """Whether this request is mirrored to the shadow (a fresh draw per request)."""
        return self.shadow is not None and random.random() < self.shadow_sample  # noqa: S311


def _bucket(key: str) -> float:
    """A routing key's fixed point in [0, 100): the first 8 bytes of its BLAKE2b digest."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100.0


@dataclass(frozen=True)
class _State:
    """Everything a request needs to know, replaced as a whole on every change."""

    token: tuple[int, int] | None = None
    loaded: dict[str, ServedModel] = field(default_factory=dict)
    # Served models whose production version could not be loaded, and why.
    failed: dict[str, str] = field(default_factory=dict)
    # Every registered model -> its version numbers; a model with no production version is here
    # but not in `loaded`.
    known: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # A load failed for a reason that may pass (the store was unreachable): try again next poll.
    retry: bool = False
    # Models with a canary or shadow -> their route; the others route to `loaded` alone.
    routes: dict[str, Route] = field(default_factory=dict)
    routing: dict[str, Routing] = field(default_factory=dict)


class ModelRepository:
    """The production version of each served model, and a few explicitly requested versions.

    Args:
        metadata: The metadata store holding the registry.
        artifacts: The artifact store holding the bundles.
        models: Serve only these models; default: every model with a production version.
        version: Serve this version of the one model in ``models`` instead of its production
            version (see the module docstring).
        metrics: Where the loaded models' batchers record their ``predict`` calls.
        recorder: Where served versions record telemetry for rollout analysis, if anywhere.
        shadow_run_sync: How a shadow's batches run off the event loop (a thread runner with
            its own capacity limit); by default like every other batch.
        online_features: The online store versions with a feature service look their
            features up in (see :mod:`conveyor.server.features`); None: none.

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
        recorder: ServingRecorder | None = None,
        shadow_run_sync: Callable[..., Any] | None = None,
        online_features: OnlineFeatures | None = None,
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
        self._recorder = recorder
        self._shadow_run_sync = shadow_run_sync
        self._online = online_features
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
        routing = {} if self._pinned is not None else read_routing(self._metadata)
        token = (
            registry.routing_token(self._metadata),
            sum(r.generation for r in routing.values()),
        )
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
            reusable = _reusable(previous, name, target.artifact_digest)
            if reusable is not None:
                loaded[name] = reusable
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
        routes, transient = self._routes(previous, routing, loaded)
        retry |= transient
        self._state = _State(token, loaded, failed, known, retry, routes, routing)
        self._log_routes(previous, routes)
        self._log_changes(previous, loaded)
        return True

    def _routes(
        self, previous: _State, routing: dict[str, Routing], loaded: dict[str, ServedModel]
    ) -> tuple[dict[str, Route], bool]:
        """The routes of the models with a canary or shadow; and whether to retry a load."""
        retry = False
        routes: dict[str, Route] = {}
        for name, wanted in routing.items():
            stable = loaded.get(name)
            if stable is None or not wanted.active:
                continue
            canary = shadow = None
            if wanted.canary_version not in (None, stable.version) and wanted.canary_weight > 0:
                canary, transient = self._routed(
                    previous, name, wanted.canary_version, shadow=False
                )
                retry |= transient
            if wanted.shadow_version not in (None, stable.version) and wanted.shadow_sample > 0:
                shadow, transient = self._routed(previous, name, wanted.shadow_version, shadow=True)
                retry |= transient
            if canary is not None or shadow is not None:
                routes[name] = Route(
                    stable, canary, wanted.canary_weight, shadow, wanted.shadow_sample
                )
        return routes, retry

    def _routed(
        self, previous: _State, name: str, version: int | None, *, shadow: bool
    ) -> tuple[ServedModel | None, bool]:
        """A canary or shadow version, reused from the last state when it is the same one;
        (None, whether to retry) when it cannot be loaded: traffic stays on production."""
        assert version is not None
        before = previous.routes.get(name)
        kept = (before.shadow if shadow else before.canary) if before is not None else None
        if kept is not None and kept.version == version:
            return kept, False
        try:
            target = registry.get_version(self._metadata, name, version)
            served = self._load(target, role=SHADOW_ROLE if shadow else LIVE_ROLE)
        except ConveyorError as exc:
            logger.error(
                "model '%s' v%d could not be loaded as the %s: %s; all traffic stays on production",
                name,
                version,
                "shadow" if shadow else "canary",
                exc,
            )
            return None, _transient(exc)
        if shadow and self._shadow_run_sync is not None:
            # Its own batcher, on its own worker threads: a shadow that hangs holds those
            # threads, never the ones that answer clients.
            batcher = Batcher(name, version, served.model, run_sync=self._shadow_run_sync)
            batcher.telemetry = served.batcher.telemetry
            served = dataclasses.replace(served, batcher=batcher)
        return served, False

    def route(self, name: str) -> Route:
        """How ``name``'s requests are split now (its production version alone, usually).

        Raises:
            NotFoundError, ModelNotReadyError: as :meth:`production`.
        """
        state = self._state
        if state is not None:
            route = state.routes.get(name)
            if route is not None:
                return route
        return Route(self.production(name))

    def routed_models(self) -> frozenset[str]:
        """The models with a canary or shadow now (their telemetry is worth storing)."""
        state = self._state
        return frozenset(state.routes) if state is not None else frozenset()

    def served_names(self) -> list[str] | None:
        """The models this server answers for: the ones it was told to serve, else those with
        a production version (loaded or failed to load); None before the first refresh."""
        if self._only is not None:
            return list(self._only)
        state = self._state
        if state is None:
            return None
        return sorted(state.loaded.keys() | state.failed.keys())

    def routing(self) -> dict[str, Routing]:
        """The stored routing as of the last refresh."""
        state = self._state
        return dict(state.routing) if state is not None else {}

    @staticmethod
    def _log_routes(previous: _State, routes: dict[str, Route]) -> None:
        for name, route in routes.items():
            before = previous.routes.get(name)
            if route.canary is not None and (
                before is None
                or before.canary is None
                or (before.canary.version, before.canary_weight)
                != (route.canary.version, route.canary_weight)
            ):
                logger.info(
                    "%s: canary v%d takes %g%% of requests",
                    name,
                    route.canary.version,
                    route.canary_weight,
                )
            if route.shadow is not None and (
                before is None
                or before.shadow is None
                or before.shadow.version != route.shadow.version
            ):
                logger.info(
                    "%s: v%d shadows %g%% of requests",
                    name,
                    route.shadow.version,
                    route.shadow_sample * 100,
                )
        for name in previous.routes.keys() - routes.keys():
            logger.info("%s: all requests go to production again", name)

    def _attach(self, served: ServedModel, role: str | None = None) -> ServedModel:
        # Set here, not passed to ServedModel.load: a loaded version is the same whatever
        # records its calls.
        served.batcher.metrics = self._metrics
        if served.lookup is not None:
            served.lookup.online = self._online
        if role is not None and self._recorder is not None:
            served.batcher.telemetry = self._recorder.telemetry(served.name, served.version, role)
        return served

    def _load(self, target: ModelVersion, role: str | None = LIVE_ROLE) -> ServedModel:
        broken = self._broken.get(target.artifact_digest)
        if broken is not None:
            raise type(broken)(broken.message, hint=broken.hint)
        try:
            return self._attach(ServedModel.load(self._artifacts, target), role)
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


def _reusable(previous: _State, name: str, digest: str) -> ServedModel | None:
    """The loaded version with this bundle, if the last state has it: the production version
    unchanged, or the canary that has just become production (already loaded and warm)."""
    current = previous.loaded.get(name)
    if current is not None and current.digest == digest:
        return current
    route = previous.routes.get(name)
    if route is not None and route.canary is not None and route.canary.digest == digest:
        return route.canary
    return None


def _transient(exc: ConveyorError) -> bool:
    """Whether a failed load may succeed later (the store was unreachable, not the bundle bad)."""
    return isinstance(exc, InfrastructureError) and not isinstance(exc, IntegrityError)
