"""Dataset versions: content digests, idempotent registration, and clear errors for bad files."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import pytest
import sqlalchemy as sa
from tests.unit.data._data_support import churn

from conveyor.core.digest import digest_file, digest_json
from conveyor.core.errors import NotFoundError, ValidationError
from conveyor.data.versions import (
    dataset_digest,
    get_dataset,
    read_columns,
    read_dataset,
    register_dataset,
)
from conveyor.store.metadata.schema import audit_event

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.store.metadata import MetadataStore


def test_digest_of_file_folder_and_frame(tmp_path: Path) -> None:
    frame = churn(500)
    csv = tmp_path / "a.csv"
    frame.to_csv(csv, index=False)
    assert dataset_digest(csv) == digest_file(csv)
    folder = tmp_path / "parts"
    (folder / "sub").mkdir(parents=True)
    frame.iloc[:200].to_parquet(folder / "p0.parquet")
    frame.iloc[200:].to_parquet(folder / "sub" / "p1.parquet")
    expected = digest_json(
        [
            ["p0.parquet", digest_file(folder / "p0.parquet")],
            ["sub/p1.parquet", digest_file(folder / "sub" / "p1.parquet")],
        ]
    )
    assert dataset_digest(folder) == expected
    assert dataset_digest(frame) == dataset_digest(frame.copy())
    changed = frame.copy()
    changed.loc[3, "age"] += 1
    assert dataset_digest(changed) != dataset_digest(frame)
    assert dataset_digest(frame).startswith("blake3:")


def test_register_is_idempotent_and_audited_once(
    metadata_store: MetadataStore, tmp_path: Path
) -> None:
    path = tmp_path / "jan.parquet"
    churn(800).to_parquet(path)
    first = register_dataset(metadata_store, path, name="jan", actor="ana")
    again = register_dataset(metadata_store, path, name="other", actor="bob")
    assert again == first
    assert first.id == digest_file(path)
    assert first.name == "jan"
    assert first.stats["rows"] == 800
    assert first.stats["columns"]["contract"]["distinct"] == 3
    assert first.schema_digest is not None
    assert first.schema_digest.startswith("blake3:")
    assert get_dataset(metadata_store, first.id).to_dict() == first.to_dict()
    with metadata_store.read() as conn:
        actions = conn.execute(sa.select(audit_event.c.action)).scalars().all()
    assert actions.count("dataset.registered") == 1
    frame_version = register_dataset(metadata_store, churn(50), name="frame", actor="ana")
    assert frame_version.source_uri == "dataframe:"


def test_get_unknown_dataset(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="no dataset version blake3:00"):
        get_dataset(metadata_store, "blake3:" + "0" * 64)


def test_read_formats_and_columns(tmp_path: Path) -> None:
    frame = churn(300)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet")
    for name in ("a.csv", "a.parquet"):
        back = read_dataset(tmp_path / name)
        assert list(back.columns) == list(frame.columns)
        assert len(back) == 300
        assert read_columns(tmp_path / name) == list(frame.columns)
    parts = tmp_path / "parts"
    parts.mkdir()
    frame.iloc[:100].to_parquet(parts / "a.parquet")
    frame.iloc[100:].to_parquet(parts / "b.parquet")
    whole = read_dataset(parts)
    assert len(whole) == 300
    assert whole["customer_id"].tolist() == frame["customer_id"].tolist()
    assert read_columns(parts) == list(frame.columns)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValidationError, match="holds no Parquet files"):
        read_dataset(tmp_path / "nothing")


def test_bad_files_name_the_file_and_problem(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        read_dataset(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ValidationError, match=r"empty\.csv is an empty file"):
        read_dataset(empty)
    header = tmp_path / "header.csv"
    header.write_text("a,b\n")
    with pytest.raises(ValidationError, match=r"header\.csv has no rows"):
        read_dataset(header)
    good = tmp_path / "good.parquet"
    churn(300).to_parquet(good)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValidationError, match=r"truncated\.parquet cannot be read as Parquet"):
        read_dataset(truncated)
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"x")
    with pytest.raises(ValidationError, match="neither CSV nor Parquet"):
        read_dataset(odd)


def test_mixed_types_are_refused(tmp_path: Path) -> None:
    frame = churn(300)
    frame["age"] = frame["age"].astype(str)
    frame.loc[17, "age"] = "forty"
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValidationError, match=r"mixed\.csv: column 'age' mixes numbers and text"):
        read_dataset(path)
    objects = pd.DataFrame({"x": pd.Series([1, "a", 2.5] * 10, dtype=object)})
    with pytest.raises(ValidationError, match="column 'x' mixes types"):
        read_dataset(objects)
