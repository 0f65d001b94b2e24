"""The promotion workflow: check the policy, gather the evidence, then let the registry decide.

``conveyor promote MODEL VERSION --to STAGE`` runs in three phases:

1. **Before anything runs**, everything that can be wrong in the request or the policy is
   refused with its file and line: a move that skips a stage, a check naming a metric no
   evaluation computes, a slice or sensitive column the evaluation data lacks, an inference
   budget or data-check block with a wrong key or type.
2. **Evidence** is gathered outside any transaction, because it takes time: the version is
   evaluated on the policy's evaluation dataset (registered by content digest, so the same bytes
   are the same dataset version), and so is the version in production when a check compares
   with it; evaluations are stored and reused for the same dataset version and settings.
   Relative checks ``with NN% confidence`` pair the two versions' predictions row by row
   (DeLong for ROC AUC, a paired bootstrap otherwise); the inference test serves the bundle in
   a real server process; data checks compare the evaluation data with their reference.
3. The **registry decides** in one write transaction: the model must be in the state the
   evidence was computed on (else a conflict: of two concurrent promotions exactly one wins),
   approvals are counted, every result is recorded with the policy's digest, and the version
   moves only if everything passed.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConfigError, ConflictError

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

    from conveyor.project._context import Project
    from conveyor.registry import (
        Check,
        CheckResult,
        EvaluationSpec,
        ModelVersion,
        Policy,
        PromotionResult,
        StoredEvaluation,
    )
    from conveyor.registry.policy import RebuildPolicy

__all__ = ["EvaluatedVersion", "evaluate_version", "promote"]

logger = logging.getLogger(__name__)

_SLICE_PREFIX = "slice."


@dataclass(frozen=True)
class EvaluatedVersion:
    """A version's stored evaluation with its predictions and labels, ready to compare."""

    stored: StoredEvaluation
    dataset_version: str
    y_true: npt.NDArray[Any]
    predictions: npt.NDArray[Any]


def promote(
    project: Project, *, model: str, version: int, to: str, actor: str, reason: str = ""
) -> PromotionResult:
    """Promote ``version`` of ``model`` to ``to`` through the gates of ``policies.yaml``.

    Raises:
        ConfigError: the policy is invalid for this model or data (file and line named).
        ConflictError: the move is not allowed, or the model changed while the gates ran.
        CheckFailedError: a check failed; nothing moved, every result is recorded.
        ApprovalPendingError: every check passed and reviews are missing.
        FeatureMismatchError: to production, when the model's feature service now serves other
            feature versions than it was trained with.
    """
    from conveyor.registry import (
        Evidence,
        gates_for,
        get_version,
        load_policy,
        model_state,
        production_version,
    )
    from conveyor.registry import promote as registry_promote

    policy = load_policy(project.config.policies)
    store = project.metadata
    current = get_version(store, model, version)
    gates = gates_for(current, to)  # refuses a skipped stage before anything runs
    if to == "production":
        from conveyor.project._deploy import check_features

        # Production is served: its features must be the versions it was trained with.
        check_features(project, model=model, version=version)
    with store.read() as conn:
        token = model_state(conn, model)
    production = production_version(store, model)
    computed = any(_needs_evidence(policy, stage) for stage in gates)
    if not computed:
        return registry_promote(
            store, model=model, version=version, to=to, policy=policy, actor=actor, reason=reason
        )
    plan = _preflight(project, policy, gates, current)
    checks: list[CheckResult] = []
    dataset_id: str | None = None
    candidate: EvaluatedVersion | None = None
    baseline: EvaluatedVersion | None = None
    if plan.spec is not None:
        candidate = evaluate_version(project, current, plan.spec, actor=actor)
        dataset_id = candidate.dataset_version
        if production is not None and production.version != version and plan.relative:
            baseline = evaluate_version(project, production, plan.spec, actor=actor)
    for stage in gates:
        stage_policy = policy.stage(stage)
        for check in stage_policy.checks:
            checks.append(
                _metric_check(check, current, production, candidate, baseline, policy.evaluation)
            )
        if stage_policy.inference is not None:
            checks.extend(_inference_checks(project, current, stage, plan, policy))
        if stage_policy.data_checks is not None:
            checks.extend(_data_checks(project, current, stage, plan, actor=actor))
        if stage_policy.reproducible:
            checks.append(
                _reproducible_check(
                    project, current, stage, rebuild=stage_policy.rebuild, actor=actor
                )
            )
    evidence = Evidence(checks=checks, state_token=token, dataset_version=dataset_id)
    return registry_promote(
        store,
        model=model,
        version=version,
        to=to,
        policy=policy,
        actor=actor,
        reason=reason,
        evidence=evidence,
    )


