"""Feature definitions in Python, versioned by what they compute.

A feature's version is the digest of everything that decides its values: the transformation's
*normalised* source (its syntax tree, so comments, blank lines, the docstring and the function's
own name do not count, while any change of logic does), its parameters, dtype, entity key,
source and timestamp column, and the timezone policy. Change one and the feature gets a new
version; the old one stays addressable as ``name@version``. The TTL is not part of it: it
decides which values a lookup accepts, not the values themselves, and is recorded beside.

A service's version is the digest of its exact feature versions, so "the features model X was
trained with" is one string that a deployment can compare.

A transformation takes the source rows as a DataFrame (and the parameters as keywords) and
returns one value per row. Values a transformation reads from outside (module globals, closures)
are not in the digest: pass them as ``params``.

This module imports neither pandas nor DuckDB.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import sys
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.core.digest import digest_json
from conveyor.core.errors import ValidationError
from conveyor.core.names import validate_name
from conveyor.features.errors import UnknownFeatureError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "DTYPES",
    "Feature",
    "FeatureRecord",
    "FeatureService",
    "ServiceRecord",
    "parse_ref",
    "short",
]

#: The value types a feature may have (numpy/pandas dtype names; ``string`` is text).
DTYPES = ("float64", "float32", "int64", "int32", "bool", "string")
DEFAULT_TIMESTAMP = "event_timestamp"


def short(version: str) -> str:
    """A version for display: the first 12 hex digits of its digest."""
    return version.partition(":")[2][:12] or version[:12]


def parse_ref(text: str) -> tuple[str, str | None]:
    """``name@version`` (version possibly a prefix, with or without ``blake3:``) -> parts."""
    name, sep, version = text.partition("@")
    return name, (version or None) if sep else None


@dataclass(frozen=True)
class FeatureRecord:
    """What the store knows of one feature version; enough to read, serve and check it.

    Attributes:
        name: Feature name.
        version: ``blake3:`` digest of its definition.
        entity: The entity key column.
        dtype: One of :data:`DTYPES`.
        timestamp: The event-timestamp column of its source.
        ttl_seconds: Values older than this (at lookup) count as missing; None: no limit.
        source: The data it is computed from (a path relative to the project), if any.
        owner: Who answers for it.
        description: What it means.
        created_at: When it was first registered (None before registration).
    """

    name: str
    version: str
    entity: str
    dtype: str
    timestamp: str = DEFAULT_TIMESTAMP
    ttl_seconds: float | None = None
    source: str | None = None
    owner: str | None = None
    description: str | None = None
    created_at: dt.datetime | None = None

    @property
    def ref(self) -> str:
        """``name@version``, the feature node's reference in lineage."""
        return f"{self.name}@{self.version}"

    @property
    def ttl(self) -> dt.timedelta | None:
        return None if self.ttl_seconds is None else dt.timedelta(seconds=self.ttl_seconds)


@dataclass(frozen=True)
class ServiceRecord:
    """A feature service at one version: the exact feature versions one model uses."""

    name: str
    version: str
    features: tuple[FeatureRecord, ...]
    owner: str | None = None
    description: str | None = None
    created_at: dt.datetime | None = None

    @property
    def entity(self) -> str:
        return self.features[0].entity

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(f.ref for f in self.features)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def feature(self, name: str) -> FeatureRecord:
        """The feature ``name`` of this service.

        Raises:
            UnknownFeatureError: the service does not contain it.
        """
        for f in self.features:
            if f.name == name:
                return f
        raise UnknownFeatureError(
            f"feature service '{self.name}' has no feature '{name}'",
            hint=f"its features are: {', '.join(f.name for f in self.features)}",
            details={"service": self.name, "feature": name},
        )

    def manifest_entry(self) -> dict[str, Any]:
        """What a model bundle records about the service it is served with.

        ``ttl_seconds`` (feature name -> seconds) is there only when a feature has a TTL: the
        TTL is not part of a feature's version, and the server's lookup needs it. Left out
        otherwise, so entries (and bundle digests) of services without TTLs are unchanged.
        """
        entry: dict[str, Any] = {
            "service": self.name,
            "version": self.version,
            "entity": self.entity,
            "features": list(self.refs),
        }
        ttls = {f.name: f.ttl_seconds for f in self.features if f.ttl_seconds is not None}
        if ttls:
            entry["ttl_seconds"] = ttls
        return entry


