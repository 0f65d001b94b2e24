"""The lookup a model bundle carries: its feature service's values for a batch of entity keys.

A bundle's ``features`` entry (``Manifest.features``) names the exact feature versions the model
was trained with, the entity key, and the TTL of each feature that has one. That is all a server
needs to answer a request that sends only entity keys: :class:`FeatureLookup` reads it back and
fetches the values from the project's online store, one batched read per request (a Redis
pipeline, or one SQLite connection), applying each TTL as training did.

It works from the manifest entry alone, not from the metadata store: a bundle is served with
the versions it records, whatever the registry says now (a deployment with other versions is
refused by :func:`~conveyor.features.check_serving_features` before it gets here).

This module imports neither pandas nor DuckDB.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import InfrastructureError, ValidationError
from conveyor.features._definition import parse_ref
from conveyor.features._serving import to_micros

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from conveyor.features._online import OnlineStore

__all__ = ["FeatureLookup", "MissingEntityError"]

#: Entity keys a message names at most.
_SHOWN = 5


class MissingEntityError(ValidationError):
    """Entity keys the online store has no (fresh enough) value for; a request error (422)."""

    code = "missing_entity"


@dataclass(frozen=True)
class FeatureLookup:
    """How to fetch one bundle's features for entity keys.

    Attributes:
        service: The feature service's name.
        version: The service's version.
        entity: The entity key column (``customer_id``).
        refs: Feature name -> ``name@version``, in the manifest's order.
        ttl_seconds: Feature name -> its TTL; features without one are not here.
    """

    service: str
    version: str
    entity: str
    refs: dict[str, str]
    ttl_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> FeatureLookup:
        """The lookup recorded in a bundle's ``features`` entry.

        Raises:
            ValidationError: the entry is not one a bundle records.
        """
        try:
            refs = {parse_ref(r)[0]: str(r) for r in entry["features"]}
            ttls = {str(k): float(v) for k, v in (entry.get("ttl_seconds") or {}).items()}
            lookup = cls(str(entry["service"]), str(entry["version"]), str(entry["entity"]), refs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(
                f"the bundle's features entry {dict(entry)!r} is not valid ({exc})",
                hint="rebuild the bundle with Model(features=<FeatureService>)",
            ) from exc
        unknown = sorted(ttls.keys() - refs.keys())
        if unknown or any(parse_ref(r)[1] is None for r in refs.values()):
            raise ValidationError(
                f"the bundle's features entry for service '{lookup.service}' is not valid: "
                "each feature needs a version, and TTLs only of its features",
                hint="rebuild the bundle with Model(features=<FeatureService>)",
            )
        return cls(lookup.service, lookup.version, lookup.entity, refs, ttls)

    @property
    def names(self) -> tuple[str, ...]:
        """The feature names: the model's input columns the lookup fills."""
        return tuple(self.refs)

    def fetch(
        self,
        online: OnlineStore,
        keys: Sequence[str],
        *,
        required: Collection[str] | None = None,
        now: dt.datetime | None = None,
    ) -> dict[str, list[Any]]:
        """Each feature's value for each key, in the keys' order: one read for all of them.

        Args:
            online: The project's online store.
            keys: Entity keys, as text (as the online store keeps them).
            required: Features that must have a value for every key (default: all); a
                missing or expired value of another is None.
            now: The time TTLs are applied at (default: the current time).

        Returns:
            Feature name -> one value per key.

        Raises:
            MissingEntityError: a key has no value, or only one older than its TTL, of a
                required feature; naming the keys and the command that writes them.
            InfrastructureError: the online store is unavailable.
        """
        names = self.names
        try:
            found = online.read(keys, [self.refs[n] for n in names])
        except sqlite3.Error as exc:  # Redis errors are InfrastructureError already
            raise InfrastructureError(
                f"the online feature store {online.uri} cannot be read: {exc}",
                hint="check features.online in conveyor.yaml (or CONVEYOR_FEATURES_ONLINE)",
            ) from exc
        oldest = self._oldest(now)
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for got in found:
            for name in names:
                value = got.get(self.refs[name])
                limit = oldest.get(name)
                fresh = value is not None and (limit is None or value[1] >= limit)
                columns[name].append(value[0] if fresh and value is not None else None)
        self._check(keys, columns, names if required is None else tuple(required))
        return columns

    def _oldest(self, now: dt.datetime | None) -> dict[str, int]:
        if not self.ttl_seconds:
            return {}
        at = to_micros(now or dt.datetime.now(dt.UTC))
        return {n: at - round(s * 1_000_000) for n, s in self.ttl_seconds.items()}

    def _check(
        self, keys: Sequence[str], columns: dict[str, list[Any]], required: Sequence[str]
    ) -> None:
        missing: dict[str, list[str]] = {}  # key -> its features without a value
        for name in required:
            for key, value in zip(keys, columns[name], strict=True):
                if value is None:
                    missing.setdefault(key, []).append(name)
        if not missing:
            return
        bad = list(missing)
        shown = ", ".join(repr(k) for k in bad[:_SHOWN])
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        lacking = sorted({n for names in missing.values() for n in names})
        raise MissingEntityError(
            f"no online value of {', '.join(lacking)} for {self.entity} {shown}{more} "
            f"(feature service '{self.service}')",
            hint=f"write the values to the online store: `conveyor features materialize "
            f"{self.service}`; or send the feature columns with the request",
            details={
                "service": self.service,
                "entity": self.entity,
                "keys": bad,
                "features": lacking,
            },
        )