def _needs_evidence(policy: Policy, stage: str) -> bool:
    s = policy.stage(stage)
    return (
        bool(
            policy.evaluation is not None
            or s.inference is not None
            or s.data_checks is not None
            or s.reproducible
        )
        and not s.empty
    )


# ----------------------------------------------------------------------------- preflight


@dataclass(frozen=True)
class _Plan:
    spec: EvaluationSpec | None
    data_path: Path | None
    relative: bool
    budgets: dict[str, Any]
    data_settings: dict[str, Any]


def _preflight(
    project: Project, policy: Policy, gates: tuple[str, ...], current: ModelVersion
) -> _Plan:
    """Every error of the request or the policy, found before anything runs."""
    from conveyor.evaluation import METRICS

    spec = policy.evaluation
    name = policy.source.name if policy.source is not None else "policies.yaml"
    data_path: Path | None = None
    if spec is not None:
        data_path = _evaluation_data(project, spec, name)
    known = set(METRICS) | set(current.metrics)
    relative = False
    budgets: dict[str, Any] = {}
    data_settings: dict[str, Any] = {}
    for stage in gates:
        stage_policy = policy.stage(stage)
        for check in stage_policy.checks:
            for metric in {check.metric, check.reference} - {None}:
                assert metric is not None
                _known_metric(metric, check, known, spec)
            relative = relative or check.relative
        if stage_policy.inference is not None:
            from conveyor.evaluation.loadtest import InferenceBudget

            where = stage_policy.sources.get("inference", name)
            budgets[stage] = InferenceBudget.from_mapping(stage_policy.inference, where=where)
            if data_path is None:
                raise ConfigError(
                    f"{where}: the inference test replays rows of the evaluation data, and "
                    f"{name} has no `evaluation:` section",
                    hint="add `evaluation: {data: <file>, target: <label column>}`",
                )
        if stage_policy.data_checks is not None:
            from conveyor.data.gate import DataGateSettings

            where = stage_policy.sources.get("data_checks", name)
            data_settings[stage] = DataGateSettings.from_mapping(
                stage_policy.data_checks, where=where, root=project.config.root
            )
    return _Plan(spec, data_path, relative, budgets, data_settings)


def _evaluation_data(project: Project, spec: EvaluationSpec, name: str) -> Path:
    from conveyor.data.versions import read_columns

    path = (project.config.root / spec.data).resolve()
    if not path.exists():
        raise ConfigError(
            f"{spec.source}: evaluation.data {spec.data} does not exist ({path})",
            hint="point `evaluation.data` at the labelled dataset every version is measured on",
        )
    columns = read_columns(path)
    wanted = [("target", spec.target)]
    wanted += [("slices", c) for c in spec.slices] + [("sensitive", c) for c in spec.sensitive]
    for key, column in wanted:
        if column not in columns:
            close = difflib.get_close_matches(column, columns, n=1)
            suggestion = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"{spec.sources.get(key, spec.source)}: evaluation.{key} names column "
                f"'{column}', which {spec.data} "
                "does not have",
                hint=f"{suggestion}its columns: {', '.join(columns)}",
            )
    return path


