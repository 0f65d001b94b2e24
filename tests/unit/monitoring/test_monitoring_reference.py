"""Reference predictions: the production bundle's answers on its reference, computed once and
cached; and `conveyor monitor run` turning them into prediction drift and output anomalies."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import accuracy_score
from tests.unit.monitoring._monitoring_support import fitted, reference_frame, register_bundle

from conveyor.cli._main import cli
from conveyor.core.errors import ValidationError
from conveyor.monitoring import InferenceLogger, reference_predictions
from conveyor.monitoring._log import DEFAULT_LOG_DIR, window_start
from conveyor.monitoring.reference import reference_digest
from conveyor.monitoring.windows import latest_windows

if TYPE_CHECKING:
    from pathlib import Path


def test_predictions_are_the_bundles_on_a_seeded_sample_and_cached(tmp_path: Path) -> None:
    from conveyor.project import open_project

    (tmp_path / "conveyor.yaml").write_text("project: demo\n")
    reference = reference_frame(500).assign(target=1)  # a column the model does not take
    with open_project(tmp_path) as project:
        version, digest = register_bundle(project.metadata, project.artifacts)
        kwargs: dict[str, Any] = {
            "model": "churn",
            "version": version,
            "bundle": digest,
            "cache_dir": tmp_path / "cache",
        }
        first = reference_predictions(project.artifacts, reference=reference, sample=200, **kwargs)
        again = reference_predictions(project.artifacts, reference=reference, sample=200, **kwargs)
        whole = reference_predictions(
            project.artifacts, reference=reference, sample=10**6, **kwargs
        )
        with pytest.raises(ValidationError, match=r"has no column 'c'"):
            reference_predictions(project.artifacts, reference=reference[["x"]], **kwargs)
    sampled = reference[["x", "c"]].sample(n=200, random_state=0).sort_index()
    assert (first.cached, again.cached, whole.cached) == (False, True, False)
    assert first.rows == 200
    np.testing.assert_array_equal(first.predictions, fitted().predict(sampled))
    np.testing.assert_array_equal(again.predictions, first.predictions)
    np.testing.assert_array_equal(whole.predictions, fitted().predict(reference[["x", "c"]]))
    assert first.path == again.path != whole.path
    assert first.path.name.startswith(f"churn-v{version}-")


def test_a_cache_folder_that_cannot_be_written_costs_only_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As in a pod whose project folder is a read-only mount: the answers are computed, and
    computed again next time."""
    from conveyor.project import open_project

    (tmp_path / "conveyor.yaml").write_text("project: demo\n")
    (tmp_path / "not-a-folder").write_text("")
    reference = reference_frame(100)
    with open_project(tmp_path) as project:
        version, digest = register_bundle(project.metadata, project.artifacts)
        runs = [
            reference_predictions(
                project.artifacts,
                model="churn",
                version=version,
                bundle=digest,
                reference=reference,
                cache_dir=tmp_path / "not-a-folder" / "cache",
            )
            for _ in range(2)
        ]
    assert [r.cached for r in runs] == [False, False]
    np.testing.assert_array_equal(runs[0].predictions, fitted().predict(reference))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert warnings[0].startswith("reference predictions not cached (")


def test_reference_digest_covers_values_and_names_not_the_index() -> None:
    frame = reference_frame(50)
    assert reference_digest(frame) == reference_digest(frame.set_axis(range(100, 150)))
    assert reference_digest(frame) != reference_digest(frame.rename(columns={"x": "y"}))
    changed = frame.copy()
    changed.loc[7, "x"] += 1e-9
    assert reference_digest(frame) != reference_digest(changed)


