"""``conveyor reproduce MODEL VERSION``: rebuild a version from its records and compare.

A version is reproduced when, from what its pipeline run recorded, a rebuild gives the same
bundle: the code snapshot extracted into a clean temporary folder, the data files the run read
(taken from the project folder by their recorded paths and checked against their recorded
digests), the recorded parameters (and so the same seeds), run against *scratch* stores. The
project's own stores would answer every step from the cache and rebuild nothing.

Bundles hold content only, so a deterministic pipeline gives a bit-identical bundle. When it
does not, the rebuilt metrics are compared with the registered ones within the policy's
tolerances, and the report says what differed:

- **environment**: Python, platform and the distributions added, removed or changed since the
  run (from the recorded environment document, :func:`conveyor.pipeline._env.environment_document`);
- **data**: each input file whose content digest is not the recorded one;
- **code**: each step whose code digest in the rebuild differs from the recorded run's (the
  snapshot is what runs, so an edit to the project after the run changes nothing here; a
  damaged snapshot does);
- else **nondeterministic**: the same inputs gave a different output, from the first step whose
  output differs.

What cannot be seen: data read without ``files=`` (a database, a URL), and code outside the
project folder that is not an installed distribution.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConveyorError, UsageError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from conveyor.packaging import Manifest
    from conveyor.project._context import Project
    from conveyor.registry import ModelVersion, Policy
    from conveyor.registry.policy import RebuildPolicy

__all__ = ["ReproduceReport", "rebuild_policy", "reproduce"]

logger = logging.getLogger(__name__)

# A metrics dict is small; larger JSON outputs are not read when looking for one.
_METRICS_MAX_BYTES = 64 * 1024
_NO_RECORDS_HINT = (
    "it was registered before reproducibility records, or without a pipeline run; "
    "run `conveyor run --force` to register a version with them"
)


@dataclass(frozen=True)
class StepComparison:
    """One step: its code digest and output in the recorded run and in the rebuild."""

    step: str
    recorded_code: str
    rebuilt_code: str | None
    recorded_output: str | None
    rebuilt_output: str | None

    @property
    def code_changed(self) -> bool:
        return self.rebuilt_code is not None and self.rebuilt_code != self.recorded_code

    @property
    def output_changed(self) -> bool:
        return self.rebuilt_output is not None and self.rebuilt_output != self.recorded_output


@dataclass(frozen=True)
class MetricComparison:
    """A registered metric, its rebuilt value, and whether they agree within the tolerance."""

    metric: str
    registered: float
    rebuilt: float | None
    tolerance: float

    @property
    def difference(self) -> float | None:
        return None if self.rebuilt is None else abs(self.rebuilt - self.registered)

    @property
    def within(self) -> bool:
        diff = self.difference
        return diff is not None and diff <= self.tolerance


@dataclass(frozen=True)
class ReproduceReport:
    """What ``conveyor reproduce`` found; ``reproduced`` is the verdict (exit code 0 or 1)."""

    model: str
    version: int
    pipeline_run_id: str
    registered_digest: str
    rebuilt_digest: str | None
    identical: bool
    reproduced: bool
    #: ``bit-identical``, ``within tolerance`` or ``not reproduced``.
    verdict: str
    #: One line per thing that differed: environment, data, code, params, or nondeterminism.
    causes: list[str]
    seed: int | None
    git_commit: str | None
    git_dirty: bool | None
    steps: list[StepComparison] = field(default_factory=list)
    metrics: list[MetricComparison] = field(default_factory=list)
    #: path -> (recorded digest, current digest or None when missing).
    data_changed: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    #: ``python``/``platform``: (recorded, now); ``added``/``removed``: name -> version;
    #: ``changed``: name -> (recorded, now).
    environment: dict[str, Any] = field(default_factory=dict)
    #: Bundle files (manifest fields) that differ between the registered and rebuilt bundles.
    bundle_differences: list[str] = field(default_factory=list)
    #: Why the rebuild did not finish, when it did not.
    rebuild_error: str | None = None
    #: The rebuild folder, when kept (``--keep``).
    workdir: str | None = None

    @property
    def summary(self) -> str:
        head = f"model '{self.model}' version {self.version}: {self.verdict}"
        return f"{head} ({'; '.join(self.causes)})" if self.causes else head

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary
        out["steps"] = [
            {**asdict(s), "code_changed": s.code_changed, "output_changed": s.output_changed}
            for s in self.steps
        ]
        out["metrics"] = [
            {**asdict(m), "difference": m.difference, "within": m.within} for m in self.metrics
        ]
        out["data_changed"] = {
            path: {"recorded": recorded, "now": now}
            for path, (recorded, now) in self.data_changed.items()
        }
        return out


@dataclass
class _Recorded:
    pipeline_run_id: str
    params: dict[str, Any]
    seed: int | None
    git_commit: str | None
    git_dirty: bool | None
    code_snapshot: str
    environment: str
    steps: dict[str, tuple[str, str | None]]  # step -> (code digest, output digest)
    files: dict[str, str]  # path as configured -> digest


def rebuild_policy(policy: Policy) -> RebuildPolicy:
    """The tolerances ``conveyor reproduce`` applies: those of the first gated stage whose
    ``reproducible:`` block rebuilds, else none (metrics must be equal)."""
    from conveyor.registry.policy import GATED_STAGES, RebuildPolicy

    for stage in GATED_STAGES:
        rebuild = policy.stage(stage).rebuild
        if rebuild is not None:
            return rebuild
    return RebuildPolicy()


def reproduce(
    project: Project,
    *,
    model: str,
    version: int,
    actor: str,
    tolerance: RebuildPolicy | None = None,
    keep: bool = False,
) -> ReproduceReport:
    """Rebuild ``version`` of ``model`` from its records in a clean folder and compare.

    Args:
        project: The open project; its folder provides the data files, by recorded path.
        model: The model name.
        version: The version number.
        actor: Who asks, recorded in the scratch store only.
        tolerance: Metric tolerances for a rebuild that is not bit-identical; from the policy
            (:func:`rebuild_policy`) if not given.
        keep: Keep the rebuild folder (its path is in the report) instead of deleting it.

    Raises:
        NotFoundError: no such model or version.
        UsageError: the version has no recorded pipeline run to rebuild from.
    """
    from conveyor.registry import get_version, load_policy

    current = get_version(project.metadata, model, version)
    recorded = _records(project, current)
    if tolerance is None:
        tolerance = rebuild_policy(load_policy(project.config.policies))
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-reproduce-"))
    saved_path = list(sys.path)
    try:
        return _rebuild(project, current, recorded, tolerance, workdir, actor, keep=keep)
    finally:
        sys.path[:] = saved_path
        _forget_modules(workdir)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _records(project: Project, current: ModelVersion) -> _Recorded:
    """The records of the pipeline run that registered ``current``.

    The version's ``run_id`` is the execution of its model step, which may be older than the
    run that registered it: a run that changed only the evaluation data re-runs the metrics
    step, reuses the cached model, and registers a new version. So every recorded pipeline run
    whose model step gave the same output is a candidate, newest first, and the one taken is
    the first whose params are the bundle's and one of whose JSON outputs is the version's
    metrics; else the model step's own run.
    """
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import pipeline_run, run, run_output

    label = f"model '{current.model}' version {current.version}"
    if current.run_id is None:
        raise UsageError(f"{label} has no recorded pipeline run", hint=_NO_RECORDS_HINT)
    with project.metadata.read() as conn:
        origin = conn.execute(
            sa.select(run.c.pipeline_run_id, run.c.step, run_output.c.ref)
            .select_from(run.outerjoin(run_output, run_output.c.run_id == run.c.id))
            .where(run.c.id == current.run_id)
        ).first()
        rows: list[Any] = []
        if origin is not None:
            same_model = (
                sa.select(run.c.pipeline_run_id)
                .join(run_output, run_output.c.run_id == run.c.id)
                .where(run.c.step == origin.step, run_output.c.ref == origin.ref)
            )
            rows = list(
                conn.execute(
                    sa.select(pipeline_run)
                    .where(
                        sa.or_(
                            pipeline_run.c.id == origin.pipeline_run_id,
                            pipeline_run.c.id.in_(same_model),
                        ),
                        pipeline_run.c.code_snapshot.is_not(None),
                        pipeline_run.c.environment.is_not(None),
                    )
                    .order_by(pipeline_run.c.started_at.desc())
                )
                .mappings()
                .all()
            )
        if origin is None or not rows:
            raise UsageError(f"{label} has no recorded pipeline run", hint=_NO_RECORDS_HINT)
        row = _registering_run(project, conn, current, rows, origin.pipeline_run_id)
        return _load_records(conn, row)


def _registering_run(
    project: Project,
    conn: sa.Connection,
    current: ModelVersion,
    rows: list[Any],
    origin: str,
) -> Any:
    if len(rows) == 1:
        return rows[0]
    import sqlalchemy as sa

    from conveyor.packaging import Manifest
    from conveyor.packaging._manifest import plain_params
    from conveyor.pipeline._codecs import JSON, decode
    from conveyor.store.metadata.schema import artifact, run, run_output

    try:
        manifest = Manifest.from_yaml(project.artifacts.get_bytes(current.artifact_digest))
    except ConveyorError:
        manifest = None
    for row in rows:
        if manifest is not None and plain_params(dict(row["params"])) != manifest.params:
            continue
        if not current.metrics:
            return row
        outputs = conn.execute(
            sa.select(run_output.c.ref)
            .join(run, run.c.id == run_output.c.run_id)
            .join(artifact, artifact.c.digest == run_output.c.ref)
            .where(
                run.c.pipeline_run_id == row["id"],
                artifact.c.media_type == JSON,
                artifact.c.size <= _METRICS_MAX_BYTES,
            )
        ).scalars()
        for digest in outputs:
            value = decode(project.artifacts.get_bytes(digest), JSON)
            if isinstance(value, dict) and value == current.metrics:
                return row
    return next((r for r in rows if r["id"] == origin), rows[0])


def _load_records(conn: sa.Connection, row: Any) -> _Recorded:
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import run, run_input, run_output

    steps = conn.execute(
        sa.select(run.c.id, run.c.step, run.c.code_digest, run_output.c.ref)
        .select_from(run.outerjoin(run_output, run_output.c.run_id == run.c.id))
        .where(run.c.pipeline_run_id == row["id"])
    ).all()
    files = conn.execute(
        sa.select(run_input.c.name, run_input.c.ref).where(
            run_input.c.run_id.in_([s.id for s in steps]), run_input.c.kind == "file"
        )
    ).all()
    return _Recorded(
        pipeline_run_id=str(row["id"]),
        params=dict(row["params"]),
        seed=row["seed"],
        git_commit=row["git_commit"],
        git_dirty=row["git_dirty"],
        code_snapshot=row["code_snapshot"],
        environment=row["environment"],
        steps={str(s.step): (str(s.code_digest), s.ref) for s in steps},
        files={str(f.name): str(f.ref) for f in files},
    )


def _rebuild(
    project: Project,
    current: ModelVersion,
    recorded: _Recorded,
    tolerance: RebuildPolicy,
    workdir: Path,
    actor: str,
    *,
    keep: bool,
) -> ReproduceReport:
    from conveyor.pipeline._env import environment_document
    from conveyor.pipeline._provenance import extract_snapshot

    source = workdir / "project"
    extract_snapshot(project.artifacts.get_bytes(recorded.code_snapshot), source)
    data_changed = _copy_data(project.config.root, source, recorded.files)
    document = json.loads(project.artifacts.get_bytes(recorded.environment))
    environment = _environment_diff(document, environment_document())

    rebuilt_digest: str | None = None
    rebuilt_metrics: dict[str, float] | None = None
    rebuilt_steps: dict[str, tuple[str, str | None]] = {}
    manifest: Manifest | None = None
    error: str | None = None
    missing = [p for p, (_, now) in data_changed.items() if now is None]
    if missing:
        error = f"input {', '.join(missing)} no longer exists in {project.config.root}"
    else:
        try:
            rebuilt_digest, rebuilt_metrics, rebuilt_steps, manifest = _run(
                recorded, source, workdir, actor
            )
        except ConveyorError as exc:
            error = str(exc)
    identical = rebuilt_digest == current.artifact_digest
    metrics = [
        MetricComparison(
            name,
            value,
            None if rebuilt_metrics is None else rebuilt_metrics.get(name),
            tolerance.tolerance(name),
        )
        for name, value in sorted(current.metrics.items())
    ]
    reproduced = identical or (
        rebuilt_digest is not None and bool(metrics) and all(m.within for m in metrics)
    )
    steps = [
        StepComparison(
            name,
            code,
            rebuilt_steps[name][0] if name in rebuilt_steps else None,
            output,
            rebuilt_steps[name][1] if name in rebuilt_steps else None,
        )
        for name, (code, output) in recorded.steps.items()
    ]
    differences: list[str] = []
    causes: list[str] = []
    if not identical:
        if manifest is not None:
            differences = _bundle_differences(project, current, manifest)
        causes = _causes(data_changed, environment, steps, error, differences)
    if identical:
        verdict = "bit-identical"
    else:
        verdict = "within tolerance" if reproduced else "not reproduced"
    return ReproduceReport(
        model=current.model,
        version=current.version,
        pipeline_run_id=recorded.pipeline_run_id,
        registered_digest=current.artifact_digest,
        rebuilt_digest=rebuilt_digest,
        identical=identical,
        reproduced=reproduced,
        verdict=verdict,
        causes=causes,
        seed=recorded.seed,
        git_commit=recorded.git_commit,
        git_dirty=recorded.git_dirty,
        steps=steps,
        metrics=metrics,
        data_changed={p: v for p, v in data_changed.items() if v[0] != v[1]},
        environment=environment,
        bundle_differences=differences,
        rebuild_error=error,
        workdir=str(workdir) if keep else None,
    )


def _copy_data(root: Path, dest: Path, files: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """Copy each recorded input from the project folder into the rebuild folder (absolute
    paths are read where they are), and return every input's (recorded, current) digest."""
    from conveyor.pipeline._filedigest import path_digest

    found: dict[str, tuple[str, str | None]] = {}
    for name, recorded in sorted(files.items()):
        if name.startswith("..."):
            # The edge name keeps the end of a path too long for it: the file cannot be found.
            found[name] = (recorded, None)
            continue
        path = Path(name)
        where = path if path.is_absolute() else root / path
        if not where.exists():
            found[name] = (recorded, None)
            continue
        found[name] = (recorded, path_digest(where))
        if path.is_absolute():
            continue
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if where.is_dir():
            shutil.copytree(where, target, dirs_exist_ok=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(where), str(target))
    return found