def _known_metric(metric: str, check: Check, known: set[str], spec: EvaluationSpec | None) -> None:
    if metric.startswith(_SLICE_PREFIX):
        parts = metric.split(".", 2)
        declared = (*spec.slices, *spec.sensitive) if spec is not None else ()
        if len(parts) != 3 or parts[2] not in known:
            raise ConfigError(
                f"{check.source}: '{metric}' is not a slice metric",
                hint="write `slice.<column>.<metric>` (the worst group of a column declared in "
                "evaluation.slices), e.g. `slice.contract.recall >= 0.5`",
            )
        if parts[1] not in declared:
            raise ConfigError(
                f"{check.source}: check {check.text!r} uses slice column '{parts[1]}', which "
                "the evaluation does not declare",
                hint=f"add it to `evaluation.slices` (declared: {', '.join(declared) or 'none'})",
            )
        return
    if metric not in known:
        close = difflib.get_close_matches(metric, sorted(known), n=1)
        suggestion = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"{check.source}: check {check.text!r} names unknown metric '{metric}'",
            hint=f"{suggestion}known metrics: {', '.join(sorted(known))}",
        )


# ----------------------------------------------------------------------------- evaluation


def evaluate_version(
    project: Project, version: ModelVersion, spec: EvaluationSpec, *, actor: str
) -> EvaluatedVersion:
    """Evaluate ``version`` on the spec's dataset, or reuse its stored evaluation there.

    The dataset is registered by content digest first, so an edited file is a new dataset
    version and is evaluated anew.
    """
    import numpy as np

    from conveyor.data.versions import read_dataset, register_dataset
    from conveyor.registry import find_evaluation, record_evaluation

    path = (project.config.root / spec.data).resolve()
    dataset = register_dataset(project.metadata, path, name=path.stem, actor=actor)
    config_digest = spec.digest()
    with project.metadata.read() as conn:
        stored = find_evaluation(
            conn,
            model=version.model,
            version=version.version,
            dataset_version=dataset.id,
            config_digest=config_digest,
        )
    frame = read_dataset(path)
    y_true = frame[spec.target].to_numpy()
    if stored is not None and stored.predictions_digest is not None:
        predictions = _load_array(project, stored.predictions_digest)
        if len(predictions) == len(y_true):
            return EvaluatedVersion(stored, dataset.id, y_true, predictions)
    from conveyor.evaluation import evaluate_predictions, predict_for_evaluation
    from conveyor.packaging import load_bundle

    loaded = load_bundle(project.artifacts, version.artifact_digest)
    predictions, task = predict_for_evaluation(loaded, frame)
    report = evaluate_predictions(
        y_true,
        predictions,
        task=task,
        frame=frame,
        slices=spec.slices,
        sensitive=spec.sensitive,
        threshold=spec.threshold,
        n_bins=spec.bins,
        min_group_size=spec.min_group_size,
    )
    ref = project.artifacts.put_bytes(_array_bytes(np.asarray(predictions)))
    body = report.to_dict()
    stored = record_evaluation(
        project.metadata,
        model=version.model,
        version=version.version,
        dataset_version=dataset.id,
        config_digest=config_digest,
        metrics=dict(body["metrics"]),
        report=body,
        predictions_digest=ref.digest,
        actor=actor,
    )
    return EvaluatedVersion(stored, dataset.id, y_true, np.asarray(predictions))


def _array_bytes(array: np.ndarray[Any, Any]) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _load_array(project: Project, digest: str) -> npt.NDArray[Any]:
    import io

    import numpy as np

    loaded: npt.NDArray[Any] = np.load(
        io.BytesIO(project.artifacts.get_bytes(digest)), allow_pickle=False
    )
    return loaded


# ----------------------------------------------------------------------------- checks


def _metric_check(
    check: Check,
    current: ModelVersion,
    production: ModelVersion | None,
    candidate: EvaluatedVersion | None,
    baseline: EvaluatedVersion | None,
    spec: EvaluationSpec | None,
) -> CheckResult:
    metrics = _metrics_of(current, candidate, spec)
    if check.metric not in metrics:
        return check.evaluate(metrics)
    if not check.relative:
        result = check.evaluate(metrics)
        return _with_evidence(result, candidate, check.metric)
    if production is None or production.version == current.version:
        return check.evaluate(metrics)
    base_metrics = _metrics_of(production, baseline, spec)
    if check.confidence is None or candidate is None or baseline is None:
        return check.evaluate(
            metrics, production_version=production.version, production_metrics=base_metrics
        )
    return _confident_check(check, production, candidate, baseline, spec)