def test_monitor_run_computes_prediction_drift_anomalies_and_slices(tmp_path: Path) -> None:
    from conveyor.project import open_project

    (tmp_path / "conveyor.yaml").write_text("project: demo\n")
    (tmp_path / "monitoring.yaml").write_text(
        "alerts:\n  - {name: pdrift, metric: prediction.drift, op: '>', threshold: 0.1}\n"
    )
    reference = reference_frame(2000)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    with open_project(tmp_path) as project:
        register_bundle(project.metadata, project.artifacts)
        log_root = project.config.state_dir / DEFAULT_LOG_DIR
        state_dir = project.config.state_dir
    # 300 requests in the middle of the last complete hour: the model answers 1 to 80 % of
    # them (its reference answers are far more balanced), with a score for calibration.
    start = window_start(dt.datetime.now(dt.UTC), dt.timedelta(hours=1)) - dt.timedelta(minutes=30)
    live = reference_frame(300, seed=3)
    predictions = (np.arange(300) % 5 != 0).astype(int)
    scores = np.where(predictions == 1, 0.7, 0.2)
    log = InferenceLogger(log_root, clock=lambda: start, window=dt.timedelta(minutes=1))
    for i, row in enumerate(live.to_dict("records")):
        log.log("churn", 1, f"r{i}", {**row, "p": scores[i]}, int(predictions[i]), 0.01)
    log.close()
    labels = pd.DataFrame(
        {"request_id": [f"r{i}" for i in range(300)], "label": np.arange(300) % 2}
    )
    labels.to_csv(tmp_path / "labels.csv", index=False)

    args = ["-C", str(tmp_path), "monitor", "run", "--once", "--window", "3600"]
    args += [
        "--reference",
        str(tmp_path / "reference.csv"),
        "--labels",
        str(tmp_path / "labels.csv"),
    ]
    args += ["--slice", "c", "--score-column", "p", "--reference-sample", "1500"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "churn pdrift: inactive -> firing" in result.output
    assert "prediction drift" in result.output

    with open_project(tmp_path) as project, project.metadata.read() as conn:
        (window,) = latest_windows(conn, model="churn")
    (cached,) = (state_dir / "monitoring" / "reference-predictions").iterdir()
    sampled = reference.sample(n=1500, random_state=0).sort_index()
    ref_pred = fitted().predict(sampled)
    np.testing.assert_array_equal(pd.read_parquet(cached)["prediction"], ref_pred)
    m = window.metrics
    # Prediction drift: 1,500 reference answers with two values, so the Jensen-Shannon distance.
    ref_counts = [np.sum(ref_pred == 0), np.sum(ref_pred == 1)]
    cur_counts = [np.sum(predictions == 0), np.sum(predictions == 1)]
    assert math.isclose(
        m["prediction.drift"], jensenshannon(ref_counts, cur_counts), rel_tol=0, abs_tol=1e-9
    )
    assert m["prediction.drifted"] is (m["prediction.drift"] >= 0.1)
    # Output anomalies: the z of the mean against the reference answers, the top answer's lift.
    z = (predictions.mean() - ref_pred.mean()) / (np.std(ref_pred, ddof=1) / math.sqrt(300))
    assert math.isclose(m["anomaly.mean_z"], z, rel_tol=1e-9)
    assert math.isclose(m["anomaly.mean_ewma"], 0.2 * z, rel_tol=1e-9)
    assert math.isclose(m["anomaly.top_answer_lift"], 0.8 - np.mean(ref_pred == 1), abs_tol=1e-12)
    # Slices by c, and the score column reaching calibration.
    truth = np.arange(300) % 2
    for value in ("a", "b"):
        part = live["c"].to_numpy() == value
        expected = accuracy_score(truth[part], predictions[part])
        assert math.isclose(m[f"slice.c={value}.accuracy"], expected, abs_tol=1e-12)
    assert "perf.ece" in m


def test_monitor_run_refuses_a_slice_the_reference_does_not_have(tmp_path: Path) -> None:
    from conveyor.core.errors import UsageError
    from conveyor.project import open_project

    (tmp_path / "conveyor.yaml").write_text("project: demo\n")
    (tmp_path / "monitoring.yaml").write_text(
        "alerts:\n  - {name: nulls, metric: quality.null_share, op: '>', threshold: 0.1}\n"
    )
    reference_frame(100).to_csv(tmp_path / "reference.csv", index=False)
    with open_project(tmp_path) as project:
        register_bundle(project.metadata, project.artifacts)
    args = ["-C", str(tmp_path), "monitor", "run", "--once", "--slice", "region"]
    args += ["--reference", str(tmp_path / "reference.csv")]
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, UsageError)
    assert "slice column 'region' is not a column of the reference of model 'churn'" in str(
        result.exception
    )


def test_a_running_monitor_follows_a_new_production_version(tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier

    from conveyor.cli.monitor import build_monitor
    from conveyor.project import open_project

    (tmp_path / "conveyor.yaml").write_text("project: demo\n")
    (tmp_path / "monitoring.yaml").write_text(
        "alerts:\n  - {name: rows, metric: rows, op: '>', threshold: 5}\n"
    )
    reference = reference_frame(500)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    with open_project(tmp_path) as project:
        register_bundle(project.metadata, project.artifacts)
        monitor = build_monitor(
            project, model="churn", reference=tmp_path / "reference.csv", reference_sample=200
        )
        first = monitor.current_specs()["churn"]
        assert monitor.current_specs()["churn"] is first  # built once per version
        # v2 answers 1 to everything, and is promoted while the monitor runs.
        constant = DummyClassifier(strategy="constant", constant=1)
        constant.fit(reference, np.ones(len(reference), dtype=int))
        register_bundle(project.metadata, project.artifacts, constant)
        second = monitor.current_specs()["churn"]
    sampled = reference.sample(n=200, random_state=0).sort_index()
    np.testing.assert_array_equal(first.reference_predictions, fitted().predict(sampled))
    np.testing.assert_array_equal(second.reference_predictions, np.ones(200, dtype=int))
