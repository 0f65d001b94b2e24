"""Data for the feature store's tests: per-customer events, and labels built to leak."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conveyor.features import FeatureStore
    from conveyor.store.metadata import MetadataStore


def amount_doubled(df, factor=2.0):  # type: ignore[no-untyped-def]
    return df["amount"] * factor


def events(seed: int = 3, customers: int = 40, per_customer: int = 25) -> pd.DataFrame:
    """Source rows: irregular event times per customer, UTC, in no particular order."""
    rng = np.random.default_rng(seed)
    n = customers * per_customer
    start = pd.Timestamp("2026-01-01", tz="UTC")
    offsets = rng.integers(0, 60 * 24 * 3600, n)
    frame = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(customers), per_customer),
            "event_timestamp": start + pd.to_timedelta(offsets, unit="s"),
            "amount": rng.normal(100, 30, n).round(2),
        }
    )
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def leaky_labels(source: pd.DataFrame, seed: int = 4) -> pd.DataFrame:
    """One label per source event, one second *before* the customer's next event.

    A value is always recorded right after each label's time, so a join that takes any value
    after the label's time (the naive "latest value" join) gives a different answer.
    """
    ordered = source.sort_values(["customer_id", "event_timestamp"])
    nxt = ordered.groupby("customer_id")["event_timestamp"].shift(-1)
    labels = pd.DataFrame(
        {
            "customer_id": ordered["customer_id"].to_numpy(),
            "event_timestamp": (nxt - pd.Timedelta(seconds=1)).to_numpy(),
        }
    ).dropna()
    labels["label"] = np.random.default_rng(seed).integers(0, 2, len(labels))
    return labels.sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.fixture
def feature_store(sqlite_store: MetadataStore, tmp_path: Path) -> Iterator[FeatureStore]:
    from conveyor.features import FeatureStore

    with FeatureStore(sqlite_store, tmp_path, online="sqlite") as fs:
        yield fs
