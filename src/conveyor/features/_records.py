"""Feature definitions and services in the metadata store, and their lineage edges.

Registration is idempotent on ``(name, version)``: a definition is immutable once registered
(its version *is* its content), so registering it again writes nothing, not even an audit event.
Each new row is audited in the transaction that writes it.

Lineage (node names of :mod:`conveyor.store.metadata.lineage`): a feature version is
``computed_from`` the dataset version its offline values were computed from, and is an
``input`` of each model version whose bundle names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.features._definition import (
    FeatureRecord,
    FeatureService,
    ServiceRecord,
    as_record,
    parse_ref,
    short,
)
from conveyor.features.errors import UnknownFeatureError
from conveyor.store.metadata.lineage import add_edges, model_node, node
from conveyor.store.metadata.rows import insert_ignore
from conveyor.store.metadata.schema import feature_definition, feature_service

if TYPE_CHECKING:
    from collections.abc import Iterable

    from conveyor.features._definition import Feature
    from conveyor.store.metadata import MetadataStore

__all__ = [
    "get_feature",
    "get_service",
    "link_dataset",
    "link_model",
    "list_features",
    "list_services",
    "register_feature",
    "register_service",
]


def register_feature(store: MetadataStore, feature: Feature | FeatureRecord, *, actor: str) -> bool:
    """Record a feature version; True if it was new.

    Raises:
        InfrastructureError: the metadata store is unavailable.
    """
    rec = feature.record() if not isinstance(feature, FeatureRecord) else feature
    t = feature_definition
    spec = feature.spec() if not isinstance(feature, FeatureRecord) else {}
    spec = {**spec, "timestamp": rec.timestamp, "ttl_seconds": rec.ttl_seconds}
    with store.write(actor) as tx:
        exists = tx.conn.execute(
            sa.select(t.c.name).where(t.c.name == rec.name, t.c.version == rec.version)
        ).first()
        if exists is not None:
            return False
        insert_ignore(
            tx.conn,
            t,
            [
                {
                    "name": rec.name,
                    "version": rec.version,
                    "entity": rec.entity,
                    "dtype": rec.dtype,
                    "owner": rec.owner,
                    "created_at": tx.at,
                    "description": rec.description,
                    "source": rec.source,
                    "spec": spec,
                }
            ],
        )
        tx.audit(
            "feature.registered",
            node("feature", rec.ref),
            {"name": rec.name, "version": rec.version, "entity": rec.entity, "dtype": rec.dtype},
        )
    return True


def register_service(
    store: MetadataStore, service: FeatureService | ServiceRecord, *, actor: str
) -> bool:
    """Record a service version (and any of its features not yet recorded); True if new."""
    rec = as_record(service)
    members: Iterable[Feature | FeatureRecord] = (
        service.features if isinstance(service, FeatureService) else rec.features
    )
    for f in members:
        register_feature(store, f, actor=actor)
    t = feature_service
    with store.write(actor) as tx:
        exists = tx.conn.execute(
            sa.select(t.c.name).where(t.c.name == rec.name, t.c.version == rec.version)
        ).first()
        if exists is not None:
            return False
        insert_ignore(
            tx.conn,
            t,
            [
                {
                    "name": rec.name,
                    "version": rec.version,
                    "features": list(rec.refs),
                    "owner": rec.owner,
                    "description": rec.description,
                    "created_at": tx.at,
                }
            ],
        )
        tx.audit(
            "feature_service.registered",
            f"feature_service:{rec.name}@{rec.version}",
            {"name": rec.name, "version": rec.version, "features": list(rec.refs)},
        )
    return True


def list_features(store: MetadataStore, name: str | None = None) -> list[FeatureRecord]:
    """Every registered feature version (of ``name``), oldest first per name."""
    t = feature_definition
    query = sa.select(t).order_by(t.c.name, t.c.created_at, t.c.version)
    if name is not None:
        query = query.where(t.c.name == name)
    with store.read() as conn:
        return [_feature(r) for r in conn.execute(query).mappings()]


def get_feature(store: MetadataStore, ref: str) -> FeatureRecord:
    """The feature ``name`` (latest version), ``name@version`` or ``name@<version prefix>``.

    Raises:
        UnknownFeatureError: no such feature, no such version, or an ambiguous prefix.
    """
    name, version = parse_ref(ref)
    found = list_features(store, name)
    if not found:
        raise UnknownFeatureError(
            f"feature '{name}' is not registered",
            hint="see `conveyor features list`; register definitions: `conveyor features apply`",
        )
    if version is None:
        return found[-1]
    picked: FeatureRecord = _pick(found, version, f"feature '{name}'", lambda r: r.version)
    return picked


def list_services(store: MetadataStore) -> list[tuple[str, str, list[str]]]:
    """Every registered service version: (name, version, feature refs)."""
    t = feature_service
    with store.read() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.name, t.c.created_at)).mappings().all()
    return [(r["name"], r["version"], list(r["features"])) for r in rows]


def get_service(store: MetadataStore, ref: str) -> ServiceRecord:
    """The service ``name`` (latest version) or ``name@version`` (prefix allowed), resolved.

    Raises:
        UnknownFeatureError: no such service or version.
    """
    name, version = parse_ref(ref)
    t = feature_service
    with store.read() as conn:
        rows = (
            conn.execute(sa.select(t).where(t.c.name == name).order_by(t.c.created_at))
            .mappings()
            .all()
        )
    if not rows:
        raise UnknownFeatureError(
            f"feature service '{name}' is not registered",
            hint="register it with `conveyor features apply`; `conveyor features list` shows "
            "what is registered",
        )
    row = rows[-1] if version is None else _pick(list(rows), version, f"service '{name}'", _version)
    features = tuple(get_feature(store, r) for r in row["features"])
    return ServiceRecord(
        name=row["name"],
        version=row["version"],
        features=features,
        owner=row["owner"],
        description=row["description"],
        created_at=row["created_at"],
    )


def link_dataset(store: MetadataStore, feature: FeatureRecord, dataset: str, *, actor: str) -> None:
    """Record that ``feature``'s values were computed from dataset version ``dataset``."""
    with store.write(actor) as tx:
        add_edges(
            tx.conn,
            [(node("dataset", dataset), node("feature", feature.ref), "computed_from")],
            tx.at,
        )


def link_model(
    store: MetadataStore, refs: Iterable[str], model: str, version: int, *, actor: str
) -> None:
    """Record that model ``model`` v``version`` takes the features ``refs`` as input."""
    with store.write(actor) as tx:
        add_edges(
            tx.conn,
            [(node("feature", r), model_node(model, version), "input") for r in refs],
            tx.at,
        )


def _version(row: Any) -> str:
    return str(row["version"])


def _pick(found: list[Any], version: str, what: str, key: Any) -> Any:
    prefix = version if version.startswith("blake3:") else f"blake3:{version}"
    matches = [r for r in found if key(r).startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(short(key(r)) for r in found)
    if not matches:
        raise UnknownFeatureError(
            f"{what} has no version {version}", hint=f"its versions are: {known}"
        )
    raise UnknownFeatureError(
        f"{what}: version prefix {version} matches {len(matches)} versions",
        hint="give more digits of the version",
    )


def _feature(r: Any) -> FeatureRecord:
    spec = r["spec"] or {}
    return FeatureRecord(
        name=r["name"],
        version=r["version"],
        entity=r["entity"],
        dtype=r["dtype"],
        timestamp=spec.get("timestamp", "event_timestamp"),
        ttl_seconds=spec.get("ttl_seconds"),
        source=r["source"],
        owner=r["owner"],
        description=r["description"],
        created_at=r["created_at"],
    )
