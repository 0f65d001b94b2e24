"""Dataset versions: a dataset is identified by the digest of its content, with schema and stats.

The id of a dataset version is a BLAKE3 content digest (``conveyor.core.digest``), so the same
bytes always get the same id and an edited file is a new version:

* a file (CSV, Parquet): the digest of its bytes;
* a folder of Parquet files: the digest of the canonical JSON of its sorted
  ``[relative path, file digest]`` pairs (renaming a part file is a change, reordering is not);
* a DataFrame: the digest of its deterministic Parquet encoding (``packaging.encode_frame``:
  the same frame, dtypes and index always give the same bytes with one pyarrow version).

Registering reads the data once, sketches every column (``conveyor.data.profile``), and stores
the inferred Table Schema's digest and the column statistics in ``dataset_version``. Inserting is
idempotent: a second registration of the same content returns the row already there and writes
no audit event; the first writes ``dataset.registered`` in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.digest import digest_bytes, digest_file, digest_json
from conveyor.core.errors import NotFoundError
from conveyor.data.reading import read_columns, read_dataset

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd
    import sqlalchemy as sa

    from conveyor.store.metadata import MetadataStore

__all__ = [
    "DatasetVersion",
    "dataset_digest",
    "get_dataset",
    "read_columns",
    "read_dataset",
    "register_dataset",
]


@dataclass(frozen=True)
class DatasetVersion:
    """One row of ``dataset_version``."""

    id: str
    name: str
    source_uri: str
    schema_digest: str | None
    stats: dict[str, Any]
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "source_uri": self.source_uri,
            "schema_digest": self.schema_digest,
            "stats": self.stats,
            "created_at": self.created_at.isoformat(),
        }


def dataset_digest(source: Path | str | pd.DataFrame) -> str:
    """The content digest that identifies a dataset (see the module docstring).

    Raises:
        NotFoundError: the path does not exist.
        ValidationError: a DataFrame cannot be encoded as Parquet (mixed types).
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        from conveyor.packaging import encode_frame

        return digest_bytes(encode_frame(source, what="the dataset DataFrame"))
    path = Path(source)
    if path.is_file():
        return digest_file(path)
    if path.is_dir():
        parts = sorted(
            (p.relative_to(path).as_posix(), digest_file(p))
            for p in path.rglob("*")
            if p.is_file() and p.suffix in (".parquet", ".pq")
        )
        return digest_json(parts)
    raise NotFoundError(f"dataset {path} does not exist", hint="check the path")


def _source_uri(source: Path | str | pd.DataFrame) -> str:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return "dataframe:"
    return Path(source).resolve().as_uri()


def _to_version(r: sa.RowMapping) -> DatasetVersion:
    return DatasetVersion(
        id=r["id"],
        name=r["name"],
        source_uri=r["source_uri"],
        schema_digest=r["schema_digest"],
        stats=r["stats"] or {},
        created_at=r["created_at"],
    )


def register_dataset(
    store: MetadataStore, source: Path | str | pd.DataFrame, *, name: str, actor: str
) -> DatasetVersion:
    """Register a dataset by content digest, with its inferred schema digest and statistics.

    The same content registered again returns the existing row (its first name and source are
    kept) and writes nothing.

    Raises:
        NotFoundError: the path does not exist.
        ValidationError: the data is unreadable, truncated, empty, or a column mixes types.
        InfrastructureError: the metadata store is unavailable.
    """
    import sqlalchemy as sa

    from conveyor.data.profile import profile_stats, sketch_checked
    from conveyor.data.reading import describe_source
    from conveyor.data.schema import infer_schema, schema_digest
    from conveyor.store.metadata import insert_ignore
    from conveyor.store.metadata.schema import dataset_version

    digest = dataset_digest(source)
    with store.read() as conn:
        row = (
            conn.execute(sa.select(dataset_version).where(dataset_version.c.id == digest))
            .mappings()
            .first()
        )
    if row is not None:
        return _to_version(row)
    frame = read_dataset(source)
    what = describe_source(Path(source) if isinstance(source, str) else source)
    # One column's sorted copy at a time: each sketch keeps only its summary once read.
    sketches = {
        str(c): sketch_checked(frame[c], name=str(c), what=what).release() for c in frame.columns
    }
    stats = profile_stats(sketches)
    values = {
        "id": digest,
        "name": name,
        "schema_digest": schema_digest(infer_schema(sketches)),
        "stats": stats,
        "source_uri": _source_uri(source),
    }
    with store.write(actor) as tx:
        # Writes are serialised, so a row absent here is absent until this commit; the insert
        # still ignores a conflict, for a store shared with an older Conveyor.
        existing = (
            tx.conn.execute(sa.select(dataset_version).where(dataset_version.c.id == digest))
            .mappings()
            .first()
        )
        if existing is not None:
            return _to_version(existing)
        insert_ignore(tx.conn, dataset_version, [{**values, "created_at": tx.at}])
        tx.audit(
            "dataset.registered",
            f"dataset:{digest}",
            {"name": name, "source_uri": values["source_uri"], "rows": stats["rows"]},
        )
        row = (
            tx.conn.execute(sa.select(dataset_version).where(dataset_version.c.id == digest))
            .mappings()
            .one()
        )
    return _to_version(row)


def get_dataset(store: MetadataStore, id: str) -> DatasetVersion:
    """The dataset version with this digest.

    Raises:
        NotFoundError: no dataset version has this id.
    """
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import dataset_version

    with store.read() as conn:
        row = (
            conn.execute(sa.select(dataset_version).where(dataset_version.c.id == id))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFoundError(
            f"no dataset version {id}",
            hint="register it first (conveyor.data.register_dataset), or check the digest",
        )
    return _to_version(row)