@dataclass(frozen=True, eq=False)
class Feature:
    """One feature: a named value per entity, computed by a transformation of source rows.

    Args:
        name: Feature name (letters, digits, ``._-``).
        entity: The entity key column (``customer_id``); it must hold no nulls.
        dtype: The value type, one of :data:`DTYPES`.
        transform: ``transform(frame, **params)`` -> one value per row of ``frame``.
        source: The data file (or Parquet folder) it is computed from, relative to the project.
        timestamp: The column holding each row's event time.
        owner: Who answers for it.
        description: What it means.
        params: Keyword arguments of ``transform``; part of the version.
        ttl: A value older than this at lookup time counts as missing (training sets and
            serving); None: no limit.
        timezone: The timezone in which to read naive (zone-less) timestamps, e.g. ``"UTC"``;
            None refuses them.

    Raises:
        ValidationError: a bad name, dtype or TTL, or a transform that is not callable.
    """

    name: str
    entity: str
    dtype: str
    transform: Callable[..., Any]
    source: str | None = None
    timestamp: str = DEFAULT_TIMESTAMP
    owner: str | None = None
    description: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    ttl: dt.timedelta | None = None
    timezone: str | None = None
    #: The digest of :meth:`spec`, set at construction.
    version: str = field(init=False, default="")

    def __post_init__(self) -> None:
        validate_name("feature", self.name)
        if self.dtype not in DTYPES:
            raise ValidationError(
                f"feature '{self.name}' has dtype {self.dtype!r}",
                hint=f"use one of: {', '.join(DTYPES)}",
            )
        if not callable(self.transform):
            raise ValidationError(
                f"feature '{self.name}': transform must be a function, not "
                f"{type(self.transform).__name__}",
                hint="pass a function taking the source DataFrame and returning one value per row",
            )
        if self.ttl is not None and self.ttl <= dt.timedelta(0):
            raise ValidationError(
                f"feature '{self.name}' has ttl {self.ttl}", hint="give a positive timedelta"
            )
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "version", digest_json(self.spec()))

    def spec(self) -> dict[str, Any]:
        """The definition as plain data: what the version digests."""
        return {
            "code": _code_fingerprint(self.transform),
            "params": self.params,
            "dtype": self.dtype,
            "entity": self.entity,
            "source": self.source,
            "timestamp": self.timestamp,
            "timezone": self.timezone,
        }

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def record(self) -> FeatureRecord:
        """This definition as the store records it."""
        return FeatureRecord(
            name=self.name,
            version=self.version,
            entity=self.entity,
            dtype=self.dtype,
            timestamp=self.timestamp,
            ttl_seconds=None if self.ttl is None else self.ttl.total_seconds(),
            source=self.source,
            owner=self.owner,
            description=self.description,
        )

    def __repr__(self) -> str:
        return f"<Feature {self.name}@{short(self.version)}>"


@dataclass(frozen=True, eq=False)
class FeatureService:
    """The features one model uses, each at its exact version.

    Args:
        name: Service name.
        features: The features; all must share one entity key and have distinct names.
        owner: Who answers for it.
        description: What it serves.

    Raises:
        ValidationError: no features, two with one name, or features of different entities.
    """

    name: str
    features: tuple[Feature, ...]
    owner: str | None = None
    description: str | None = None

    def __init__(
        self,
        name: str,
        features: Iterable[Feature],
        *,
        owner: str | None = None,
        description: str | None = None,
    ) -> None:
        validate_name("feature service", name)
        feats = tuple(features)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "owner", owner)
        object.__setattr__(self, "description", description)
        if not feats or not all(isinstance(f, Feature) for f in feats):
            raise ValidationError(
                f"feature service '{name}' needs a list of Feature definitions",
                hint="pass features=[Feature(...), ...]",
            )
        names = [f.name for f in feats]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValidationError(
                f"feature service '{name}' lists feature(s) {', '.join(dupes)} twice",
                hint="a service serves one version of each feature",
            )
        entities = sorted({f.entity for f in feats})
        if len(entities) > 1:
            raise ValidationError(
                f"feature service '{name}' mixes entity keys: {', '.join(entities)}",
                hint="a service looks features up by one key; make one service per entity",
            )

    @property
    def version(self) -> str:
        return service_version(f.ref for f in self.features)

    def record(self) -> ServiceRecord:
        """This service as the store records it."""
        return ServiceRecord(
            name=self.name,
            version=self.version,
            features=tuple(f.record() for f in self.features),
            owner=self.owner,
            description=self.description,
        )

    def manifest_entry(self) -> dict[str, Any]:
        """What a model bundle records about the service it is served with."""
        return self.record().manifest_entry()

    def __repr__(self) -> str:
        return f"<FeatureService {self.name}@{short(self.version)}>"


def service_version(refs: Iterable[str]) -> str:
    """The version of a service serving exactly ``refs`` (order does not matter)."""
    return digest_json(sorted(refs))


def as_record(service: FeatureService | ServiceRecord) -> ServiceRecord:
    return service.record() if isinstance(service, FeatureService) else service


def _code_fingerprint(fn: Callable[..., Any]) -> str:
    """The transformation's syntax tree as text, or, without source, its bytecode."""
    tree = _syntax(fn)
    if tree is not None:
        return "|".join(ast.dump(n, annotate_fields=False) for n in tree)
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: its class's __call__
        code = type(fn).__call__.__code__
    # Bytecode differs between Python versions, so the version goes in with it.
    return f"py{sys.version_info[0]}.{sys.version_info[1]}:{_code_text(code)}"


def _code_text(code: Any) -> str:
    consts = [_code_text(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}|{code.co_varnames}"


def _syntax(fn: Callable[..., Any]) -> list[ast.AST] | None:
    try:
        text = textwrap.dedent(inspect.getsource(fn))
        module = ast.parse(text)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    name = getattr(fn, "__name__", "")
    if name == "<lambda>":
        lambdas = [n for n in ast.walk(module) if isinstance(n, ast.Lambda)]
        # Two lambdas on the lines of one: the tree cannot tell which, the bytecode can.
        return [lambdas[0]] if len(lambdas) == 1 else None
    for n in ast.walk(module):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name:
            body = n.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                body = body[1:]  # the docstring
            # The signature and the body; not the name, decorators or docstring.
            return [n.args, *body]
    return None
