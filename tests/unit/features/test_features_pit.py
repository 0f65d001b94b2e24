"""Point-in-time correctness of training sets, on data built to leak, against merge_asof."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from conveyor.features import (
    Feature,
    FeatureService,
    MissingColumnError,
    NullEntityError,
    TimezonePolicyError,
    UnknownFeatureError,
)
from conveyor.features._store import Definitions

from .conftest import amount_doubled, events, leaky_labels

if TYPE_CHECKING:
    from conveyor.features import FeatureStore

TTL = dt.timedelta(days=3)


def _applied(fs: FeatureStore, source: pd.DataFrame, **kwargs):  # type: ignore[no-untyped-def]
    spend = Feature("spend", entity="customer_id", dtype="float64", transform=amount_doubled)
    recent = Feature(
        "spend_recent",
        entity="customer_id",
        dtype="float64",
        transform=amount_doubled,
        params={"factor": 1.0},
        ttl=TTL,
    )
    service = FeatureService("churn", [spend, recent])
    fs.apply(
        Definitions((spend, recent), (service,)),
        actor="ana",
        data={"spend": source, "spend_recent": source},
        **kwargs,
    )
    return service


def _reference(labels: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    """pandas merge_asof, the reference: backward, by customer, with and without tolerance."""
    left = labels.assign(
        _row=np.arange(len(labels)),
        event_timestamp=labels["event_timestamp"].dt.tz_convert("UTC").dt.tz_localize(None),
    ).sort_values("event_timestamp")
    right = source.assign(
        event_timestamp=source["event_timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
    ).sort_values("event_timestamp")
    spend = pd.merge_asof(
        left,
        right.assign(spend=right["amount"] * 2)[["customer_id", "event_timestamp", "spend"]],
        on="event_timestamp",
        by="customer_id",
    )
    recent = pd.merge_asof(
        left,
        right.rename(columns={"amount": "spend_recent"})[
            ["customer_id", "event_timestamp", "spend_recent"]
        ],
        on="event_timestamp",
        by="customer_id",
        tolerance=pd.Timedelta(TTL),
    )
    spend["spend_recent"] = recent["spend_recent"].to_numpy()
    return spend.sort_values("_row").reset_index(drop=True)


def test_training_set_takes_values_at_or_before_each_label_never_after(
    feature_store: FeatureStore,
) -> None:
    source = events()
    labels = leaky_labels(source)
    service = _applied(feature_store, source)

    got = feature_store.training_set(service, labels)
    want = _reference(labels, source)

    assert list(got.columns) == ["customer_id", "event_timestamp", "label", "spend", "spend_recent"]
    assert got["customer_id"].tolist() == labels["customer_id"].tolist()  # order kept
    np.testing.assert_allclose(got["spend"].to_numpy(float), want["spend"].to_numpy(float))
    np.testing.assert_allclose(
        got["spend_recent"].to_numpy(float), want["spend_recent"].to_numpy(float)
    )
    # The data leaks if joined naively: each customer's latest value overall differs from
    # the point-in-time value for every label (a new value arrives a second after each one).
    latest = source.sort_values("event_timestamp").groupby("customer_id")["amount"].last() * 2
    naive = labels["customer_id"].map(latest).to_numpy(float)
    assert (np.abs(naive - got["spend"].to_numpy(float)) > 1e-9).mean() > 0.9


def test_ttl_nulls_values_older_than_it_and_only_those(feature_store: FeatureStore) -> None:
    source = events()
    labels = leaky_labels(source)
    service = _applied(feature_store, source)

    got = feature_store.training_set(service, labels)

    expired = got["spend_recent"].isna()
    assert expired.any()
    assert not expired.all()
    assert got.loc[~expired, "spend"].to_numpy(float) == pytest.approx(
        got.loc[~expired, "spend_recent"].to_numpy(float) * 2, abs=1e-9
    )


def test_labels_before_any_value_get_nulls(feature_store: FeatureStore) -> None:
    service = _applied(feature_store, events())
    early = pd.DataFrame(
        {"customer_id": [1, 2], "event_timestamp": pd.to_datetime(["2025-06-01"] * 2, utc=True)}
    )
    got = feature_store.training_set(service, early)
    assert got["spend"].isna().all()


def test_naive_label_times_need_a_timezone_policy(feature_store: FeatureStore) -> None:
    source = events()
    service = _applied(feature_store, source)
    labels = leaky_labels(source)
    naive = labels.assign(
        event_timestamp=labels["event_timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
    )
    with pytest.raises(TimezonePolicyError, match="'event_timestamp' has no timezone") as err:
        feature_store.training_set(service, naive)
    assert err.value.hint is not None
    assert "timezone='UTC'" in err.value.hint
    as_utc = feature_store.training_set(service, naive, timezone="UTC")
    aware = feature_store.training_set(service, labels)
    np.testing.assert_array_equal(as_utc["spend"].to_numpy(float), aware["spend"].to_numpy(float))


def test_naive_source_times_need_a_timezone_policy(feature_store: FeatureStore) -> None:
    source = events()
    naive = source.assign(event_timestamp=source["event_timestamp"].dt.tz_localize(None))
    f = Feature("spend", entity="customer_id", dtype="float64", transform=amount_doubled)
    with pytest.raises(TimezonePolicyError, match="feature 'spend'"):
        feature_store.apply(Definitions((f,), ()), actor="ana", data={"spend": naive})


def test_a_transformation_reading_a_missing_column_is_named(feature_store: FeatureStore) -> None:
    f = Feature(
        "ratio",
        entity="customer_id",
        dtype="float64",
        transform=lambda df: df["amount"] / df["income"],
    )
    with pytest.raises(MissingColumnError, match="reads column 'income'") as err:
        feature_store.apply(Definitions((f,), ()), actor="ana", data={"ratio": events()})
    assert err.value.hint is not None
    assert "amount" in err.value.hint


def test_null_entity_keys_are_counted(feature_store: FeatureStore) -> None:
    source = events().astype({"customer_id": "float64"})
    source.loc[[3, 5, 8], "customer_id"] = np.nan
    f = Feature("spend", entity="customer_id", dtype="float64", transform=amount_doubled)
    with pytest.raises(NullEntityError, match="null in 3 of 1,000 rows"):
        feature_store.apply(Definitions((f,), ()), actor="ana", data={"spend": source})
    labels = leaky_labels(events()).astype({"customer_id": "float64"})
    labels.loc[0, "customer_id"] = np.nan
    service = _applied(feature_store, events())
    with pytest.raises(NullEntityError, match="the labels: entity key 'customer_id' is null in 1"):
        feature_store.training_set(service, labels)


def test_labels_without_the_entity_column_are_refused(feature_store: FeatureStore) -> None:
    service = _applied(feature_store, events())
    labels = leaky_labels(events()).rename(columns={"customer_id": "cid"})
    with pytest.raises(MissingColumnError, match="entity key column 'customer_id'"):
        feature_store.training_set(service, labels)


def test_a_feature_the_service_lacks_is_refused(feature_store: FeatureStore) -> None:
    service = _applied(feature_store, events())
    with pytest.raises(UnknownFeatureError, match="has no feature 'income'") as err:
        service.record().feature("income")
    assert err.value.hint == "its features are: spend, spend_recent"
