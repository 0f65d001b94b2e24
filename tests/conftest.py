"""Fixtures shared by every suite: stores on each backend, and a throwaway project folder.

The PostgreSQL backend uses the server that ``make test`` starts (``scripts/services.sh``),
found through ``CONVEYOR_TEST_PG_URL``. Each test gets an empty schema.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from conveyor.store.artifacts import LocalArtifactStore
from conveyor.store.metadata import MetadataStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PG_URL_VAR = "CONVEYOR_TEST_PG_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_url() -> str:
    """The test database's URL: under pytest-xdist, a database of this worker's own."""
    url = os.environ.get(PG_URL_VAR)
    if not url:
        pytest.fail(
            f"{PG_URL_VAR} is not set: run the suite with `make test` (it starts PostgreSQL), "
            "or deselect with -m 'not postgres'"
        )
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return url
    return _worker_database(url, worker)


_WORKER_URLS: dict[str, str] = {}


def _worker_database(url: str, worker: str) -> str:
    """``url`` with its database name suffixed by the worker id; created on first use."""
    if worker not in _WORKER_URLS:
        base = sa.make_url(url)
        name = f"{base.database}_{worker}"
        engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        _WORKER_URLS[worker] = base.set(database=name).render_as_string(hide_password=False)
    return _WORKER_URLS[worker]


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


# Whether the PostgreSQL test database holds the current schema; a full reset clears it.
_PG_STATE = {"migrated": False}


def _truncate_postgres(url: str) -> None:
    from conveyor.store.metadata import schema

    names = ", ".join(f'"{t.name}"' for t in schema.metadata.sorted_tables)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE TABLE {names} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> str:
    """A metadata-store URL for an empty database with no schema, once per backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    url = postgres_url()
    _reset_postgres(url)
    _PG_STATE["migrated"] = False
    return url


@pytest.fixture
def metadata_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[MetadataStore]:
    """A migrated, empty metadata store on each backend.

    On PostgreSQL the schema is migrated once and its tables emptied between tests, which is
    what keeps the suite fast; tests about migrations themselves use ``store_url``.
    """
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    elif "store_url" in request.fixturenames:
        url = request.getfixturevalue("store_url")
    else:
        url = postgres_url()
        if _PG_STATE["migrated"]:
            _truncate_postgres(url)
        else:
            _reset_postgres(url)
    store = MetadataStore.open(url)
    if backend == "postgresql":
        _PG_STATE["migrated"] = True
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[MetadataStore]:
    """A migrated, empty SQLite metadata store, for tests that are not about the backend."""
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'metadata.db'}")
    yield store
    store.close()


@pytest.fixture
def artifact_store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")
