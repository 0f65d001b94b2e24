"""Bundles: deterministic to build, verified to load, and predicting like the estimator."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from conveyor.core.digest import digest_bytes
from conveyor.core.errors import IntegrityError, NotFoundError, ValidationError
from conveyor.packaging import (
    Manifest,
    Model,
    build_bundle,
    decode_model,
    encode_model,
    load_bundle,
)
from conveyor.packaging._env import EnvironmentLock
from conveyor.store.artifacts import ArtifactRef, LocalArtifactStore, MemoryArtifactStore

if TYPE_CHECKING:
    from pathlib import Path

    from sklearn.pipeline import Pipeline

    from conveyor.store.artifacts import ArtifactStore

METRICS = {"roc_auc": 0.8125, "accuracy": 0.75}


def test_bundle_layout_and_digest(any_store: ArtifactStore, model: Model) -> None:
    bundle = build_bundle(any_store, model, name="churn", metrics=METRICS, run_id="run-1")

    assert set(bundle.files) == {
        "manifest.yaml",
        "model/model.skops",
        "model/input_example.parquet",
        "env/requirements.txt",
    }
    manifest_bytes = any_store.get_bytes(bundle.digest)
    assert digest_bytes(manifest_bytes) == bundle.digest == bundle.files["manifest.yaml"].digest
    doc = yaml.safe_load(manifest_bytes)
    assert doc["name"] == "churn"
    assert doc["run_id"] == "run-1"
    assert doc["metrics"] == METRICS
    assert doc["files"]["model/model.skops"] == {
        "digest": bundle.files["model/model.skops"].digest,
        "size": bundle.files["model/model.skops"].size,
    }
    requirements = any_store.get_bytes(bundle.files["env/requirements.txt"].digest).decode()
    assert requirements == bundle.manifest.env.requirements_txt()
    assert "scikit-learn==" in requirements


def test_the_manifest_holds_no_time_and_no_version(
    memory_store: ArtifactStore, model: Model
) -> None:
    bundle = build_bundle(memory_store, model, name="churn", metrics=METRICS)

    doc = yaml.safe_load(memory_store.get_bytes(bundle.digest))

    assert not {"created_at", "version", "timestamp"} & set(doc)
    assert set(doc) == {
        "bundle_format", "name", "flavor", "signature", "metrics", "params", "datasets",
        "run_id", "files", "env", "skops",
    }  # fmt: skip


def test_building_twice_gives_the_same_digest(model: Model, tmp_path: Path) -> None:
    first = build_bundle(MemoryArtifactStore(), model, name="churn", metrics=METRICS)
    second = build_bundle(MemoryArtifactStore(), model, name="churn", metrics=METRICS)
    local = build_bundle(LocalArtifactStore(tmp_path), model, name="churn", metrics=METRICS)

    assert first.digest == second.digest == local.digest


def test_a_model_from_the_pipeline_cache_gives_the_same_digest(
    memory_store: ArtifactStore, model: Model
) -> None:
    # A cache hit hands the register step a decoded copy: new objects, new ids, same model.
    original = build_bundle(memory_store, model, name="churn", metrics=METRICS)
    cached = build_bundle(
        memory_store, decode_model(encode_model(model)), name="churn", metrics=METRICS
    )

    assert cached.digest == original.digest


def test_different_metadata_gives_a_different_digest(
    memory_store: ArtifactStore, model: Model
) -> None:
    base = build_bundle(memory_store, model, name="churn", metrics=METRICS)
    other_metrics = build_bundle(memory_store, model, name="churn", metrics={"roc_auc": 0.9})
    other_name = build_bundle(memory_store, model, name="churn2", metrics=METRICS)

    assert len({base.digest, other_metrics.digest, other_name.digest}) == 3
    assert base.files["model/model.skops"] == other_name.files["model/model.skops"]


def test_params_and_datasets_are_recorded_as_plain_data(
    memory_store: ArtifactStore, model: Model
) -> None:
    bundle = build_bundle(
        memory_store,
        model,
        name="churn",
        metrics={"auc": np.float64(0.5)},
        params={"seed": np.int64(7), "grid": (1, 2), "nested": {"b": 1, "a": "x"}},
        datasets={"train": "blake3:" + "0" * 64},
    )

    doc = yaml.safe_load(memory_store.get_bytes(bundle.digest))

    assert doc["params"] == {"grid": [1, 2], "nested": {"a": "x", "b": 1}, "seed": 7}
    assert doc["datasets"] == {"train": "blake3:" + "0" * 64}
    assert doc["metrics"] == {"auc": 0.5}


def test_a_param_that_is_not_plain_data_is_named(memory_store: ArtifactStore, model: Model) -> None:
    with pytest.raises(ValidationError, match=r"param nested.fn is"):
        build_bundle(
            memory_store, model, name="churn", metrics={}, params={"nested": {"fn": object()}}
        )


def test_an_invalid_model_name_is_refused(memory_store: ArtifactStore, model: Model) -> None:
    with pytest.raises(ValidationError, match="model name 'no/slashes' is not valid"):
        build_bundle(memory_store, model, name="no/slashes", metrics={})


def test_an_empty_input_example_is_refused(
    memory_store: ArtifactStore, fitted: Pipeline, frame: pd.DataFrame
) -> None:
    with pytest.raises(ValidationError, match="input example of model 'churn' has no rows"):
        build_bundle(memory_store, Model(fitted, frame.head(0)), name="churn", metrics={})


def test_load_predicts_exactly_like_the_estimator(
    any_store: ArtifactStore, model: Model, fitted: Pipeline, frame: pd.DataFrame
) -> None:
    bundle = build_bundle(any_store, model, name="churn", metrics=METRICS)

    loaded = load_bundle(any_store, bundle.digest)
    outputs = loaded.predict(frame)

    assert loaded.digest == bundle.digest
    assert loaded.manifest == bundle.manifest
    assert loaded.signature.input_names == ("age", "support_calls", "plan")
    assert set(outputs) == {"predict", "predict_proba"}
    np.testing.assert_array_equal(outputs["predict"], fitted.predict(frame))
    np.testing.assert_array_equal(outputs["predict_proba"], fitted.predict_proba(frame)[:, 1])
    pd.testing.assert_frame_equal(loaded.input_example, model.input_example)


def test_multiclass_and_regression_outputs(memory_store: ArtifactStore) -> None:
    x = pd.DataFrame({"x": np.arange(30.0)})
    labels = np.array(["low", "mid", "high"])[np.arange(30) // 10]
    classifier = LogisticRegression().fit(x, labels)
    regressor = LinearRegression().fit(x, 2 * x["x"])

    for_classifier = build_bundle(memory_store, Model(classifier, x.head(3)), name="c", metrics={})
    for_regressor = build_bundle(memory_store, Model(regressor, x.head(3)), name="r", metrics={})
    proba = load_bundle(memory_store, for_classifier.digest).predict(x)
    value = load_bundle(memory_store, for_regressor.digest).predict(x)

    assert proba["predict_proba"].shape == (30, 3)
    np.testing.assert_array_equal(proba["predict"], classifier.predict(x))
    assert set(value) == {"predict"}
    np.testing.assert_allclose(value["predict"], regressor.predict(x))


def test_predict_validates_the_frame_first(memory_store: ArtifactStore, model: Model) -> None:
    loaded = load_bundle(
        memory_store, build_bundle(memory_store, model, name="c", metrics={}).digest
    )
    request = model.input_example.drop(columns=["age"])

    with pytest.raises(ValidationError, match="model 'c': input column 'age' is missing"):
        loaded.predict(request)
    with pytest.raises(ValidationError, match="nothing to predict"):
        loaded.predict(model.input_example.head(0))


def test_validate_coerces_a_json_like_request(memory_store: ArtifactStore, model: Model) -> None:
    loaded = load_bundle(
        memory_store, build_bundle(memory_store, model, name="c", metrics={}).digest
    )
    request = pd.DataFrame([{"plan": "pro", "support_calls": "3", "age": 52}])

    rows = loaded.validate(request)

    assert list(rows.columns) == ["age", "support_calls", "plan"]
    assert rows.iloc[0].tolist() == [52.0, 3, "pro"]


def test_a_corrupt_file_in_a_local_store_stops_the_load(tmp_path: Path, model: Model) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    bundle = build_bundle(store, model, name="churn", metrics=METRICS)
    _flip_a_byte(store, bundle.files["model/model.skops"].digest)

    with pytest.raises(IntegrityError, match=r"file model/model.skops .* is corrupt"):
        load_bundle(store, bundle.digest)


def test_a_corrupt_manifest_in_a_local_store_stops_the_load(tmp_path: Path, model: Model) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    bundle = build_bundle(store, model, name="churn", metrics=METRICS)
    _flip_a_byte(store, bundle.digest)

    with pytest.raises(IntegrityError, match=r"the manifest of model bundle .* is corrupt"):
        load_bundle(store, bundle.digest)


def test_a_manifest_whose_file_sizes_lie_is_refused(
    memory_store: ArtifactStore, model: Model
) -> None:
    bundle = build_bundle(memory_store, model, name="churn", metrics=METRICS)
    ref = bundle.manifest.files["model/model.skops"]
    tampered = _store_manifest(
        memory_store,
        bundle.manifest,
        files={**bundle.manifest.files, "model/model.skops": ArtifactRef(ref.digest, ref.size + 1)},
    )

    with pytest.raises(IntegrityError, match=r"model/model.skops .* does not match its manifest"):
        load_bundle(memory_store, tampered)


def test_a_manifest_pointing_at_another_file_is_refused(
    memory_store: ArtifactStore, model: Model
) -> None:
    bundle = build_bundle(memory_store, model, name="churn", metrics=METRICS)
    files = dict(bundle.manifest.files)
    files["model/model.skops"] = files["env/requirements.txt"]
    tampered = _store_manifest(memory_store, bundle.manifest, files=files)

    with pytest.raises(
        ValidationError, match=r"model/model.skops of model bundle .* cannot be loaded"
    ):
        load_bundle(memory_store, tampered)


def test_a_manifest_that_drops_a_trusted_type_is_refused(
    memory_store: ArtifactStore, frame: pd.DataFrame
) -> None:
    numeric = frame[["age", "support_calls"]]
    trees = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(numeric, frame["plan"])
    bundle = build_bundle(memory_store, Model(trees, numeric.head(3)), name="trees", metrics={})
    assert bundle.manifest.trusted_types  # trees are not in skops' default trust
    tampered = _store_manifest(memory_store, bundle.manifest, trusted_types=())

    with pytest.raises(ValidationError, match=r"not trusted when it was packaged: .*TreePredictor"):
        load_bundle(memory_store, tampered)
    assert load_bundle(memory_store, bundle.digest).predict(numeric)["predict"].shape == (200,)


def test_a_missing_file_is_not_found(memory_store: ArtifactStore, model: Model) -> None:
    bundle = build_bundle(memory_store, model, name="churn", metrics=METRICS)
    assert isinstance(memory_store, MemoryArtifactStore)
    del memory_store.objects[bundle.files["model/input_example.parquet"].digest]

    with pytest.raises(NotFoundError, match=r"file model/input_example.parquet .* is not in"):
        load_bundle(memory_store, bundle.digest)


def test_an_unknown_digest_is_not_found(memory_store: ArtifactStore) -> None:
    with pytest.raises(NotFoundError, match=r"the manifest of model bundle blake3:0+ is not in"):
        load_bundle(memory_store, "blake3:" + "0" * 64)


def test_a_digest_that_is_not_a_bundle_is_refused(memory_store: ArtifactStore) -> None:
    digest = memory_store.put_bytes(b"numpy==2.4.6\n").digest

    with pytest.raises(ValidationError, match=f"artifact {digest} is not a valid bundle manifest"):
        load_bundle(memory_store, digest)


def test_a_newer_bundle_format_asks_for_an_upgrade(
    memory_store: ArtifactStore, model: Model
) -> None:
    bundle = build_bundle(memory_store, model, name="churn", metrics=METRICS)
    newer = _store_manifest(memory_store, bundle.manifest, bundle_format=2)

    with pytest.raises(ValidationError, match="format 2; this Conveyor reads up to 1"):
        load_bundle(memory_store, newer)


def test_version_drift_is_logged_not_fatal(
    memory_store: ArtifactStore, model: Model, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = build_bundle(memory_store, model, name="churn", metrics=METRICS)
    env = bundle.manifest.env
    old = EnvironmentLock(env.python, env.platform, {**env.requirements, "numpy": "1.26.0"})
    drifted = _store_manifest(memory_store, bundle.manifest, env=old)

    with caplog.at_level(logging.WARNING, logger="conveyor.packaging"):
        loaded = load_bundle(memory_store, drifted)

    assert loaded.predict(model.input_example)["predict"].shape == (5,)
    assert any(
        "numpy==1.26.0" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="conveyor.packaging"):
        load_bundle(memory_store, bundle.digest)
    assert caplog.records == []


def _store_manifest(store: ArtifactStore, manifest: Manifest, **changes: object) -> str:
    return store.put_bytes(replace(manifest, **changes).to_yaml()).digest  # type: ignore[arg-type]


def _flip_a_byte(store: LocalArtifactStore, digest: str) -> None:
    path = store.location(digest)
    os.chmod(path, 0o644)  # stored objects are read-only
    with open(path, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