def _metrics_of(
    version: ModelVersion, evaluated: EvaluatedVersion | None, spec: EvaluationSpec | None
) -> dict[str, float]:
    """The registered metrics, overlaid by the evaluation's (which are tied to a dataset)."""
    metrics = dict(version.metrics)
    if evaluated is None:
        return metrics
    for key, value in evaluated.stored.metrics.items():
        if value is not None:
            metrics[key] = float(value)
    if spec is not None:
        metrics.update(_worst_slices(evaluated.stored.report, spec))
    return metrics


def _worst_slices(report: dict[str, Any], spec: EvaluationSpec) -> dict[str, float]:
    """``slice.<column>.<metric>``: the worst value over the column's groups large enough to
    judge (``min_group_size`` rows), worst by the metric's direction."""
    from conveyor.evaluation import METRICS

    out: dict[str, float] = {}
    slices = report.get("slices") or {}
    for column, groups in slices.items():
        for group in groups.values():
            if not isinstance(group, dict) or (group.get("count") or 0) < spec.min_group_size:
                continue
            for metric, value in group.items():
                info = METRICS.get(metric)
                if info is None or value is None or not isinstance(value, int | float):
                    continue
                key = f"{_SLICE_PREFIX}{column}.{metric}"
                worse = min if info.direction == "higher" else max
                out[key] = worse(out[key], float(value)) if key in out else float(value)
    return out


def _with_evidence(
    result: CheckResult, evaluated: EvaluatedVersion | None, metric: str
) -> CheckResult:
    if evaluated is None:
        return result
    from dataclasses import replace

    evidence: dict[str, Any] = {
        "dataset_version": evaluated.dataset_version,
        "evaluation_id": evaluated.stored.id,
    }
    report = evaluated.stored.report
    if metric == "expected_calibration_error" and report.get("calibration") is not None:
        evidence["reliability_curve"] = report["calibration"]
    if metric.startswith("fairness.") and report.get("fairness") is not None:
        evidence["fairness"] = report["fairness"]
    if metric.startswith(_SLICE_PREFIX) and report.get("slices") is not None:
        column = metric.split(".", 2)[1]
        evidence["groups"] = report["slices"].get(column)
    return replace(result, evidence=evidence)


def _confident_check(
    check: Check,
    production: ModelVersion,
    candidate: EvaluatedVersion,
    baseline: EvaluatedVersion,
    spec: EvaluationSpec | None,
) -> CheckResult:
    """A relative check with confidence: the interval of the paired difference must clear the
    offset (its lower end for ``>=``, its upper end for ``<=``)."""
    from conveyor.evaluation import delong, paired_bootstrap

    assert check.confidence is not None
    assert spec is not None
    if candidate.dataset_version != baseline.dataset_version:  # pragma: no cover - same spec
        raise ConfigError("the two versions were evaluated on different dataset versions")
    y = candidate.y_true
    if check.metric == "roc_auc" and candidate.predictions.ndim == 1:
        comparison = delong(
            y, candidate.predictions, baseline.predictions, confidence=check.confidence
        )
    else:
        comparison = paired_bootstrap(
            check.metric,
            y,
            candidate.predictions,
            baseline.predictions,
            n_resamples=spec.bootstrap,
            confidence=check.confidence,
            seed=spec.seed,
            threshold=spec.threshold,
        )
    bound = comparison.ci_low if check.higher_is_better else comparison.ci_high
    passed = check.compare(bound, check.value)
    end = "lower" if check.higher_is_better else "upper"
    verb = check.op if passed else f"is not {check.op}"
    percent = f"{check.confidence * 100:g}%"
    detail = (
        f"{check.metric} {comparison.candidate:.6g} vs production v{production.version} "
        f"{comparison.baseline:.6g}: difference {comparison.difference:+.4g}, {percent} CI "
        f"[{comparison.ci_low:+.4g}, {comparison.ci_high:+.4g}] ({comparison.method}); "
        f"{end} bound {bound:+.4g} {verb} {check.value:+g}"
    )
    evidence = {
        **comparison.to_dict(),
        "dataset_version": candidate.dataset_version,
        "production_version": production.version,
    }
    return check.result(passed, bound, check.value, detail, evidence)


