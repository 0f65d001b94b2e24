"""The lookup a bundle carries (``FeatureLookup``), on SQLite and the Redis of ``make test``.

Values are written to a real online store and read back through the manifest entry alone, as
the inference server does; TTLs recorded in the bundle are applied at the lookup time.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.core.digest import digest_bytes
from conveyor.core.errors import InfrastructureError, ValidationError
from conveyor.features import (
    Feature,
    FeatureLookup,
    FeatureService,
    MissingEntityError,
    RedisOnlineStore,
    SQLiteOnlineStore,
)
from conveyor.features._serving import to_micros
from conveyor.packaging import Model, build_bundle, load_bundle
from conveyor.packaging._manifest import Manifest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.features import OnlineStore
    from conveyor.store.artifacts import LocalArtifactStore

NOW = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)


def _service() -> FeatureService:
    spend = Feature(
        "spend",
        entity="customer_id",
        dtype="float64",
        transform=lambda d: d["amount"],
        ttl=dt.timedelta(hours=12),
    )
    plan = Feature("plan", entity="customer_id", dtype="string", transform=lambda d: d["plan"])
    return FeatureService("churn", [spend, plan])


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        store: OnlineStore = SQLiteOnlineStore(tmp_path / "online.db")
        yield store
        store.close()
        return
    url = os.environ.get("CONVEYOR_TEST_REDIS_URL")
    if not url:
        pytest.fail("CONVEYOR_TEST_REDIS_URL is not set: run the suite with `make test`")
    redis_store = RedisOnlineStore(url, prefix=f"conveyor-test:{uuid.uuid4().hex}:")
    yield redis_store
    redis_store.delete(["1", "2", "3"])
    redis_store.close()


def test_the_manifest_entry_records_ttls_only_when_a_feature_has_one() -> None:
    service = _service()
    entry = service.manifest_entry()
    assert entry["ttl_seconds"] == {"spend": 43_200.0}
    plain = FeatureService("churn", [service.features[1]]).manifest_entry()
    assert "ttl_seconds" not in plain
    lookup = FeatureLookup.from_manifest(entry)
    assert lookup.entity == "customer_id"
    assert lookup.names == ("spend", "plan")
    assert lookup.refs["plan"] == service.features[1].ref
    assert lookup.ttl_seconds == {"spend": 43_200.0}


def test_the_bundle_carries_the_ttls_and_bundles_without_them_keep_their_bytes(
    artifact_store: LocalArtifactStore,
) -> None:
    frame = pd.DataFrame({"spend": [1.0, 2.0, 3.0, 4.0], "plan": ["a", "b", "a", "b"]})
    x = frame[["spend"]]
    estimator = LogisticRegression().fit(x, [0, 1, 0, 1])
    service = _service()
    bundle = build_bundle(
        artifact_store, Model(estimator, x, features=service), name="churn", metrics={}
    )
    raw = artifact_store.get_bytes(bundle.digest)
    assert b"ttl_seconds:\n    spend: 43200.0\n" in raw
    loaded = load_bundle(artifact_store, bundle.digest).manifest
    assert loaded.features is not None
    assert FeatureLookup.from_manifest(loaded.features) == FeatureLookup.from_manifest(
        service.manifest_entry()
    )

    no_ttl = FeatureService("churn", [service.features[1]])
    old = build_bundle(artifact_store, Model(estimator, x, features=no_ttl), name="c", metrics={})
    old_raw = artifact_store.get_bytes(old.digest)
    assert b"ttl_seconds" not in old_raw
    reread = Manifest.from_yaml(old_raw)
    assert reread.features is not None
    assert "ttl_seconds" not in reread.features
    assert digest_bytes(reread.to_yaml()) == old.digest  # the same bytes as before TTLs


def test_fetch_reads_all_keys_at_once_and_applies_the_ttl(online: OnlineStore) -> None:
    service = _service()
    spend, plan = (f.ref for f in service.features)
    fresh = to_micros(NOW - dt.timedelta(hours=1))
    stale = to_micros(NOW - dt.timedelta(days=2))
    online.write(
        [
            ("1", spend, 10.5, fresh),
            ("1", plan, "pro", stale),  # no TTL: an old value is still served
            ("2", spend, 7.25, stale),  # older than the 12-hour TTL
            ("2", plan, "basic", fresh),
        ]
    )
    lookup = FeatureLookup.from_manifest(service.manifest_entry())

    got = lookup.fetch(online, ["2", "1"], required=["plan"], now=NOW)
    assert got == {"spend": [None, 10.5], "plan": ["basic", "pro"]}
    later = lookup.fetch(online, ["1"], now=NOW + dt.timedelta(hours=10, minutes=59))
    assert later == {"spend": [10.5], "plan": ["pro"]}

    with pytest.raises(MissingEntityError) as missing:
        lookup.fetch(online, ["1", "2", "3"], now=NOW)
    error = missing.value
    assert error.http_status == 422
    assert error.message == (
        "no online value of plan, spend for customer_id '2', '3' (feature service 'churn')"
    )
    assert error.hint is not None
    assert "`conveyor features materialize churn`" in error.hint
    assert error.details == {
        "service": "churn",
        "entity": "customer_id",
        "keys": ["2", "3"],
        "features": ["plan", "spend"],
    }


def test_many_missing_keys_are_summarised(online: OnlineStore) -> None:
    lookup = FeatureLookup.from_manifest(_service().manifest_entry())
    keys = [str(k) for k in range(100, 108)]
    with pytest.raises(MissingEntityError, match=r"'100', '101', '102', '103', '104' and 3 more"):
        lookup.fetch(online, keys, now=NOW)


def test_a_closed_sqlite_store_is_unavailable_not_a_bug(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "online.db")
    store.close()
    lookup = FeatureLookup.from_manifest(_service().manifest_entry())
    with pytest.raises(InfrastructureError, match="cannot be read") as down:
        lookup.fetch(store, ["1"])
    assert down.value.http_status == 503


@pytest.mark.parametrize(
    "entry",
    [
        {"service": "s", "version": "v", "entity": "k"},
        {"service": "s", "version": "v", "entity": "k", "features": ["a"]},
        {"service": "s", "version": "v", "entity": "k", "features": ["a@1"], "ttl_seconds": 5},
        {
            "service": "s",
            "version": "v",
            "entity": "k",
            "features": ["a@1"],
            "ttl_seconds": {"b": 5.0},
        },
    ],
)
def test_a_broken_entry_is_refused(entry: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="features entry") as refused:
        FeatureLookup.from_manifest(entry)
    assert refused.value.hint is not None
