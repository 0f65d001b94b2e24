"""Requests that send only entity keys: the server fetches the features itself (issue 9).

A real feature store (definitions applied, values materialised by DuckDB) feeds a real online
store, SQLite and the Redis server of ``make test`` (``CONVEYOR_TEST_REDIS_URL``); a model
trained on the service's features is packaged with it, registered and served in process. Every
answer to an entity-key request is compared with the answer to the same rows sent with their
feature values, and with the estimator's own output on the values the feature store returns.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from tests.unit.server._support import TestClient, promote

from conveyor.core.errors import ValidationError
from conveyor.features import (
    Feature,
    FeatureService,
    FeatureStore,
    RedisOnlineStore,
    SQLiteOnlineStore,
    get_online_features,
)
from conveyor.features._store import Definitions
from conveyor.packaging import Model, build_bundle, load_bundle
from conveyor.registry import register_version
from conveyor.server import create_app
from conveyor.server.features import OnlineFeatures, ServedLookup
from conveyor.store.artifacts import LocalArtifactStore
from conveyor.store.metadata import MetadataStore

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from conveyor.features import OnlineStore

MODEL = "churn"
COLUMNS = ["spend", "visits", "vip", "segment"]
T0 = pd.Timestamp("2026-03-01", tz="UTC")
KEYS = [1, 2, 3, 4, 5, 6]


def _source() -> pd.DataFrame:
    """Six customers, three events each, in shuffled order."""
    rng = np.random.default_rng(7)
    n = len(KEYS) * 3
    frame = pd.DataFrame(
        {
            "customer_id": np.repeat(KEYS, 3),
            "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 86_400 * 5, n), unit="s"),
            "amount": rng.normal(60, 25, n).round(2),
            "visits": rng.integers(0, 20, n),
            "segment": rng.choice(["a", "b", "c"], n).astype(object),
        }
    )
    return frame.sample(frac=1, random_state=1).reset_index(drop=True)


def _service(*, ttl: dt.timedelta | None = None) -> FeatureService:
    spend = Feature(
        "spend", entity="customer_id", dtype="float64", transform=lambda d: d["amount"], ttl=ttl
    )
    visits = Feature("visits", entity="customer_id", dtype="int64", transform=lambda d: d["visits"])
    vip = Feature("vip", entity="customer_id", dtype="bool", transform=lambda d: d["amount"] > 60)
    segment = Feature(
        "segment", entity="customer_id", dtype="string", transform=lambda d: d["segment"]
    )
    return FeatureService("churn", [spend, visits, vip, segment])


def _estimator() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = _training_frame()
    labels = ((frame["spend"] > 60) ^ (frame["segment"] == "a")).astype(int).to_numpy()
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["spend", "visits", "vip"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["segment"]),
                    ]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    )
    return pipeline.fit(frame, labels)


def _training_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    spend = rng.normal(60, 25, n).round(2)
    return pd.DataFrame(
        {
            "spend": spend,
            "visits": rng.integers(0, 20, n),
            "vip": spend > 60,
            "segment": rng.choice(["a", "b", "c"], n).astype(object),
        }
    )


def _redis_url() -> str:
    url = os.environ.get("CONVEYOR_TEST_REDIS_URL")
    if not url:
        pytest.fail(
            "CONVEYOR_TEST_REDIS_URL is not set: run the suite with `make test` (it starts "
            'Redis), or eval "$(bash scripts/services.sh env)"'
        )
    return url


class _Counting:
    """An online store that counts its reads (to check one read per request)."""

    def __init__(self, inner: OnlineStore) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.reads: list[int] = []

    def write(self, rows: Any) -> None:
        self.inner.write(rows)

    def read(self, entity_keys: Sequence[str], refs: Sequence[str]) -> Any:
        self.reads.append(len(entity_keys))
        return self.inner.read(entity_keys, refs)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Counting]:
    if request.param == "sqlite":
        store = _Counting(SQLiteOnlineStore(tmp_path / "online.db"))
        yield store
        store.close()
        return
    prefix = f"conveyor-test:{uuid.uuid4().hex}:"
    redis_store = RedisOnlineStore(_redis_url(), prefix=prefix)
    yield _Counting(redis_store)
    redis_store.delete([str(k) for k in KEYS])
    redis_store.close()


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'metadata.db'}")
    yield store
    store.close()


def _serve(
    tmp_path: Path,
    metadata: MetadataStore,
    online: OnlineStore | None,
    *,
    service: FeatureService | None,
    frame: pd.DataFrame | None = None,
) -> tuple[TestClient, Any]:
    """Package, register and promote the model; an app serving it (not yet started)."""
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    estimator = _estimator()
    example = (frame if frame is not None else _training_frame()).head(5)
    bundle = build_bundle(
        artifacts, Model(estimator, example, features=service), name=MODEL, metrics={}
    )
    version, _ = register_version(
        metadata, model=MODEL, artifact_digest=bundle.digest, metrics={}, run_id=None, actor="a"
    )
    promote(metadata, version.version)
    features = None if online is None else OnlineFeatures(online, root=tmp_path)
    app = create_app(metadata, artifacts, online_features=features)
    return TestClient(app), estimator


def _materialise(
    tmp_path: Path, metadata: MetadataStore, online: OnlineStore, service: FeatureService
) -> FeatureStore:
    store = FeatureStore(metadata, tmp_path, online=online)
    defs = Definitions(service.features, (service,))
    store.apply(defs, actor="ana", data={f.name: _source() for f in service.features})
    store.materialize(service)
    return store


def _looked_up(store: FeatureStore, service: FeatureService, keys: list[int]) -> pd.DataFrame:
    """The features the feature store itself returns for ``keys`` (its own code path)."""
    found = get_online_features(store.online, service, keys, as_frame=True)
    assert isinstance(found, pd.DataFrame)
    frame = found.reset_index(drop=True)
    frame["vip"] = frame["vip"].astype(bool)
    frame["visits"] = frame["visits"].astype("int64")
    return frame[COLUMNS]


def _key_body(keys: list[Any], datatype: str = "INT64") -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "customer_id", "shape": [len(keys)], "datatype": datatype, "data": keys}
        ],
        "outputs": [{"name": "predict_proba"}],
    }


def _feature_body(frame: pd.DataFrame) -> dict[str, Any]:
    types = {"spend": "FP64", "visits": "INT64", "vip": "BOOL", "segment": "BYTES"}
    return {
        "inputs": [
            {"name": c, "shape": [len(frame)], "datatype": types[c], "data": frame[c].tolist()}
            for c in COLUMNS
        ],
        "outputs": [{"name": "predict_proba"}],
    }


def _proba(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    return [float(v) for v in output["data"]]


def test_entity_keys_are_answered_like_the_looked_up_features(
    tmp_path: Path, metadata: MetadataStore, online: _Counting
) -> None:
    service = _service()
    store = _materialise(tmp_path, metadata, online, service)
    keys = [3, 1, 6, 2]
    features = _looked_up(store, service, keys)
    assert features.notna().all().all()
    client, estimator = _serve(tmp_path, metadata, online, service=service)
    with client:
        online.reads.clear()
        by_key = _proba(client.post(f"/v2/models/{MODEL}/infer", json=_key_body(keys)))
        assert online.reads == [len(keys)]  # one batched read for the whole request
        as_text = _proba(
            client.post(
                f"/v2/models/{MODEL}/infer",
                json=_key_body([str(k) for k in keys], datatype="BYTES"),
            )
        )
        explicit = _proba(client.post(f"/v2/models/{MODEL}/infer", json=_feature_body(features)))
        assert online.reads == [len(keys), len(keys)]  # explicit features: no lookup
        expected = estimator.predict_proba(features)[:, 1]
        np.testing.assert_allclose(by_key, expected, rtol=0, atol=1e-12)
        assert by_key == as_text == explicit

        labels = [int(v) for v in estimator.predict(features)]
        url = f"/v2/models/{MODEL}/invocations"
        bodies = [
            {"dataframe_split": {"columns": ["customer_id"], "data": [[k] for k in keys]}},
            {"dataframe_records": [{"customer_id": k} for k in keys]},
            {"instances": [{"customer_id": k} for k in keys]},
            {"inputs": {"customer_id": [str(k) for k in keys]}},
        ]
        for body in bodies:
            response = client.post(url, json=body)
            assert response.status_code == 200, (body, response.text)
            assert response.json() == {"predictions": labels}
        csv = "customer_id\n" + "\n".join(str(k) for k in keys) + "\n"
        response = client.post(url, content=csv, headers={"content-type": "text/csv"})
        assert response.json() == {"predictions": labels}
        # The feature columns sent as well: answered from them, as before (no lookup).
        reads = len(online.reads)
        records = [
            {"customer_id": k, **row}
            for k, row in zip(keys, features.to_dict("records"), strict=True)
        ]
        response = client.post(url, json={"dataframe_records": records})
        assert response.json() == {"predictions": labels}
        assert len(online.reads) == reads
        # Some feature columns sent: not looked up; the missing ones are named.
        some = {"dataframe_records": [{"customer_id": 1, "spend": 3.5}]}
        response = client.post(url, json=some)
        assert response.status_code == 422
        assert "missing columns 'visits', 'vip', 'segment'" in response.json()["error"]
        assert len(online.reads) == reads


def test_an_unknown_entity_is_a_422_naming_the_keys_and_the_fix(
    tmp_path: Path, metadata: MetadataStore, online: _Counting
) -> None:
    service = _service()
    _materialise(tmp_path, metadata, online, service)
    client, _ = _serve(tmp_path, metadata, online, service=service)
    with client:
        response = client.post(f"/v2/models/{MODEL}/infer", json=_key_body([2, 99, 98]))
        assert response.status_code == 422
        error = response.json()["error"]  # the inference routes' {"error": "..."}
        assert "no online value of segment, spend, vip, visits for customer_id '99', '98'" in (
            error
        )
        assert "'2'" not in error
        assert "`conveyor features materialize churn`" in error
        assert "\n" not in error
        response = client.post(
            f"/v2/models/{MODEL}/invocations", json={"dataframe_records": [{"customer_id": 97}]}
        )
        assert response.status_code == 422
        assert "customer_id '97'" in response.json()["error"]


def test_an_expired_value_counts_as_missing(
    tmp_path: Path, metadata: MetadataStore, online: _Counting
) -> None:
    # Every event is before T0 + 5 days, long before now: a 1-day TTL expires all of them.
    service = _service(ttl=dt.timedelta(days=1))
    _materialise(tmp_path, metadata, online, service)
    client, _ = _serve(tmp_path, metadata, online, service=service)
    with client:
        response = client.post(f"/v2/models/{MODEL}/infer", json=_key_body([1]))
        assert response.status_code == 422
        assert "no online value of spend for customer_id '1'" in response.json()["error"]


def test_an_online_store_that_is_down_is_a_503(tmp_path: Path, metadata: MetadataStore) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = RedisOnlineStore(f"redis://127.0.0.1:{port}/0")
    client, _ = _serve(tmp_path, metadata, down, service=_service())
    with client:
        response = client.post(f"/v2/models/{MODEL}/infer", json=_key_body([1]))
        assert response.status_code == 503
        error = response.json()["error"]
        assert f"the Redis online store at redis://127.0.0.1:{port}/0 is unavailable" in error
        assert "\n" not in error


def test_a_server_without_an_online_store_says_so(tmp_path: Path, metadata: MetadataStore) -> None:
    client, _ = _serve(tmp_path, metadata, None, service=_service())
    with client:
        response = client.post(f"/v2/models/{MODEL}/infer", json=_key_body([1]))
        assert response.status_code == 503
        assert "needs an online feature store" in response.json()["error"]


def test_a_bundle_without_features_is_served_as_before(
    tmp_path: Path, metadata: MetadataStore
) -> None:
    online = SQLiteOnlineStore(tmp_path / "online.db")
    client, estimator = _serve(tmp_path, metadata, online, service=None)
    frame = _training_frame().tail(3).reset_index(drop=True)
    with client:
        served = client.app.state.repository.production(MODEL)  # type: ignore[attr-defined]
        assert served.lookup is None
        assert served.model.manifest.features is None
        response = client.post(f"/v2/models/{MODEL}/infer", json=_key_body([1]))
        assert response.status_code == 422
        assert "input 'customer_id' is not an input of the model" in response.text
        proba = _proba(client.post(f"/v2/models/{MODEL}/infer", json=_feature_body(frame)))
        np.testing.assert_allclose(proba, estimator.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)
    online.close()


def test_features_that_are_not_model_inputs_are_refused_when_the_version_loads(
    tmp_path: Path,
) -> None:
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    frame = _training_frame().rename(columns={"spend": "amount"})
    from sklearn.tree import DecisionTreeClassifier

    x = frame[["amount", "visits"]]
    estimator = DecisionTreeClassifier(max_depth=2).fit(x, (x["visits"] > 9).astype(int))
    bundle = build_bundle(
        artifacts, Model(estimator, x.head(5), features=_service()), name=MODEL, metrics={}
    )
    model = load_bundle(artifacts, bundle.digest)
    with pytest.raises(ValidationError) as refused:
        ServedLookup.for_model(model, None)
    message = refused.value.message
    assert "feature(s) segment, spend, vip of service 'churn' are not inputs" in message
    assert "(amount, visits)" in message
    assert refused.value.hint is not None
    assert "training_set" in refused.value.hint


def test_the_configured_store_is_opened_on_first_lookup_and_closed_by_its_opener(
    tmp_path: Path, metadata: MetadataStore
) -> None:
    path = tmp_path / "features" / "online.db"
    service = _service()
    _materialise(tmp_path, metadata, SQLiteOnlineStore(path), service).close()
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    frame = _training_frame()
    bundle = build_bundle(
        artifacts, Model(_estimator(), frame.head(5), features=service), name=MODEL, metrics={}
    )
    version, _ = register_version(
        metadata, model=MODEL, artifact_digest=bundle.digest, metrics={}, run_id=None, actor="a"
    )
    promote(metadata, version.version)
    features = OnlineFeatures("sqlite:///features/online.db", root=tmp_path)  # as conveyor.yaml
    with TestClient(create_app(metadata, artifacts, online_features=features)) as client:
        assert features._store is None  # nothing asked for a feature yet
        response = client.post(f"/v2/models/{MODEL}/infer", json=_key_body([4, 5]))
        assert response.status_code == 200, response.text
        opened = features._store
        assert isinstance(opened, SQLiteOnlineStore)
        assert opened.path == path
    assert features._store is None  # closed when the app stopped
