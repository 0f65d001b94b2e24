"""Bytes of a model: skops files made reproducible, Parquet examples, and the pipeline codec.

Never pickle. Estimators are saved with skops, whose loader constructs only the types it is told
to trust. skops output is not reproducible as written: it names objects and array files by
``id()`` (memory addresses), names byte blobs by random UUIDs, stamps zip entries with the
current time, and keeps set elements in hash order. A bundle is addressed by the digest of its
bytes, and the same model must give the same digest in any process, so :func:`dump_estimator`
rewrites the file canonically: ids renumbered in document order, files renamed after them, set
elements sorted, zip entries sorted and stamped 1980-01-01. skops reads the result unchanged.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ValidationError
from conveyor.packaging._model import Model

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd

__all__ = [
    "SavedEstimator",
    "check_zip",
    "decode_frame",
    "decode_model",
    "dump_estimator",
    "encode_frame",
    "encode_model",
    "load_estimator",
]

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
_CODEC_FORMAT = 1
_META, _ESTIMATOR, _EXAMPLE = "meta.json", "model.skops", "example.parquet"

#: Limits on a zip before anything in it is decompressed. Conveyor writes its zips stored (not
#: compressed), so its own files are far inside them; a zip bomb (a few KB that inflate to
#: gigabytes, or a million empty members) is refused before it costs memory. ``zipfile`` never
#: inflates an entry past its declared size, so checking the declared sizes bounds the real ones.
ZIP_MAX_MEMBERS = 100_000
ZIP_MAX_TOTAL = 8 * 1024**3
ZIP_MAX_RATIO = 200


@dataclass(frozen=True)
class SavedEstimator:
    """A canonical skops file and what loading it needs."""

    data: bytes
    #: Types outside skops' default trust that the file holds, sorted.
    trusted: tuple[str, ...]
    #: Top-level packages of every object in the file (``sklearn``, ``numpy`` ...), sorted.
    packages: tuple[str, ...]


def dump_estimator(estimator: Any) -> SavedEstimator:
    """Save an estimator with skops, canonically (the same model always gives the same bytes).

    Raises:
        ValidationError: when skops cannot save the estimator.
    """
    import skops.io as sio

    try:
        raw = sio.dumps(estimator)
    except Exception as exc:
        # skops raises TypeError or its own exceptions for objects it cannot represent.
        raise ValidationError(
            f"the estimator ({type(estimator).__name__}) cannot be saved with skops: {exc}",
            hint="use scikit-learn estimators and transformers (skops supports them); "
            "Conveyor never saves models with pickle",
        ) from exc
    data, packages = _canonical_skops(raw)
    trusted = tuple(sorted(sio.get_untrusted_types(data=data)))
    return SavedEstimator(data, trusted, packages)


def load_estimator(data: bytes, trusted: Iterable[str], *, what: str) -> Any:
    """Load a skops file, trusting only skops' defaults and the types in ``trusted``.

    Args:
        data: The skops file.
        trusted: Type names recorded when the file was saved.
        what: The file, for messages ("model/model.skops of bundle blake3:...").

    Raises:
        ValidationError: when the file holds other types, or cannot be loaded here.
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    check_zip(data, what=what)
    allowed = sorted(trusted)
    try:
        return sio.loads(data, trusted=allowed)
    except UntrustedTypesFoundException as exc:
        extra = sorted(set(sio.get_untrusted_types(data=data)) - set(allowed))
        raise ValidationError(
            f"{what} holds types that were not trusted when it was packaged: {', '.join(extra)}",
            hint="the file does not match what was packaged; rebuild the bundle from its "
            "training run rather than adding types by hand",
            details={"untrusted": extra},
        ) from exc
    except Exception as exc:
        # A verified file that does not load was written by other library versions.
        raise ValidationError(
            f"{what} cannot be loaded: {type(exc).__name__}: {exc}",
            hint="install the versions in the bundle's env/requirements.txt",
        ) from exc