def _link_or_copy(source: str, target: str) -> None:
    """A hard link where the filesystem allows (a 1 GiB file costs nothing), else a copy."""
    try:
        if os.path.lexists(target):
            os.unlink(target)
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _environment_diff(recorded: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """What differs between two environment documents (empty when nothing does)."""
    diff: dict[str, Any] = {}
    for key in ("python", "implementation", "platform", "machine"):
        if recorded.get(key) != now.get(key):
            diff[key] = [recorded.get(key), now.get(key)]
    before, after = _pins(recorded), _pins(now)
    added = {n: after[n] for n in sorted(after.keys() - before.keys())}
    removed = {n: before[n] for n in sorted(before.keys() - after.keys())}
    changed = {
        n: [before[n], after[n]]
        for n in sorted(before.keys() & after.keys())
        if before[n] != after[n]
    }
    for key, value in (("added", added), ("removed", removed), ("changed", changed)):
        if value:
            diff[key] = value
    return diff


def _pins(document: dict[str, Any]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for pin in document.get("distributions", []):
        name, _, version = str(pin).partition("==")
        # Two installs of one name on sys.path: both versions, as the digest sees them.
        pins[name] = f"{pins[name]}, {version}" if name in pins else version
    return pins


def _run(
    recorded: _Recorded, source: Path, workdir: Path, actor: str
) -> tuple[str, dict[str, float], dict[str, tuple[str, str | None]], Manifest]:
    """Run the snapshot's pipeline with the recorded params on scratch stores, and package
    the model as ``conveyor run`` does; the bundle digest, metrics, steps and manifest."""
    from conveyor.core.config import load_config
    from conveyor.core.errors import ConfigError
    from conveyor.packaging import Model, build_bundle
    from conveyor.pipeline import load_pipeline, run_pipeline
    from conveyor.project._workflows import _metrics
    from conveyor.store.artifacts import LocalArtifactStore
    from conveyor.store.metadata import MetadataStore

    config = load_config(
        source,
        {"store": str(workdir / "metadata.db"), "artifacts": str(workdir / "artifacts")},
    )
    section = config.model
    if config.pipeline is None or section is None:
        raise ConfigError(
            "the recorded conveyor.yaml names no pipeline or no model: nothing to rebuild",
            hint="the code snapshot is incomplete; run the pipeline again to record a new one",
        )
    pipeline = load_pipeline(config.pipeline, source)
    metadata = MetadataStore.open(str(config.store))
    artifacts = LocalArtifactStore(workdir / "artifacts")
    try:
        result = run_pipeline(
            pipeline,
            params=recorded.params,
            metadata=metadata,
            artifacts=artifacts,
            actor=actor,
            root=source,
        )
    finally:
        metadata.close()
    model = result.load(section.step)
    if not isinstance(model, Model):
        raise ConfigError(
            f"step '{section.step}' returned {type(model).__name__} in the rebuild, "
            "not a conveyor.Model",
        )
    metrics = _metrics(result.load(section.metrics), section.metrics) if section.metrics else {}
    bundle = build_bundle(
        artifacts, model, name=section.name, metrics=metrics, params=recorded.params
    )
    steps = {s.name: (s.code_digest, s.output_digest) for s in result.steps}
    return bundle.digest, metrics, steps, bundle.manifest


def _bundle_differences(project: Project, current: ModelVersion, rebuilt: Manifest) -> list[str]:
    """Which parts of the registered bundle's manifest the rebuilt one does not share."""
    from conveyor.packaging import Manifest

    try:
        registered = Manifest.from_yaml(
            project.artifacts.get_bytes(current.artifact_digest),
            source=f"artifact {current.artifact_digest}",
        )
    except ConveyorError as exc:
        return [f"the registered manifest cannot be read: {exc}"]
    differences = [
        f"file {path}"
        for path in sorted(registered.files.keys() | rebuilt.files.keys())
        if getattr(registered.files.get(path), "digest", None)
        != getattr(rebuilt.files.get(path), "digest", None)
    ]
    for name in ("metrics", "params", "signature", "env", "trusted_types", "name", "flavor"):
        if getattr(registered, name) != getattr(rebuilt, name):
            differences.append(name)
    return differences


def _causes(
    data: dict[str, tuple[str, str | None]],
    environment: dict[str, Any],
    steps: list[StepComparison],
    error: str | None,
    differences: list[str],
) -> list[str]:
    causes: list[str] = []
    if "params" in differences:
        causes.append("params: the registered bundle was packaged with other params")
    if environment:
        causes.append("environment: " + _describe_environment(environment))
    for path, (recorded, now) in data.items():
        if now is None:
            causes.append(f"data missing: {path} (recorded {recorded})")
        elif now != recorded:
            causes.append(f"data changed: {path} digest now {now}, recorded {recorded}")
    code = [s.step for s in steps if s.code_changed]
    if code:
        causes.append(f"code changed in step {', '.join(code)}")
    if error is not None:
        causes.append(f"rebuild failed: {error}")
    elif not causes:
        first = next((s.step for s in steps if s.output_changed), None)
        where = f" (first differing output: step {first})" if first else ""
        causes.append(f"nondeterministic: same inputs, different output{where}")
    return causes


def _describe_environment(diff: dict[str, Any]) -> str:
    parts = [
        f"{key} {old} -> {new}"
        for key, (old, new) in (
            (k, diff[k]) for k in ("python", "implementation", "platform", "machine") if k in diff
        )
    ]
    parts += [f"{name} {version} added" for name, version in diff.get("added", {}).items()]
    parts += [f"{name} {version} removed" for name, version in diff.get("removed", {}).items()]
    parts += [f"{name} {old} -> {new}" for name, (old, new) in diff.get("changed", {}).items()]
    return ", ".join(parts)


def _forget_modules(workdir: Path) -> None:
    """Drop the rebuild's modules: the project's next import must find its own files."""
    prefix = str(workdir.resolve())
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(prefix):
            del sys.modules[name]
