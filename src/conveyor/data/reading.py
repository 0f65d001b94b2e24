"""Reading datasets (CSV, Parquet, a folder of Parquet, a DataFrame), with errors naming the file.

Files are read with pyarrow (multi-threaded CSV parser, columnar Parquet reader) and handed on as
a pandas DataFrame, the form users' steps and the evaluation code work with. Every way a file can
be bad ends in one :class:`~conveyor.core.errors.ValidationError` (or ``NotFoundError``) naming
the file and, where one is to blame, the column:

* missing, unreadable, truncated or corrupt files;
* an empty file, or a dataset with no rows or no columns;
* a column that mixes types: in a DataFrame, Python objects of different kinds (``1`` beside
  ``"a"``); in a CSV, a column where some values are numbers and others text (pyarrow then reads
  the whole column as text, which would silently turn a numeric feature into a category).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["describe_source", "read_columns", "read_dataset", "read_table"]

_CSV_SUFFIXES = {".csv", ".txt"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
# How many values of a text column are tried as numbers before deciding it is plain text.
_MIXED_SAMPLE = 2_000


def describe_source(source: Path | pd.DataFrame) -> str:
    """How messages name a source: its path, or "the DataFrame"."""
    return str(source) if isinstance(source, Path) else "the DataFrame"


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _PARQUET_SUFFIXES)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise NotFoundError(
            f"dataset {path} does not exist",
            hint="check the path (it is relative to the current directory or the project root)",
        )


def read_table(source: Path) -> pa.Table:
    """Read a CSV file, a Parquet file or a folder of Parquet files into an Arrow table.

    Raises:
        NotFoundError: the path does not exist.
        ValidationError: the file is empty, truncated, corrupt, of an unknown kind, has no rows
            or columns, or a CSV column mixes numbers and text.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(source)
    _check_exists(path)
    try:
        if path.is_dir():
            files = _parquet_files(path)
            if not files:
                raise ValidationError(
                    f"dataset folder {path} holds no Parquet files",
                    hint="a dataset folder must contain *.parquet files",
                )
            table = pa.concat_tables(
                [_read_parquet(pq, f) for f in files], promote_options="default"
            )
        elif path.suffix.lower() in _PARQUET_SUFFIXES:
            table = _read_parquet(pq, path)
        elif path.suffix.lower() in _CSV_SUFFIXES:
            if path.stat().st_size == 0:
                raise ValidationError(
                    f"dataset {path} is an empty file", hint="write the data again; it has no bytes"
                )
            table = pcsv.read_csv(path)
        else:
            raise ValidationError(
                f"dataset {path} is neither CSV nor Parquet (suffix {path.suffix!r})",
                hint="use a .csv or .parquet file, or a folder of .parquet files",
            )
    except (pa.ArrowException, OSError) as exc:
        raise ValidationError(
            f"dataset {path} cannot be read: {_first_line(exc)}",
            hint="the file is truncated or corrupt; write it again from its source",
        ) from exc
    _check_shape(table.num_rows, table.num_columns, str(path))
    if path.suffix.lower() in _CSV_SUFFIXES:
        _check_csv_mixed(table, str(path))
    return table


def _read_parquet(pq: Any, path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except Exception as exc:
        # pyarrow raises ArrowInvalid, OSError or (for some corrupt footers) others.
        raise ValidationError(
            f"dataset {path} cannot be read as Parquet: {_first_line(exc)}",
            hint="the file is truncated or corrupt; write it again from its source",
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_shape(rows: int, columns: int, what: str) -> None:
    if columns == 0:
        raise ValidationError(f"dataset {what} has no columns", hint="check the file's header")
    if rows == 0:
        raise ValidationError(
            f"dataset {what} has no rows", hint="an empty dataset cannot be checked or trained on"
        )


def _check_csv_mixed(table: pa.Table, what: str) -> None:
    """A text column whose values are partly numbers: pyarrow fell back to text for all."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name, column in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        sample = pc.drop_null(column.slice(0, _MIXED_SAMPLE * 4)).combine_chunks()[:_MIXED_SAMPLE]
        if len(sample) == 0:
            continue
        numeric = pc.match_substring_regex(
            pc.utf8_trim_whitespace(sample), r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
        )
        n_numeric = pc.sum(numeric).as_py() or 0
        if n_numeric * 2 >= len(sample) and n_numeric < len(sample):
            example = pc.filter(sample, pc.invert(numeric))[0].as_py()
            raise ValidationError(
                f"dataset {what}: column '{name}' mixes numbers and text "
                f"(e.g. {example!r} among numbers)",
                hint="fix or remove the non-numeric values, or quote the column as text everywhere",
            )


def _check_frame(frame: pd.DataFrame, what: str) -> None:
    import pandas as pd

    _check_shape(len(frame), len(frame.columns), what)
    if not frame.columns.is_unique:
        dup = frame.columns[frame.columns.duplicated()][0]
        raise ValidationError(
            f"dataset {what} has the column '{dup}' twice", hint="give every column a unique name"
        )
    for name in frame.columns:
        series = frame[name]
        if series.dtype == object:
            kind = pd.api.types.infer_dtype(series, skipna=True)
            if kind.startswith("mixed"):
                kinds = sorted({type(v).__name__ for v in series.dropna().head(10_000)})
                raise ValidationError(
                    f"dataset {what}: column '{name}' mixes types ({', '.join(kinds)})",
                    hint=f"give the column one type, e.g. df[{name!r}].astype(str)",
                )


def read_dataset(source: Path | str | pd.DataFrame) -> pd.DataFrame:
    """The dataset as a pandas DataFrame (a DataFrame is checked and returned as it is).

    Raises:
        NotFoundError: the path does not exist.
        ValidationError: the data is unreadable, truncated, empty, or a column mixes types.
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        _check_frame(source, "the DataFrame")
        return source
    path = Path(source)
    frame = read_table(path).to_pandas()
    _check_frame(frame, str(path))
    return frame


def read_columns(source: Path | str | pd.DataFrame) -> list[str]:
    """The column names of a dataset, reading only its header (or Parquet footer) where possible.

    Raises:
        NotFoundError: the path does not exist.
        ValidationError: the file cannot be read.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if isinstance(source, pd.DataFrame):
        return [str(c) for c in source.columns]
    path = Path(source)
    _check_exists(path)
    try:
        if path.is_file() and path.suffix.lower() in _PARQUET_SUFFIXES:
            return list(pq.read_schema(path).names)
        if path.is_file() and path.suffix.lower() in _CSV_SUFFIXES:
            with pcsv.open_csv(path) as reader:
                return list(reader.schema.names)
    except (pa.ArrowException, OSError) as exc:
        raise ValidationError(
            f"dataset {path} cannot be read: {_first_line(exc)}",
            hint="the file is truncated or corrupt; write it again from its source",
        ) from exc
    return list(read_table(path).column_names)
