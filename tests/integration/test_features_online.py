"""The online store suite, run against SQLite and a real Redis server.

Redis is the one ``make test`` starts (``scripts/services.sh``), found through
``CONVEYOR_TEST_REDIS_URL``. Each test writes under a key prefix of its own and deletes only
its own keys afterwards (never FLUSHDB: other suites share the server).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from conveyor.features import (
    Feature,
    FeatureService,
    FeatureStore,
    RedisOnlineStore,
    SQLiteOnlineStore,
    UnknownFeatureError,
)
from conveyor.features._store import Definitions

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.features import OnlineStore
    from conveyor.store.metadata import MetadataStore

REDIS_URL_VAR = "CONVEYOR_TEST_REDIS_URL"
T0 = pd.Timestamp("2026-03-01", tz="UTC")


def _redis_url() -> str:
    url = os.environ.get(REDIS_URL_VAR)
    if not url:
        pytest.fail(
            f"{REDIS_URL_VAR} is not set: run the suite with `make test` (it starts Redis), "
            'or eval "$(bash scripts/services.sh env)"'
        )
    return url


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        store: OnlineStore = SQLiteOnlineStore(tmp_path / "online.db")
        yield store
        store.close()
        return
    prefix = f"conveyor-test:{uuid.uuid4().hex}:"
    redis_store = RedisOnlineStore(_redis_url(), prefix=prefix)
    yield redis_store
    client = redis_store._client
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    redis_store.close()


def _times(days: list[float]) -> pd.Series:
    return pd.Series([T0 + pd.Timedelta(days=d) for d in days])


def _source() -> pd.DataFrame:
    """Three customers; customer 2's events arrive out of order; one event on day 10."""
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2, 2, 3],
            "event_timestamp": _times([0, 2, 5, 1, 3, 10]),
            "amount": [10.0, 12.0, 30.0, 20.0, 25.0, 7.0],
            "segment": ["a", "b", "c", "c", "d", "e"],
        }
    )


def _definitions() -> Definitions:
    spend = Feature("spend", entity="customer_id", dtype="float64", transform=lambda d: d["amount"])
    segment = Feature(
        "segment", entity="customer_id", dtype="string", transform=lambda d: d["segment"]
    )
    big = Feature(
        "big",
        entity="customer_id",
        dtype="bool",
        transform=lambda d: d["amount"] > 15,
        ttl=dt.timedelta(days=3),
    )
    return Definitions((spend, segment, big), (FeatureService("churn", [spend, segment, big]),))


@pytest.fixture
def fs(sqlite_store: MetadataStore, tmp_path: Path, online: OnlineStore) -> Iterator[FeatureStore]:
    store = FeatureStore(sqlite_store, tmp_path, online=online)
    defs = _definitions()
    store.apply(defs, actor="ana", data={f.name: _source() for f in defs.features})
    return store


def test_only_newer_values_replace_stored_ones(online: OnlineStore) -> None:
    online.write([("7", "f@1", 1.5, 100), ("7", "g@1", "x", 100)])
    online.write([("7", "f@1", 9.9, 50), ("7", "g@1", "y", 200), ("8", "f@1", None, 10)])
    got = online.read(["7", "8", "9"], ["f@1", "g@1"])
    assert got == [{"f@1": (1.5, 100), "g@1": ("y", 200)}, {"f@1": (None, 10)}, {}]
    # In the order asked, a key asked twice answered twice, only the features asked for.
    assert online.read(["9", "7", "7"], ["g@1"]) == [{}, {"g@1": ("y", 200)}, {"g@1": ("y", 200)}]


def test_online_values_agree_with_offline_after_materialisation(fs: FeatureStore) -> None:
    done = fs.materialize("churn")

    assert set(done.entities.values()) == {3}
    now = T0.to_pydatetime() + dt.timedelta(days=6)
    got = fs.get_online_features("churn", [1, 2, 3, 4], as_frame=False)
    assert got["1"] == {"spend": 12.0, "segment": "b", "big": None}  # big expired (ttl 3d)
    assert got["2"]["spend"] == 30.0
    assert got["2"]["segment"] == "c"
    assert got["4"] == {"spend": None, "segment": None, "big": None}
    from conveyor.features import get_online_features

    fresh = get_online_features(fs.online, fs.service("churn"), [2], now=now)
    assert fresh == {"2": {"spend": 30.0, "segment": "c", "big": True}}
    skew = fs.skew("churn")
    assert [(s.feature, s.rows, s.mismatches) for s in skew] == [
        ("spend", 3, 0),
        ("segment", 3, 0),
        ("big", 3, 0),
    ]


def test_materialisation_is_incremental_by_time_window_in_any_order(fs: FeatureStore) -> None:
    day = T0.to_pydatetime()
    later = fs.materialize(
        "churn", start=day + dt.timedelta(days=2), end=day + dt.timedelta(days=6)
    )
    assert later.entities[fs.service("churn").features[0].ref] == 2  # customers 1 and 2

    assert fs.get_online_features("churn", [1, 2, 3], features=["spend"]) == {
        "1": {"spend": 12.0},
        "2": {"spend": 30.0},
        "3": {"spend": None},
    }
    # A backfill of the earlier window must not overwrite the newer values.
    fs.materialize("churn", end=day + dt.timedelta(days=2))
    assert fs.get_online_features("churn", [1, 2], features=["spend"]) == {
        "1": {"spend": 12.0},
        "2": {"spend": 30.0},
    }
    stale = fs.skew("churn")
    assert stale[0].mismatches == 1  # customer 3's day-10 value is not online yet
    fs.materialize("churn", start=day + dt.timedelta(days=6))
    assert all(s.mismatches == 0 for s in fs.skew("churn"))


def test_skew_check_catches_a_value_changed_online(fs: FeatureStore) -> None:
    fs.materialize("churn")
    spend = fs.service("churn").features[0]
    future = int((T0 + pd.Timedelta(days=30)).value // 1000)
    fs.online.write([("2", spend.ref, 31.0, future)])

    (skew, *_) = fs.skew("churn")

    assert (skew.feature, skew.mismatches, skew.rows) == ("spend", 1, 3)
    assert skew.mean_abs_diff == pytest.approx(1.0 / 3, abs=1e-12)


def test_requesting_a_feature_the_service_lacks_is_refused(fs: FeatureStore) -> None:
    with pytest.raises(UnknownFeatureError, match="'churn' has no feature 'income'"):
        fs.get_online_features("churn", [1], features=["income"])


def test_batch_writes_of_many_entities(online: OnlineStore) -> None:
    keys = [str(k) for k in range(2500)]
    values = np.arange(2500, dtype=float) / 7
    online.write((k, "f@1", v, 1) for k, v in zip(keys, values, strict=True))
    got = online.read(keys, ["f@1"])
    assert [g["f@1"][0] for g in got] == values.tolist()
