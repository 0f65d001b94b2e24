"""Fixtures for the server tests: a registry with two real versions, and a client for the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from tests.unit.server._support import TestClient, promote, register

from conveyor.server import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conveyor.packaging import Bundle
    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

#: Regularisation of version 1 and version 2: different enough to give different answers.
C1, C2 = 1.0, 0.01
#: How often the app under test polls the registry; small so swaps show quickly.
POLL = 0.02


@dataclass
class Stores:
    metadata: MetadataStore
    artifacts: LocalArtifactStore
    v1: int
    v2: int
    bundles: dict[int, Bundle]


def two_versions(metadata: MetadataStore, artifacts: LocalArtifactStore) -> Stores:
    v1, b1 = register(metadata, artifacts, c=C1)
    v2, b2 = register(metadata, artifacts, c=C2)
    promote(metadata, v1)
    return Stores(metadata, artifacts, v1, v2, {v1: b1, v2: b2})


@pytest.fixture
def stores(metadata_store: MetadataStore, artifact_store: LocalArtifactStore) -> Stores:
    """``churn`` v1 in production and v2 registered (experimental), on each backend."""
    return two_versions(metadata_store, artifact_store)


@pytest.fixture
def client(stores: Stores) -> Iterator[TestClient]:
    with TestClient(create_app(stores.metadata, stores.artifacts, poll_interval=POLL)) as client:
        yield client


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stores, TestClient]]:
    """One SQLite registry and client for a whole module of tests that only read.

    For request handling that does not depend on the store backend (the protocol, its checks
    and errors), building fresh stores for each of dozens of cases would only cost time.
    """
    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

    root = tmp_path_factory.mktemp("server")
    metadata = MetadataStore.open(f"sqlite:///{root / 'metadata.db'}")
    stores = two_versions(metadata, LocalArtifactStore(root / "artifacts"))
    try:
        with TestClient(create_app(stores.metadata, stores.artifacts)) as client:
            yield stores, client
    finally:
        metadata.close()
