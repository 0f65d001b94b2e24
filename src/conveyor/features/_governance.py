"""Training/serving consistency: the checks that make a feature served differently from how it
was trained impossible to miss.

- :func:`check_serving_features`, at deployment: the exact feature versions a model was trained
  with (its bundle manifest) against those a service would serve; any difference refuses.
- :func:`skew_check`: the online store's values against the offline store's, for the same
  entities at the same time; a difference means materialisation is stale or broken.
- :func:`skew_report`: logged inference features (what the model was actually given) joined
  point-in-time with the offline values (what training would have seen), per feature.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.features._definition import (
    FeatureService,
    ServiceRecord,
    as_record,
    parse_ref,
    short,
)
from conveyor.features._frames import EVENT_TIMESTAMP
from conveyor.features.errors import FeatureMismatchError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import pandas as pd

    from conveyor.features._offline import OfflineStore
    from conveyor.features._online import OnlineStore

__all__ = ["FeatureSkew", "check_serving_features", "skew_check", "skew_report"]


def check_serving_features(trained: Iterable[str], serving: FeatureService | ServiceRecord) -> None:
    """Refuse when ``serving`` would not serve exactly the feature versions ``trained``.

    Args:
        trained: The ``name@version`` refs the model was trained with (its manifest).
        serving: The service the deployment would look features up with.

    Raises:
        FeatureMismatchError: naming each feature whose versions differ (trained, serving),
            each trained feature the service lacks, and each it adds; ``details["mismatches"]``
            holds them as ``{"feature", "trained", "serving"}`` (a missing side is None).
    """
    record = as_record(serving)
    want = dict(parse_ref(r) for r in trained)
    have: dict[str, str | None] = {f.name: f.version for f in record.features}
    mismatches = [
        {"feature": name, "trained": want.get(name), "serving": have.get(name)}
        for name in sorted(set(want) | set(have))
        if want.get(name) != have.get(name)
    ]
    if not mismatches:
        return
    parts = [
        f"{m['feature']} (trained {_show(m['trained'])}, serving {_show(m['serving'])})"
        for m in mismatches
    ]
    raise FeatureMismatchError(
        f"feature service '{record.name}' does not serve the feature versions the model was "
        f"trained with: {'; '.join(parts)}",
        hint="serve the model with the service version it was trained with, or retrain it "
        "on the new feature versions",
        details={"service": record.name, "mismatches": mismatches},
    )


def _show(version: str | None) -> str:
    return "none" if version is None else short(version)


@dataclass(frozen=True)
class FeatureSkew:
    """How one feature's values differ between two sources.

    Attributes:
        feature: The feature name.
        rows: Rows compared (both sides present, or both missing).
        mismatches: Rows whose values differ beyond the tolerance (one side missing counts).
        share: ``mismatches / rows`` (0 for no rows).
        mean_abs_diff: Mean absolute difference over rows where both are numbers (None if none).
    """

    feature: str
    rows: int
    mismatches: int
    share: float
    mean_abs_diff: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "rows": self.rows,
            "mismatches": self.mismatches,
            "share": self.share,
            "mean_abs_diff": self.mean_abs_diff,
        }


def skew_check(
    offline: OfflineStore,
    online: OnlineStore,
    service: FeatureService | ServiceRecord,
    *,
    entity_keys: Sequence[Any] | None = None,
    at: dt.datetime | None = None,
    tolerance: float = 1e-9,
) -> list[FeatureSkew]:
    """Online values against offline values as of ``at``, for the same entities.

    Args:
        entity_keys: The entities to compare (default: every entity in the offline store).
        at: The moment whose offline values the online store should hold (default: the
            latest offline values, which is what a full materialisation serves).
        tolerance: Absolute difference under which two numbers are equal.
    """
    import pandas as pd

    record = as_record(service)
    entity = record.entity
    frames = [offline.read(f) for f in record.features]
    if entity_keys is None:
        keys = pd.concat([f[entity] for f in frames]).drop_duplicates().tolist()
    else:
        keys = list(entity_keys)
    moment = (
        at.astimezone(dt.UTC).replace(tzinfo=None)
        if at is not None and at.tzinfo is not None
        else at
    )
    expected = pd.DataFrame({entity: [str(k) for k in keys]})
    for f, values in zip(record.features, frames, strict=True):
        upto = values if moment is None else values[values[EVENT_TIMESTAMP] <= moment]
        latest = upto.groupby(upto[entity].astype(str), sort=False).tail(1)
        expected[f.name] = expected[entity].map(
            dict(zip(latest[entity].astype(str), latest[f.name], strict=True))
        )
    # The TTL is a serving rule, not a storage one: compare what is stored.
    stored = online.read(expected[entity].tolist(), [f.ref for f in record.features])
    served = pd.DataFrame(
        [{f.name: (got.get(f.ref) or (None, 0))[0] for f in record.features} for got in stored]
    )
    return [_compare(f.name, expected[f.name], served[f.name], tolerance) for f in record.features]


def skew_report(
    logged: pd.DataFrame,
    offline: OfflineStore,
    service: FeatureService | ServiceRecord,
    *,
    timestamp: str = "request_time",
    timezone: str | None = None,
    tolerance: float = 1e-9,
) -> list[FeatureSkew]:
    """Logged inference features against the values training would have seen at request time.

    Args:
        logged: One row per request: the entity key, ``timestamp`` and a column per feature
            (the values the model was given); features without a column are skipped.
        offline: The offline store.
        service: The service the model was served with.
        timestamp: The request-time column.
        timezone: How to read naive request times.
    """
    record = as_record(service)
    names = [f.name for f in record.features if f.name in logged.columns]
    keys = logged[[record.entity, timestamp]]
    training = offline.training_set(
        [record.feature(n) for n in names], keys, timestamp=timestamp, timezone=timezone
    )
    return [_compare(n, training[n], logged[n].reset_index(drop=True), tolerance) for n in names]


def _compare(name: str, expected: pd.Series, actual: pd.Series, tolerance: float) -> FeatureSkew:
    import numpy as np
    import pandas as pd

    a = expected.reset_index(drop=True)
    b = actual.reset_index(drop=True)
    a_missing, b_missing = a.isna().to_numpy(), b.isna().to_numpy()
    both = ~a_missing & ~b_missing
    a_num = pd.to_numeric(a, errors="coerce").astype("float64").to_numpy()
    b_num = pd.to_numeric(b, errors="coerce").astype("float64").to_numpy()
    numeric = both & ~np.isnan(a_num) & ~np.isnan(b_num)
    diff = np.abs(a_num - b_num)
    text_differs = a.astype(str).to_numpy() != b.astype(str).to_numpy()
    differs = np.where(
        numeric, diff > tolerance, np.where(both, text_differs, a_missing != b_missing)
    )
    rows = len(a)
    mismatches = int(differs.sum())
    return FeatureSkew(
        feature=name,
        rows=rows,
        mismatches=mismatches,
        share=mismatches / rows if rows else 0.0,
        mean_abs_diff=float(diff[numeric].mean()) if numeric.any() else None,
    )