def encode_frame(df: pd.DataFrame, *, what: str = "the input example") -> bytes:
    """A frame as Parquet bytes; the same frame always gives the same bytes.

    Raises:
        ValidationError: when a column cannot be stored (mixed types, say), naming ``what``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pandas(df)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} cannot be stored as Parquet: {exc}",
            hint="give every column a single type (e.g. df[col].astype(str)) and unique names",
        ) from exc
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def decode_frame(data: bytes) -> pd.DataFrame:
    """The frame written by :func:`encode_frame`, with the dtypes it had.

    pandas 3 reads every Arrow string column as its ``str`` dtype, including columns that were
    ``object`` when written; a step downstream of a cached frame would then see other dtypes
    than one downstream of a fresh frame (and a model fitted on them could differ). So columns
    (and an index) recorded as ``object`` are rebuilt as ``object``, with None for nulls.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data))
    frame = table.to_pandas()
    meta = table.schema.pandas_metadata or {}
    index_fields = [f for f in meta.get("index_columns", []) if isinstance(f, str)]
    columns = [c for c in meta.get("columns", []) if c.get("field_name") not in index_fields]
    if len(columns) != len(frame.columns):
        return frame  # written by something else: nothing to restore
    for position, column in enumerate(columns):
        dtype = frame.dtypes.iloc[position]
        if column.get("numpy_type") == "object" and not pd.api.types.is_object_dtype(dtype):
            values = table.column(column["field_name"]).to_numpy(zero_copy_only=False)
            frame.isetitem(position, pd.Series(values, index=frame.index, dtype=object))
    if len(index_fields) == 1 and not pd.api.types.is_object_dtype(frame.index.dtype):
        index_types = [
            c.get("numpy_type") for c in meta["columns"] if c.get("field_name") == index_fields[0]
        ]
        if index_types == ["object"]:
            values = table.column(index_fields[0]).to_numpy(zero_copy_only=False)
            frame.index = pd.Index(values, dtype=object, name=frame.index.name)
    return frame


def encode_model(model: Model) -> bytes:
    """A :class:`Model` as bytes, for the pipeline cache: a zip of the skops file, the example
    as Parquet, and ``meta.json``. Equal models give equal bytes.

    Raises:
        ValidationError: when the estimator or the example cannot be saved.
    """
    saved = dump_estimator(model.estimator)
    meta = {"format": _CODEC_FORMAT, "flavor": model.flavor, "trusted": list(saved.trusted)}
    return _zip(
        [
            (_META, json.dumps(meta, sort_keys=True).encode(), zipfile.ZIP_STORED),
            (_ESTIMATOR, saved.data, zipfile.ZIP_STORED),
            (_EXAMPLE, encode_frame(model.input_example), zipfile.ZIP_STORED),
        ]
    )


def decode_model(data: bytes) -> Model:
    """The :class:`Model` written by :func:`encode_model`.

    The types to trust come from ``meta.json`` in the same bytes: the pipeline cache addresses
    these bytes by digest and only ever writes them through :func:`encode_model`, so they are
    what this installation packaged. Bundles (which cross machines) are checked harder.

    Raises:
        ValidationError: when ``data`` is not an encoded model or cannot be loaded here.
    """
    check_zip(data, what="the cached model")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            meta = json.loads(archive.read(_META))
            estimator_bytes = archive.read(_ESTIMATOR)
            example_bytes = archive.read(_EXAMPLE)
        if meta.get("format") != _CODEC_FORMAT:
            raise ValueError(f"codec format {meta.get('format')!r}, expected {_CODEC_FORMAT}")
        trusted, flavor = list(meta["trusted"]), str(meta["flavor"])
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ValidationError(
            f"these {len(data)} bytes are not an encoded conveyor.Model ({exc})",
            hint="re-run the step with --force to rebuild its cached output",
        ) from exc
    estimator = load_estimator(estimator_bytes, trusted, what="the cached model")
    return Model(estimator=estimator, input_example=decode_frame(example_bytes), flavor=flavor)


