"""OpenLineage events for pipeline runs, sent through openlineage-python's transports.

The shape, one pipeline run at a time:

* the **pipeline** is a job (``namespace``: from the settings, ``conveyor://<project>`` by
  default; ``name``: the pipeline's name) and each pipeline run is a run of it: ``START``
  before the first step, ``COMPLETE`` or ``FAIL`` (with the ``errorMessage`` facet) at the end;
* each **step** is a child job ``<pipeline>.<step>`` whose run carries the ``parent`` facet
  naming the pipeline run; its ``START`` and ``COMPLETE``/``FAIL`` are sent as the step finishes
  (the runner reports steps when they end, so both carry their real times, but arrive together).
  A cached step is a run too, marked by the ``conveyor`` facet's ``cacheHit``.

Run ids. OpenLineage wants a UUID; ours are 26 hex digits (48-bit millisecond clock + 56 random
bits, :func:`conveyor.core.ids.new_id`). :func:`run_uuid` lays them out as a UUIDv7 (the
version the spec recommends): the clock becomes the UUID's timestamp and the random bits its
random part, so the mapping is one-to-one and keeps the time order. A step's run is
``uuid5(pipeline run UUID, step name)``: deterministic, and one per step of each pipeline run
(a cache hit has no id of its own in the runner's result).

Datasets. A data file a step reads (``files=``) is ``file://<host><project root>`` + its path
relative to the project (an absolute path outside the project: ``file://<host>`` + that path).
A step's output is ``<artifact store>`` + ``<pipeline>.<step>``: one dataset per step whose
successive contents are versions, given by the ``version`` facet (the content digest). Each has
a ``dataSource`` facet (its namespace) and, when it is a DataFrame/Parquet or CSV, a ``schema``
facet read from the Parquet footer or the CSV header only, never the data. CSV columns have no
type: only a full read could say.

Column lineage, honestly: Conveyor does not see inside a step, so the only link it states is by
name. An output column with the same name as a column of one of the step's inputs is linked to
it, with the transformation ``DIRECT``/``UNKNOWN``: same-named columns usually carry values
through, but how (copied, cast, imputed) is not known. Columns with no same-named input column
are left out, as the spec allows.

Emission never fails a pipeline run: a transport error is logged as one warning, and the rest of
that run's events are dropped (so a dead HTTP endpoint costs one timeout, not one per event). A
no-op ``conveyor run`` answered by the run lock runs nothing and emits nothing.

openlineage-python is the optional extra ``conveyor[openlineage]``, imported only when events
are sent (it costs ~0.3 s to import). With the extra installed and no settings, events go to the
file transport, appended to ``.conveyor/openlineage/events.jsonl``; settings (``enabled``,
``namespace``, ``transport``: an openlineage-python transport config, e.g. ``{type: http, url:
...}``) change that. Settings given while the extra is missing earn a warning naming the extra.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import __version__
from conveyor.core.clock import utcnow

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Mapping

    from openlineage.client.event_v2 import InputDataset, OutputDataset, RunEvent
    from openlineage.client.facet_v2 import RunFacet
    from openlineage.client.transport import Transport

    from conveyor.pipeline import PipelineResult, StepEvent, StepResult
    from conveyor.store.artifacts import ArtifactStore

__all__ = [
    "CONVEYOR_RUN_FACET_SCHEMA",
    "DEFAULT_EVENTS_FILE",
    "PRODUCER",
    "PipelineLineage",
    "open_lineage",
    "run_uuid",
    "step_run_uuid",
]

logger = logging.getLogger(__name__)

#: Where events go by default, relative to the project root (one JSON event per line).
DEFAULT_EVENTS_FILE = ".conveyor/openlineage/events.jsonl"
#: The ``_producer`` of every event and facet Conveyor writes.
PRODUCER = f"urn:conveyor:{__version__}"
_FACET_SCHEMA_URL = f"urn:conveyor:{__version__}:openlineage:ConveyorRunFacet.json"
#: The JSON schema of the ``conveyor`` run facet, which ``_schemaURL`` names.
CONVEYOR_RUN_FACET_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": _FACET_SCHEMA_URL,
    "type": "object",
    "properties": {
        "_producer": {"type": "string"},
        "_schemaURL": {"type": "string"},
        "pipelineRunId": {"type": "string", "description": "Conveyor's pipeline run id"},
        "runId": {"type": "string", "description": "the run row that produced the output"},
        "cacheHit": {"type": "boolean"},
        "cacheKey": {"type": "string"},
        "codeDigest": {"type": "string"},
        "envDigest": {"type": "string"},
    },
    "required": ["_producer", "_schemaURL", "pipelineRunId"],
    "additionalProperties": False,
}
_EXTRA_HINT = "pip install 'conveyor[openlineage]'"
# conveyor.pipeline._codecs.PARQUET, not imported: the codecs are the runner's private business.
_PARQUET_MEDIA = "application/vnd.apache.parquet"
_INDEX_COLUMN = "__index_level_"
_UUID_NAMESPACE = uuid.UUID("6f0d1c0e-6b8e-4f43-9a59-0c0b2d5c1e7a")


def run_uuid(pipeline_run_id: str) -> str:
    """The OpenLineage run id (a UUIDv7) of a Conveyor pipeline run id.

    ``new_id()``'s 48-bit millisecond clock becomes the UUID's timestamp, its 56 random bits
    the UUID's random bits (12 in ``rand_a``, 44 at the top of ``rand_b``): one-to-one and
    time-ordered. An id of another form gets a ``uuid5`` of itself.
    """
    if len(pipeline_run_id) == 26:  # new_id(): 12 + 14 hex digits
        try:
            ms, rand = int(pipeline_run_id[:12], 16), int(pipeline_run_id[12:], 16)
        except ValueError:
            pass
        else:
            rand_a, rand_b = rand >> 44, (rand & ((1 << 44) - 1)) << 18
            value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
            return str(uuid.UUID(int=value))
    return str(uuid.uuid5(_UUID_NAMESPACE, pipeline_run_id))


def step_run_uuid(pipeline_run_id: str, step: str) -> str:
    """The run id of step ``step`` in a pipeline run: ``uuid5(run_uuid(...), step)``."""
    return str(uuid.uuid5(uuid.UUID(run_uuid(pipeline_run_id)), step))


def open_lineage(
    settings: Mapping[str, Any] | None,
    *,
    project: str,
    pipeline: str,
    root: Path,
    artifacts: ArtifactStore,
) -> PipelineLineage | None:
    """The lineage emitter of one pipeline run, or None when events are not to be sent.

    Args:
        settings: ``enabled`` (bool), ``namespace`` (the job namespace) and ``transport`` (an
            openlineage-python transport config dict); None or empty for the defaults.
        project: The project's name, for the default namespace ``conveyor://<project>``.
        pipeline: The pipeline's name: the job name.
        root: The project root: the default events file and data paths are relative to it.
        artifacts: The artifact store, where step outputs live.

    Returns:
        None when ``enabled`` is false, when openlineage-python is not installed (a warning if
        settings asked for events), or when its transport cannot be built (a warning).
    """
    settings = dict(settings or {})
    if settings.get("enabled") is False:
        return None
    if importlib.util.find_spec("openlineage") is None:
        if settings:
            logger.warning(
                "OpenLineage events not sent: openlineage-python is not installed (%s)",
                _EXTRA_HINT,
                extra={"lineage": "not installed"},
            )
        return None
    transport_config = dict(
        settings.get("transport")
        or {"type": "file", "log_file_path": DEFAULT_EVENTS_FILE, "append": True}
    )
    try:
        transport = _transport(transport_config, root)
    except Exception as exc:  # a bad transport config must not stop the run either
        logger.warning(
            "OpenLineage events not sent: transport %r cannot be set up: %s",
            transport_config.get("type"),
            exc,
            extra={"lineage": "transport error"},
        )
        return None
    return PipelineLineage(
        transport=transport,
        namespace=str(settings.get("namespace") or f"conveyor://{project}"),
        pipeline=pipeline,
        root=root.resolve(),
        artifacts=artifacts,
    )


def _transport(config: dict[str, Any], root: Path) -> Transport:
    from openlineage.client.transport import get_default_factory

    if config.get("type") == "file":
        path = Path(str(config.get("log_file_path") or DEFAULT_EVENTS_FILE))
        path = path if path.is_absolute() else root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {"append": True, **config, "log_file_path": str(path)}
    return get_default_factory().create(config)


@dataclass
class _Dataset:
    namespace: str
    name: str
    version: str
    columns: list[tuple[str, str | None]] | None  # (name, type); None when unknown


@dataclass
class PipelineLineage:
    """Sends the OpenLineage events of one pipeline run (see the module docstring)."""

    transport: Transport
    namespace: str
    pipeline: str
    root: Path
    artifacts: ArtifactStore
    pipeline_run_id: str = ""
    _broken: bool = False
    _schemas: dict[str, list[tuple[str, str | None]] | None] = field(default_factory=dict)
    _host: str = field(default_factory=socket.gethostname)

    def start(self, pipeline_run_id: str) -> None:
        """Send the pipeline run's START event."""
        self.pipeline_run_id = pipeline_run_id
        self._send(lambda: [self._event("START", None, utcnow())])

    def wrap(self, on_event: Callable[[StepEvent], None] | None) -> Callable[[StepEvent], None]:
        """An ``on_event`` hook that sends each step's events, then calls ``on_event``."""

        def hook(event: StepEvent) -> None:
            if event.result is not None:
                result, ended = event.result, utcnow()
                self._send(lambda: self._step_events(result, ended))
            if on_event is not None:
                on_event(event)

        return hook

    def complete(self, result: PipelineResult) -> None:
        """Send COMPLETE, with the data files the steps read and the outputs they left."""
        self._send(lambda: [self._event("COMPLETE", None, utcnow(), result.steps)])

    def fail(self, exc: BaseException) -> None:
        """Send FAIL with the error message (and the failed step, when a step failed)."""
        self._send(lambda: [self._event("FAIL", None, utcnow(), error=exc)])

    def _send(self, build: Callable[[], list[RunEvent]]) -> None:
        if self._broken:
            return
        try:
            for event in build():
                self.transport.emit(event)
        except Exception as exc:  # lineage is a report on the run, never a reason to fail it
            self._broken = True
            logger.warning(
                "OpenLineage event not sent (%s: %s); the rest of this run's events are dropped",
                type(exc).__name__,
                exc,
                extra={"lineage": "emit failed", "pipeline_run_id": self.pipeline_run_id},
            )

    def _step_events(self, step: StepResult, ended: dt.datetime) -> list[RunEvent]:
        import datetime as dt

        started = ended - dt.timedelta(seconds=step.duration_s)
        end_type = "FAIL" if step.status == "failed" else "COMPLETE"
        return [
            self._event("START", step, started, [step]),
            self._event(end_type, step, ended, [step]),
        ]

    def _event(
        self,
        event_type: str,
        step: StepResult | None,
        at: dt.datetime,
        steps: list[StepResult] | None = None,
        *,
        error: BaseException | None = None,
    ) -> RunEvent:
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import error_message_run, parent_run

        run_id = run_uuid(self.pipeline_run_id)
        facets: dict[str, RunFacet] = {
            "conveyor": _ConveyorFacet.make(self.pipeline_run_id, step),
        }
        if step is not None:
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=run_id),
                job=parent_run.Job(namespace=self.namespace, name=self.pipeline),
            )
            run_id = step_run_uuid(self.pipeline_run_id, step.name)
        if error is not None:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=str(error), programmingLanguage="PYTHON", producer=PRODUCER
            )
        for facet in facets.values():
            facet._producer = PRODUCER
        inputs, outputs = self._datasets(steps or [], whole_run=step is None)
        return RunEvent(
            eventType=RunState[event_type],
            eventTime=at.isoformat(),
            run=Run(runId=run_id, facets=facets),
            job=Job(
                namespace=self.namespace,
                name=self.pipeline if step is None else f"{self.pipeline}.{step.name}",
            ),
            inputs=inputs,
            outputs=outputs,
            producer=PRODUCER,
        )

    def _datasets(
        self, steps: list[StepResult], *, whole_run: bool
    ) -> tuple[list[InputDataset], list[OutputDataset]]:
        """A step's inputs and output; for the whole run, the files read and every output."""
        from openlineage.client.event_v2 import InputDataset, OutputDataset

        inputs: dict[tuple[str, str], _Dataset] = {}
        outputs: list[tuple[_Dataset, list[_Dataset]]] = []
        for s in steps:
            step_inputs = []
            for kind, name, digest in s.inputs:
                if kind == "file":
                    ds = self._file(name, digest)
                else:
                    ds = self._output(name, digest, _PARQUET_MEDIA)
                step_inputs.append(ds)
                if not whole_run or kind == "file":
                    inputs[ds.namespace, ds.name] = ds
            if s.output_digest is not None:
                outputs.append((self._output(s.name, s.output_digest, s.media_type), step_inputs))
        return (
            [InputDataset(d.namespace, d.name, facets=self._facets(d)) for d in inputs.values()],
            [
                OutputDataset(d.namespace, d.name, facets=self._facets(d, sources))
                for d, sources in outputs
            ],
        )

    def _file(self, path: str, digest: str) -> _Dataset:
        configured = Path(path)
        absolute = configured if configured.is_absolute() else self.root / configured
        try:
            name = absolute.resolve().relative_to(self.root).as_posix()
            namespace = f"file://{self._host}{self.root.as_posix()}"
        except ValueError:
            name, namespace = absolute.as_posix(), f"file://{self._host}"
        return _Dataset(namespace, name, digest, self._schema(digest, absolute))

    def _output(self, step: str, digest: str, media_type: str | None) -> _Dataset:
        namespace = self.artifacts.uri
        if "://" not in namespace:
            namespace = f"file://{self._host}{Path(namespace).as_posix()}"
        columns = None
        if media_type == _PARQUET_MEDIA:
            location = Path(self.artifacts.location(digest))
            columns = self._schema(digest, location) if location.is_absolute() else None
        return _Dataset(namespace, f"{self.pipeline}.{step}", digest, columns)

    def _schema(self, digest: str, path: Path) -> list[tuple[str, str | None]] | None:
        if digest not in self._schemas:
            self._schemas[digest] = _read_columns(path)
        return self._schemas[digest]

    def _facets(self, ds: _Dataset, sources: list[_Dataset] | None = None) -> dict[str, Any]:
        from openlineage.client.facet_v2 import (
            column_lineage_dataset,
            dataset_version_dataset,
            datasource_dataset,
            schema_dataset,
        )

        facets: dict[str, Any] = {
            "dataSource": datasource_dataset.DatasourceDatasetFacet(
                name=ds.namespace, uri=ds.namespace
            ),
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=ds.version
            ),
        }
        if ds.columns is not None:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[
                    schema_dataset.SchemaDatasetFacetFields(name=n, type=t, ordinal_position=i)
                    for i, (n, t) in enumerate(ds.columns, 1)
                ]
            )
            links = _same_name_links(ds, sources or [])
            if links:
                facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
                    fields={
                        column: column_lineage_dataset.Fields(
                            inputFields=[
                                column_lineage_dataset.InputField(
                                    namespace=src.namespace,
                                    name=src.name,
                                    field=column,
                                    transformations=[
                                        column_lineage_dataset.Transformation(
                                            type="DIRECT",
                                            subtype="UNKNOWN",
                                            description="same column name; how the value was "
                                            "derived is not known",
                                        )
                                    ],
                                )
                                for src in found
                            ]
                        )
                        for column, found in links.items()
                    }
                )
        for facet in facets.values():
            facet._producer = PRODUCER
        return facets


