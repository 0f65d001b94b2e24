"""Registration, lineage, the bundle's feature record, and the checks that refuse a model served
with features other than those it was trained with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

from conveyor.core.digest import digest_bytes
from conveyor.features import (
    Feature,
    FeatureMismatchError,
    FeatureService,
    UnknownFeatureError,
    check_serving_features,
    get_feature,
    get_service,
    link_model,
    skew_report,
)
from conveyor.features._store import Definitions
from conveyor.lineage.graph import models_using, upstream
from conveyor.packaging import Manifest, Model, build_bundle, load_bundle
from conveyor.store.metadata.schema import audit_event

from .conftest import amount_doubled, events, leaky_labels

if TYPE_CHECKING:
    from conveyor.features import FeatureStore
    from conveyor.store.artifacts import LocalArtifactStore


def amount_tripled(df):  # type: ignore[no-untyped-def]
    return df["amount"] * 3


def _defs(transform=amount_doubled):  # type: ignore[no-untyped-def]
    spend = Feature("spend", entity="customer_id", dtype="float64", transform=transform)
    count = Feature(
        "visits", entity="customer_id", dtype="int64", transform=lambda df: df["amount"] > 0
    )
    return Definitions((spend, count), (FeatureService("churn", [spend, count]),))


def _audits(fs: FeatureStore) -> list[str]:
    with fs.metadata.read() as conn:
        return list(conn.execute(sa.select(audit_event.c.action)).scalars())


def test_registration_is_audited_and_idempotent(feature_store: FeatureStore) -> None:
    first = feature_store.apply(_defs(), actor="ana", data={"spend": events()})
    again = feature_store.apply(_defs(), actor="ana", data={"spend": events()})

    assert len(first.registered) == 3
    assert again.registered == []
    assert sorted(again.unchanged) == sorted(first.registered)
    actions = _audits(feature_store)
    assert actions.count("feature.registered") == 2
    assert actions.count("feature_service.registered") == 1


def test_a_changed_transformation_is_a_new_version_and_the_old_stays(
    feature_store: FeatureStore,
) -> None:
    old, new = _defs(), _defs(amount_tripled)
    feature_store.apply(old, actor="ana", data={"spend": events()})
    feature_store.apply(new, actor="ana", data={"spend": events()})
    old_spend, new_spend = old.features[0], new.features[0]

    assert old_spend.version != new_spend.version
    assert get_feature(feature_store.metadata, "spend").version == new_spend.version
    prefix = old_spend.version.removeprefix("blake3:")[:10]
    assert get_feature(feature_store.metadata, f"spend@{prefix}").version == old_spend.version
    assert get_service(feature_store.metadata, "churn").version == new.services[0].version
    with pytest.raises(UnknownFeatureError, match="has no version 0000"):
        get_feature(feature_store.metadata, "spend@0000")


def test_serving_other_feature_versions_is_refused_naming_each(
    feature_store: FeatureStore,
) -> None:
    trained, serving = _defs().services[0], _defs(amount_tripled).services[0]
    check_serving_features(trained.record().refs, trained)  # the same: passes

    with pytest.raises(FeatureMismatchError) as err:
        check_serving_features(trained.record().refs, serving)

    old = trained.features[0].version.removeprefix("blake3:")[:12]
    new = serving.features[0].version.removeprefix("blake3:")[:12]
    assert f"spend (trained {old}, serving {new})" in err.value.message
    assert "visits" not in err.value.message
    assert err.value.details["mismatches"] == [
        {
            "feature": "spend",
            "trained": trained.features[0].version,
            "serving": serving.features[0].version,
        }
    ]
    fewer = FeatureService("churn", [trained.features[1]])
    with pytest.raises(FeatureMismatchError, match=f"spend \\(trained {old}, serving none\\)"):
        check_serving_features(trained.record().refs, fewer)


def test_lineage_links_dataset_feature_and_model(feature_store: FeatureStore) -> None:
    source = events()
    defs = _defs()
    feature_store.apply(defs, actor="ana", data={"spend": source})
    spend = defs.features[0]
    link_model(feature_store.metadata, [spend.ref], "churn", 1, actor="ana")

    assert models_using(feature_store.metadata, f"feature:{spend.ref}")["training"] == [
        "model:churn/1"
    ]
    up = {n.id for n in upstream(feature_store.metadata, "model:churn/1").nodes}
    datasets = [n for n in up if n.startswith("dataset:")]
    assert len(datasets) == 1
    assert f"feature:{spend.ref}" in up


def test_the_bundle_records_the_service_and_old_manifests_keep_their_digest(
    artifact_store: LocalArtifactStore,
) -> None:
    frame = pd.DataFrame({"spend": [1.0, 2.0, 3.0, 4.0], "visits": [1, 0, 1, 0]})
    estimator = LogisticRegression().fit(frame, [0, 1, 0, 1])
    service = _defs().services[0]

    plain = build_bundle(artifact_store, Model(estimator, frame), name="churn", metrics={})
    with_features = build_bundle(
        artifact_store, Model(estimator, frame, features=service), name="churn", metrics={}
    )

    assert b"features:" not in artifact_store.get_bytes(plain.digest)
    assert plain.digest != with_features.digest
    loaded = load_bundle(artifact_store, with_features.digest).manifest
    assert loaded.features == {
        "service": "churn",
        "version": service.version,
        "entity": "customer_id",
        "features": sorted(f.ref for f in service.features),
    }
    reread = Manifest.from_yaml(artifact_store.get_bytes(plain.digest))
    assert reread.features is None
    assert digest_bytes(reread.to_yaml()) == plain.digest
    check_serving_features(loaded.features["features"], service)


def test_skew_report_joins_logged_inference_with_training_values(
    feature_store: FeatureStore,
) -> None:
    source = events()
    defs = _defs()
    feature_store.apply(defs, actor="ana", data={"spend": source})
    logged = leaky_labels(source).rename(columns={"event_timestamp": "request_time"})
    service = FeatureService("churn", [defs.features[0]])
    expected = feature_store.offline.training_set(
        service.record().features, logged, timestamp="request_time"
    )["spend"].to_numpy(float)
    served = expected.copy()
    served[:10] += 0.5  # ten requests served with values off by 0.5
    logged["spend"] = served

    (report,) = skew_report(logged, feature_store.offline, service)

    rows = int(np.isfinite(expected).sum() + np.isnan(expected).sum())
    assert report.rows == rows
    assert report.mismatches == 10
    assert report.share == pytest.approx(10 / rows, abs=1e-12)
    both = ~np.isnan(expected)
    assert report.mean_abs_diff == pytest.approx(
        np.abs(served[both] - expected[both]).mean(), abs=1e-9
    )
