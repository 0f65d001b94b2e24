"""``FeatureStore``: a project's feature store, the one object the CLI and users' code call.

It ties the metadata store (definitions, services, lineage), the offline store (Parquet under
``<project>/.conveyor/features/offline``) and the online store (``features.online`` in
conveyor.yaml or ``CONVEYOR_FEATURES_ONLINE``, else SQLite under ``.conveyor/``) together, and
loads the project's definitions: every ``Feature`` and ``FeatureService`` at the top level of
``features/*.py`` (or of a module path).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import NotFoundError, UsageError
from conveyor.features._definition import Feature, FeatureService, ServiceRecord, as_record
from conveyor.features._frames import compute
from conveyor.features._offline import OfflineStore
from conveyor.features._online import open_online_store
from conveyor.features._records import (
    get_service,
    link_dataset,
    register_feature,
    register_service,
)
from conveyor.features._serving import Materialized, get_online_features, materialize

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    import pandas as pd

    from conveyor.features._governance import FeatureSkew
    from conveyor.features._online import OnlineStore
    from conveyor.store.metadata import MetadataStore

__all__ = [
    "Applied",
    "Definitions",
    "FeatureStore",
    "load_definitions",
]


@dataclass(frozen=True)
class Definitions:
    """The features and services a project defines."""

    features: tuple[Feature, ...]
    services: tuple[FeatureService, ...]


@dataclass(frozen=True)
class Applied:
    """What :meth:`FeatureStore.apply` did: refs newly registered, and values computed."""

    registered: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    computed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "registered": self.registered,
            "unchanged": self.unchanged,
            "computed": self.computed,
        }


def load_definitions(where: Path | str) -> Definitions:
    """The Feature and FeatureService objects at the top level of ``where``.

    Args:
        where: A project folder (its ``features/*.py`` are read), a ``.py`` file, or a dotted
            module path.

    Raises:
        NotFoundError: no such folder, file or module.
        UsageError: nothing defined there.
    """
    modules: list[Any] = []
    path = Path(where)
    if path.is_dir():
        files = sorted((path / "features").glob("*.py"))
        modules = [_import_file(p) for p in files if not p.name.startswith("_")]
    elif path.suffix == ".py":
        if not path.is_file():
            raise NotFoundError(f"feature definitions {path} do not exist", hint="check the path")
        modules = [_import_file(path)]
    else:
        try:
            modules = [importlib.import_module(str(where))]
        except ImportError as exc:
            raise NotFoundError(
                f"cannot import feature definitions from {where}: {exc}",
                hint="give a project folder, a .py file or an importable module path",
            ) from exc
    features: dict[str, Feature] = {}
    services: dict[str, FeatureService] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Feature):
                features.setdefault(value.ref, value)
            elif isinstance(value, FeatureService):
                services.setdefault(value.name, value)
                for f in value.features:
                    features.setdefault(f.ref, f)
    if not features:
        raise UsageError(
            f"no Feature definitions found in {where}",
            hint="define them at the top level of features/*.py: "
            "`amount_30d = Feature(name=..., entity=..., dtype=..., transform=...)`",
        )
    return Definitions(tuple(features.values()), tuple(services.values()))


def _import_file(path: Path) -> Any:
    name = f"conveyor_features_{abs(hash(str(path.resolve())))}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NotFoundError(f"cannot load {path}", hint="check that it is a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


class FeatureStore:
    """A project's feature store.

    Args:
        metadata: The project's metadata store.
        root: The project folder (relative sources and the default stores are under it).
        online: The online store, or its spec (see :func:`open_online_store`; the project's
            ``features.online``); default: SQLite under ``.conveyor/``.
        offline: The offline store's root folder, relative to ``root`` or absolute (the
            project's ``features.offline``); default: ``<root>/.conveyor/features/offline``.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        root: Path | str,
        *,
        online: OnlineStore | str | None = None,
        offline: Path | str | None = None,
    ) -> None:
        self.metadata = metadata
        self.root = Path(root)
        folder = offline
        self.offline = OfflineStore(
            self.root / (folder or Path(".conveyor") / "features" / "offline")
        )
        self._online_spec = online
        self._online: OnlineStore | None = None if isinstance(online, str | None) else online

    @property
    def online(self) -> OnlineStore:
        """The online store, opened on first use."""
        if self._online is None:
            spec = self._online_spec
            spec = spec if isinstance(spec, str) else None
            self._online = open_online_store(spec, root=self.root)
        return self._online

    def close(self) -> None:
        if self._online is not None:
            self._online.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def service(self, ref: str | FeatureService | ServiceRecord) -> ServiceRecord:
        """A registered service by ``name[@version]``, or the given one as a record."""
        return get_service(self.metadata, ref) if isinstance(ref, str) else as_record(ref)

    def apply(
        self,
        definitions: Definitions,
        *,
        actor: str,
        data: dict[str, pd.DataFrame] | None = None,
    ) -> Applied:
        """Register the definitions and compute each feature's offline values from its source.

        Args:
            definitions: What to register (see :func:`load_definitions`).
            actor: Who registers them (audited).
            data: Feature name -> source rows, instead of reading its ``source`` file.

        Raises:
            MissingColumnError, NullEntityError, TimezonePolicyError: bad source data.
            NotFoundError: a source file that does not exist.
        """
        from conveyor.data.reading import read_dataset
        from conveyor.data.versions import dataset_digest, register_dataset

        applied = Applied()
        for f in definitions.features:
            new = register_feature(self.metadata, f, actor=actor)
            (applied.registered if new else applied.unchanged).append(f.ref)
            given = (data or {}).get(f.name)
            if given is None and f.source is None:
                continue
            if given is not None:
                frame, source = given, given
            else:
                assert f.source is not None
                source = self.root / f.source
                frame = read_dataset(source)
            digest = dataset_digest(source)
            values = compute(f, frame, what=f.source or "the given data")
            self.offline.write(f.record(), values, source_digest=digest)
            register_dataset(self.metadata, source, name=f"features/{f.name}", actor=actor)
            link_dataset(self.metadata, f.record(), digest, actor=actor)
            applied.computed[f.ref] = len(values)
        for s in definitions.services:
            new = register_service(self.metadata, s, actor=actor)
            (applied.registered if new else applied.unchanged).append(f"{s.name}@{s.version}")
        return applied

    def materialize(
        self,
        service: str | FeatureService | ServiceRecord,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> Materialized:
        """Copy the service's latest offline values in ``[start, end)`` online."""
        return materialize(self.offline, self.online, self.service(service), start=start, end=end)

    def training_set(
        self,
        service: str | FeatureService | ServiceRecord,
        labels: pd.DataFrame,
        *,
        timestamp: str = "event_timestamp",
        timezone: str | None = None,
    ) -> pd.DataFrame:
        """Point-in-time correct features for each label row (see ``OfflineStore``)."""
        record = self.service(service)
        return self.offline.training_set(
            record.features, labels, timestamp=timestamp, timezone=timezone
        )

    def get_online_features(
        self,
        service: str | FeatureService | ServiceRecord,
        entity_keys: Sequence[Any],
        *,
        features: Sequence[str] | None = None,
        as_frame: bool = False,
    ) -> dict[str, dict[str, Any]] | pd.DataFrame:
        """The service's online values for ``entity_keys`` (see ``get_online_features``)."""
        return get_online_features(
            self.online,
            self.service(service),
            entity_keys,
            features=features,
            as_frame=as_frame,
        )

    def skew(
        self,
        service: str | FeatureService | ServiceRecord,
        *,
        entity_keys: Sequence[Any] | None = None,
        at: dt.datetime | None = None,
    ) -> list[FeatureSkew]:
        """Online against offline values (see :func:`skew_check`)."""
        from conveyor.features._governance import skew_check

        return skew_check(
            self.offline, self.online, self.service(service), entity_keys=entity_keys, at=at
        )