def _same_name_links(output: _Dataset, sources: list[_Dataset]) -> dict[str, list[_Dataset]]:
    links: dict[str, list[_Dataset]] = {}
    for column, _ in output.columns or []:
        found = [s for s in sources if column in {c for c, _ in s.columns or []}]
        if found:
            links[column] = found
    return links


def _read_columns(path: Path) -> list[tuple[str, str | None]] | None:
    """Column names and types from a Parquet footer or a CSV header; None for anything else."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
            if head == b"PAR1":
                import pyarrow.parquet as pq

                schema = pq.read_schema(path)
                return [
                    (f.name, str(f.type)) for f in schema if not f.name.startswith(_INDEX_COLUMN)
                ]
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as text:
                header = next(csv.reader(text), None)
            return None if header is None else [(name, None) for name in header]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        logger.debug("no schema for %s: %s", path, exc)
    return None


class _ConveyorFacet:
    """Builds the ``conveyor`` run facet: our ids and digests, for a reader who wants them."""

    @staticmethod
    def make(pipeline_run_id: str, step: StepResult | None) -> RunFacet:
        from openlineage.client.facet_v2 import RunFacet

        values: dict[str, Any] = {"pipelineRunId": pipeline_run_id}
        if step is not None:
            values.update(
                runId=step.run_id,
                cacheHit=step.status == "cached",
                cacheKey=step.cache_key,
                codeDigest=step.code_digest,
            )
        facet = RunFacet(producer=PRODUCER).with_additional_properties(**values)
        # A custom facet names its own schema (CONVEYOR_RUN_FACET_SCHEMA), not RunFacet's.
        facet._schemaURL = _FACET_SCHEMA_URL
        return facet  # type: ignore[return-value]  # a RunFacet subclass, typed as its base