def _inference_checks(
    project: Project, current: ModelVersion, stage: str, plan: _Plan, policy: Policy
) -> list[CheckResult]:
    from conveyor.data.versions import read_dataset
    from conveyor.evaluation.loadtest import run_inference_test
    from conveyor.registry import CheckResult

    assert plan.data_path is not None
    assert policy.evaluation is not None
    frame = read_dataset(plan.data_path)
    rows = frame.drop(columns=[policy.evaluation.target])
    # The server process reads the same stores; this runs before the decision's transaction.
    report = run_inference_test(
        current.model,
        current.version,
        rows,
        plan.budgets[stage],
        store=project.config.store,
        artifacts=project.config.artifacts,
    )
    body = report.to_dict()
    return [
        CheckResult(
            check=c.name,
            passed=c.passed,
            observed=c.observed,
            threshold=c.threshold,
            detail=c.detail,
            stage=stage,
            evidence=body,
        )
        for c in report.checks
    ]


def _data_checks(
    project: Project, version: ModelVersion, stage: str, plan: _Plan, *, actor: str
) -> list[CheckResult]:
    """The policy's data checks on the data the version was trained on (its run's data file,
    unchanged since: its digest must match the run's record), or on ``current:`` when the
    policy names one, against ``reference:``; findings are recorded on the dataset version."""
    from conveyor.data.gate import record_findings, run_data_gate
    from conveyor.data.versions import register_dataset
    from conveyor.registry import CheckResult

    settings = plan.data_settings[stage]
    inputs = _pipeline_inputs(project, version) if settings.current is None else []
    current = settings.current or _training_data(project, version, inputs, exclude=plan.data_path)
    report = run_data_gate(settings, current=current)
    dataset = register_dataset(project.metadata, current, name=current.stem, actor=actor)
    if settings.current is None and all(ref != dataset.id for _, ref in inputs):
        raise ConflictError(
            f"{current} changed since model '{version.model}' version {version.version} was "
            "trained on it, so its training data cannot be checked",
            hint="restore the file, or name the data to check with `data_checks.current`",
        )
    reference = register_dataset(
        project.metadata, settings.reference, name=settings.reference.stem, actor=actor
    )
    record_findings(project.metadata, dataset.id, report, reference_id=reference.id, actor=actor)
    blocking = report.blocking
    detail = (
        f"{len(blocking)} blocking finding(s): " + "; ".join(f.message for f in blocking[:5])
        if blocking
        else f"no blocking finding ({len(report.findings)} warning(s))"
    )
    return [
        CheckResult(
            check="data_checks",
            passed=not blocking,
            observed=float(len(blocking)),
            threshold=0.0,
            detail=detail,
            stage=stage,
            evidence={
                "dataset_version": dataset.id,
                "reference_version": reference.id,
                "findings": [f.to_dict() for f in report.findings][:200],
            },
        )
    ]


def _reproducible_check(
    project: Project,
    current: ModelVersion,
    stage: str,
    *,
    rebuild: RebuildPolicy | None = None,
    actor: str = "",
) -> CheckResult:
    """The version's producing run is recorded well enough to rebuild it: a run, its code,
    environment and parameters by digest, and every input by digest. With ``rebuild`` (the
    mapping form of ``reproducible:``), it is also rebuilt and compared (see
    :mod:`conveyor.project._reproduce`): bit-identical, or its metrics within the tolerances."""
    import sqlalchemy as sa

    from conveyor.registry import CheckResult
    from conveyor.store.metadata.schema import run, run_input

    missing: list[str] = []
    evidence: dict[str, Any] = {"run_id": current.run_id}
    if current.run_id is None:
        missing.append("the version was registered without a run")
    else:
        with project.metadata.read() as conn:
            row = conn.execute(sa.select(run).where(run.c.id == current.run_id)).mappings().first()
            if row is None:
                missing.append(f"run {current.run_id} is not in the store")
            else:
                pipeline_run = row["pipeline_run_id"]
                steps = conn.execute(
                    sa.select(run.c.id, run.c.status, run.c.code_digest, run.c.env_digest).where(
                        run.c.pipeline_run_id == pipeline_run
                    )
                ).all()
                inputs = conn.execute(
                    sa.select(run_input.c.kind, run_input.c.ref).where(
                        run_input.c.run_id.in_([s.id for s in steps])
                    )
                ).all()
                evidence.update(
                    pipeline_run_id=pipeline_run,
                    steps=len(steps),
                    inputs=len(inputs),
                    params=row["params"],
                )
                bad = [s.id for s in steps if s.status != "succeeded"]
                if bad:
                    missing.append(f"{len(bad)} step run(s) did not succeed")
                if any(not s.code_digest or not s.env_digest for s in steps):
                    missing.append("a step has no code or environment digest")
                undigested = [r for r in inputs if not str(r.ref).startswith("blake3:")]
                if undigested and any(r.kind == "file" for r in undigested):
                    missing.append("an input file is not recorded by digest")
    passed = not missing
    detail = (
        "the run, its code, environment, parameters and inputs are recorded by digest"
        if passed
        else "; ".join(missing)
    )
    if passed and rebuild is not None:
        return _rebuild_check(project, current, stage, rebuild, actor, evidence)
    return CheckResult(
        check="reproducible",
        passed=passed,
        observed=None,
        threshold=None,
        detail=detail,
        stage=stage,
        evidence=evidence,
    )