def check_zip(data: bytes, *, what: str) -> None:
    """Refuse a zip that would inflate past the limits, before any of it is decompressed.

    Args:
        data: The zip's bytes.
        what: The file, for messages.

    Raises:
        ValidationError: the zip has more than
            :data:`ZIP_MAX_MEMBERS` members, declares more than :data:`ZIP_MAX_TOTAL` bytes
            in total, or inflates more than :data:`ZIP_MAX_RATIO` times its own size.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError):
        return  # not a zip at all: nothing can inflate, and the reader names the problem
    total = sum(member.file_size for member in members)
    problem = None
    if len(members) > ZIP_MAX_MEMBERS:
        problem = f"has {len(members):,} members (the limit is {ZIP_MAX_MEMBERS:,})"
    elif total > ZIP_MAX_TOTAL:
        problem = f"inflates to {total:,} bytes (the limit is {ZIP_MAX_TOTAL:,})"
    elif total > ZIP_MAX_RATIO * max(len(data), 1024):
        problem = (
            f"inflates {total / len(data):,.0f} times, from {len(data):,} to {total:,} bytes "
            f"(the limit is {ZIP_MAX_RATIO} times)"
        )
    if problem is not None:
        raise ValidationError(
            f"{what} {problem}: refused as a possible zip bomb; nothing was extracted",
            hint="Conveyor writes its zips uncompressed; rebuild the file from its training run",
            details={"members": len(members), "declared_bytes": total, "bytes": len(data)},
        )


def _zip(entries: Iterable[tuple[str, bytes, int]]) -> bytes:
    """A zip whose bytes depend only on the entries' names, contents and compression."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content, compression in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = compression
            info.create_system = 3  # otherwise 0 on Windows and 3 elsewhere
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def _canonical_zip(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return _zip((i.filename, archive.read(i), i.compress_type) for i in archive.infolist())


def _canonical_skops(raw: bytes) -> tuple[bytes, tuple[str, ...]]:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    schema = json.loads(entries.pop("schema.json"))
    walk = _SchemaWalk()
    walk.visit(schema)
    # Compact: json's indenting encoder is pure Python, ~0.25 s for a 100-tree forest.
    text = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    out = [("schema.json", text.encode(), zipfile.ZIP_STORED)]
    for old, new in walk.files.items():
        content = entries.pop(old)
        # Sparse matrices are stored as .npz, itself a zip stamped with the current time.
        if new.endswith(".npz"):
            content = _canonical_zip(content)
        out.append((new, content, zipfile.ZIP_STORED))
    # skops writes no unreferenced files; should a future version do so, keep them loadable.
    out.extend((name, content, zipfile.ZIP_STORED) for name, content in entries.items())
    return _zip(out), tuple(sorted(walk.packages))


class _SchemaWalk:
    """Renumber a skops schema's ids and files in document order, and sort its sets."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self.files: dict[str, str] = {}
        self.packages: set[str] = set()

    def visit(self, node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                self.visit(item)
            return
        if not isinstance(node, dict):
            return
        if "__loader__" in node:
            self._rewrite(node)
        for value in node.values():
            self.visit(value)

    def _rewrite(self, node: dict[str, Any]) -> None:
        module = node.get("__module__")
        if isinstance(module, str) and module:
            self.packages.add(module.partition(".")[0])
        if node["__loader__"] == "SetNode" and isinstance(node.get("content"), list):
            # Sorted before the walk goes inside, so the elements' ids follow the sorted order.
            node["content"].sort(key=_without_ids)
        old_id = node.get("__id__")
        if isinstance(old_id, int) and not isinstance(old_id, bool):
            # Start at 1: skops treats an id of 0 as "no id".
            node["__id__"] = self.ids.setdefault(old_id, len(self.ids) + 1)
        old_file = node.get("file")
        if isinstance(old_file, str):
            suffix = PurePosixPath(old_file).suffix
            node["file"] = self.files.setdefault(old_file, f"{len(self.files) + 1}{suffix}")


def _without_ids(node: Any) -> str:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("__id__", "file")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(node), sort_keys=True)
