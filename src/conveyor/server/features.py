"""Requests that send entity keys: the server looks the model's features up itself.

A version whose bundle names a feature service (``Manifest.features``) takes, besides the usual
requests, ones that carry the entity key column (``customer_id``) instead of the feature
columns, on both faces: an Open Inference Protocol input named like the entity, or an MLflow
``dataframe_split`` / ``dataframe_records`` / ``instances`` / CSV column of that name.

- **Mapping.** A feature fills the model's input column *of the same name*: a training set built
  by ``FeatureStore.training_set`` has one column per feature, named after it, and that is what
  the model was fitted on. When a version is loaded, every feature of its service must be an
  input of its signature, or the version is refused with an error naming the feature.
- **Which path.** A request carrying the entity column and none of the feature columns is
  looked up; any other request is decoded as before, so a request carrying all feature columns
  is answered exactly as without a feature service (and one carrying some of them is told
  which are missing). Other input columns (request-time values) are
  taken from the request; the entity column goes to the model only if it is one of its inputs.
- **The lookup** runs in a worker thread, once per request, for all its rows (one batched read
  of the online store: see :class:`~conveyor.features.FeatureLookup`). Looked-up values are
  checked against the signature like sent ones. An entity with no online value (or only an
  expired one) of a feature whose column takes no nulls is a 422 naming the keys and
  ``conveyor features materialize``; an online store that is down is a 503.

The online store is the project's (``features.online``), opened when the first version that
needs it is loaded (:class:`OnlineFeatures`), so a server without such models never opens one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import threading
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import InfrastructureError, ValidationError
from conveyor.features import FeatureLookup, open_online_store
from conveyor.packaging import ColumnSpec, Signature
from conveyor.server.invocations import FORMATS, decode_invocations
from conveyor.server.tensors import column_values, decode_request

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from conveyor.features import OnlineStore
    from conveyor.packaging import LoadedModel
    from conveyor.server.tensors import InferRequest

__all__ = ["OnlineFeatures", "ServedLookup"]

_INT_TENSORS = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})


class OnlineFeatures:
    """The project's online feature store, opened on first use (from any thread).

    Args:
        spec: ``features.online`` of conveyor.yaml (see
            :func:`~conveyor.features.open_online_store`), or an open store (which
            :meth:`close` leaves open: its owner closes it).
        root: The project folder (where the default SQLite store lives).
    """

    def __init__(self, spec: str | OnlineStore | None, *, root: Path) -> None:
        self._spec = spec
        self._root = root
        self._store: OnlineStore | None = None if isinstance(spec, str | None) else spec
        self._owned = isinstance(spec, str | None)
        self._lock = threading.Lock()

    def store(self) -> OnlineStore:
        """The open store.

        Raises:
            ConfigError: the spec names no store Conveyor knows, or ``redis`` is missing.
            InfrastructureError: the store cannot be opened.
        """
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is None:
                spec = self._spec if isinstance(self._spec, str) else None
                self._store = open_online_store(spec, root=self._root)
            return self._store

    def close(self) -> None:
        """Close the store if this object opened it."""
        with self._lock:
            if self._owned and self._store is not None:
                self._store.close()
                self._store = None


class ServedLookup:
    """One served version's feature lookup: which requests need it, and how to complete them.

    Use :meth:`for_model`; ``decode_*`` run on the event loop or a worker thread, ``complete``
    in a worker thread (it reads the online store).

    Attributes:
        online: Where :meth:`complete` reads; the repository that serves the version sets it.
    """

    def __init__(
        self, model: LoadedModel, lookup: FeatureLookup, online: OnlineFeatures | None = None
    ) -> None:
        self.lookup = lookup
        self.signature = model.signature
        self.online = online
        self._label = f"model '{model.manifest.name}'"
        by_name = {c.name: c for c in model.signature.inputs}
        self._features = {n: by_name[n] for n in lookup.names}
        self._entity = by_name.get(lookup.entity)  # None: the model does not take the key
        # The request's other columns: sent, never looked up.
        self._sent = [c for c in model.signature.inputs if c.name not in self._features]
        # A looked-up value may be missing only where the model takes nulls.
        self._required = tuple(n for n, c in self._features.items() if not c.nullable)

    @classmethod
    def for_model(
        cls, model: LoadedModel, online: OnlineFeatures | None = None
    ) -> ServedLookup | None:
        """The lookup of a loaded version; None when its bundle names no feature service.

        Raises:
            ValidationError: a feature of the service is not an input of the model's signature,
                or the entity key is the name of a feature.
        """
        entry = model.manifest.features
        if entry is None:
            return None
        lookup = FeatureLookup.from_manifest(entry)
        inputs = [c.name for c in model.signature.inputs]
        absent = [n for n in lookup.names if n not in inputs]
        if absent or lookup.entity in lookup.names:
            what = (
                f"feature(s) {', '.join(absent)} of service '{lookup.service}' are not inputs "
                f"of its signature ({', '.join(inputs)})"
                if absent
                else f"its entity key '{lookup.entity}' is also a feature name"
            )
            raise ValidationError(
                f"model '{model.manifest.name}' cannot look its features up: {what}",
                hint="train on the columns FeatureStore.training_set returns (one per feature, "
                "named after it) and rebuild the bundle",
                details={"service": lookup.service, "features": absent},
            )
        return cls(model, lookup, online)

    # -- decoding (event loop or worker thread) -------------------------------------------------

    def wants(self, names: set[str]) -> bool:
        """Whether a request carrying the columns ``names`` is to be looked up."""
        return self.lookup.entity in names and names.isdisjoint(self._features)

    def decode_v2(self, payload: Mapping[str, Any]) -> InferRequest | None:
        """The Open Inference Protocol request, checked, if it is an entity-key request.

        Returns:
            The request with the entity key and the sent columns (to :meth:`complete`), or None
            when it is to be decoded against the model's signature as usual.

        Raises:
            ValidationError: the entity key or a sent column does not fit.
        """
        inputs = payload.get("inputs")
        if not isinstance(inputs, list):
            return None
        tensors = {t.get("name"): t for t in inputs if isinstance(t, dict)}
        names = {n for n in tensors if isinstance(n, str)}
        if not self.wants(names):
            return None
        declared = tensors[self.lookup.entity].get("datatype")
        key = "INT64" if declared in _INT_TENSORS else "BYTES"
        return decode_request(payload, self._request_signature(key))

    def decode_mlflow(self, body: bytes, content_type: str) -> InferRequest | None:
        """The MLflow scoring request, checked, if it is an entity-key request (else None).

        Raises:
            ValidationError: the entity key or a sent column does not fit.
        """
        found = _mlflow_columns(body, content_type, self.lookup.entity)
        if found is None or not self.wants(found[0]):
            return None
        return decode_invocations(body, content_type, self._request_signature(found[1]))

    def _request_signature(self, key_datatype: str) -> Signature:
        """What an entity-key request must carry: the key, then the columns not looked up."""
        entity = self._entity or ColumnSpec(self.lookup.entity, key_datatype)
        sent = [c for c in self._sent if c.name != entity.name]
        return Signature((entity, *sent), self.signature.outputs)

    # -- completing (worker thread) ---------------------------------------------------------------

    def pending(self, request: InferRequest) -> bool:
        """Whether ``request`` still lacks its looked-up columns."""
        return next(iter(self._features)) not in request.columns

    def complete(self, request: InferRequest) -> InferRequest:
        """``request`` with the features looked up: the model's columns, in signature order.

        Raises:
            MissingEntityError: an entity key without a (fresh) value of a feature whose column
                takes no nulls (422).
            ValidationError: a looked-up value does not fit its column.
            InfrastructureError: no online store is configured, or it is unavailable (503).
        """
        online = self.online
        if online is None:
            raise InfrastructureError(
                f"{self._label} needs an online feature store to look up "
                f"'{self.lookup.entity}', and this server has none",
                hint="start the server with `conveyor serve` in the project (features.online "
                "in conveyor.yaml), or send the feature columns",
            )
        keys = [str(k) for k in _values(request.columns[self.lookup.entity])]
        values = self.lookup.fetch(online.store(), keys, required=self._required)
        columns: dict[str, Any] = {}
        for spec in self.signature.inputs:
            looked = values.get(spec.name)
            if looked is None:
                columns[spec.name] = request.columns[spec.name]
                continue
            if spec.datatype == "BOOL":  # SQLite keeps booleans as 0/1
                looked = [v if v is None else bool(v) for v in looked]
            columns[spec.name] = column_values(
                looked,
                spec,
                what=f"feature '{spec.name}' looked up for {self.lookup.entity}",
            )
        return dataclasses.replace(request, columns=columns)


def _values(column: Any) -> list[Any]:
    tolist = getattr(column, "tolist", None)
    return list(tolist() if callable(tolist) else column)


def _mlflow_columns(body: bytes, content_type: str, entity: str) -> tuple[set[str], str] | None:
    """The column names of an MLflow request, and the datatype to read its entity key as
    (``INT64`` when the JSON values are integers, else ``BYTES``); None when it has no names
    (rows of values in signature order) or cannot be read (the usual decoding says why)."""
    media = content_type.partition(";")[0].strip().lower()
    if media == "text/csv":
        return _csv_header(body)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    formats = [k for k in FORMATS if k in payload] if isinstance(payload, dict) else []
    if len(formats) != 1:
        return None
    value = payload[formats[0]]
    columns: dict[str, Any] = {}
    if formats[0] == "dataframe_split" and isinstance(value, dict):
        names, rows = value.get("columns"), value.get("data")
        if isinstance(names, list) and isinstance(rows, list) and rows:
            first = rows[0] if isinstance(rows[0], list) else []
            columns = {n: first[i] if i < len(first) else None for i, n in enumerate(names)}
    elif isinstance(value, dict):  # an object of columns
        columns = {k: v[0] if isinstance(v, list) and v else None for k, v in value.items()}
    elif isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        for record in value:
            for k, v in record.items():
                columns.setdefault(k, v)
    names_found = {n for n in columns if isinstance(n, str)}
    if not names_found:
        return None
    return names_found, "INT64" if type(columns.get(entity)) is int else "BYTES"


def _csv_header(body: bytes) -> tuple[set[str], str] | None:
    """A CSV request's header; its entity keys are read as text (CSV has no types)."""
    try:
        first = body.decode().partition("\n")[0]
        header = next(csv.reader(io.StringIO(first)), [])
    except (UnicodeDecodeError, csv.Error):
        return None
    return set(header), "BYTES"