def _rebuild_check(
    project: Project,
    current: ModelVersion,
    stage: str,
    rebuild: RebuildPolicy,
    actor: str,
    evidence: dict[str, Any],
) -> CheckResult:
    """``observed`` is the largest metric difference (0 when bit-identical), ``threshold``
    that metric's tolerance; ``detail`` names what differed."""
    from conveyor.core.errors import ConveyorError
    from conveyor.project._reproduce import reproduce
    from conveyor.registry import CheckResult

    try:
        report = reproduce(
            project, model=current.model, version=current.version, actor=actor, tolerance=rebuild
        )
    except ConveyorError as exc:
        return CheckResult(
            check="reproducible",
            passed=False,
            observed=None,
            threshold=None,
            detail=f"cannot rebuild: {exc}",
            stage=stage,
            evidence=evidence,
        )
    observed: float | None = 0.0
    threshold: float | None = 0.0
    if not report.identical:
        worst = max(
            report.metrics,
            key=lambda m: float("inf") if m.difference is None else m.difference - m.tolerance,
            default=None,
        )
        observed = None if worst is None else worst.difference
        threshold = None if worst is None else worst.tolerance
    return CheckResult(
        check="reproducible",
        passed=report.reproduced,
        observed=observed,
        threshold=threshold,
        detail=report.summary,
        stage=stage,
        evidence={**evidence, "rebuild": report.to_dict()},
    )


_DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".tsv")


def _pipeline_inputs(project: Project, version: ModelVersion) -> list[tuple[str, str]]:
    """(path, digest) of every file the version's pipeline run read."""
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import run, run_input

    if version.run_id is None:
        return []
    with project.metadata.read() as conn:
        pipeline_run = conn.execute(
            sa.select(run.c.pipeline_run_id).where(run.c.id == version.run_id)
        ).scalar_one_or_none()
        if pipeline_run is None:
            return []
        rows = conn.execute(
            sa.select(run_input.c.name, run_input.c.ref)
            .join(run, run.c.id == run_input.c.run_id)
            .where(run.c.pipeline_run_id == pipeline_run, run_input.c.kind == "file")
        ).all()
    return [(str(r.name), str(r.ref)) for r in rows]


def _training_data(
    project: Project,
    version: ModelVersion,
    inputs: list[tuple[str, str]],
    *,
    exclude: Path | None,
) -> Path:
    """The one data file the version's run read, other than the evaluation data."""
    from pathlib import Path

    def resolve(name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else (project.config.root / path).resolve()

    files = {
        name: ref
        for name, ref in inputs
        if name.lower().endswith(_DATA_SUFFIXES)
        and not name.startswith("...")
        and resolve(name) != exclude
    }
    if len(files) != 1:
        found = ", ".join(sorted(files)) or "none"
        raise ConfigError(
            f"data_checks has no `current:` and model '{version.model}' version "
            f"{version.version}'s run read {len(files)} data files ({found}), not one",
            hint="name the data to check with `data_checks.current`",
        )
    [name] = files
    return resolve(name)
