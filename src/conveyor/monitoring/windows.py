"""Windows of live traffic against the training reference: drift, data quality, performance.

One window's metrics are one flat mapping of dotted names to numbers (plus a few lists that say
*which* columns), stored as one ``monitoring_window`` row. Alert rules name these metrics:

==============================  ===============================================================
metric                          meaning
==============================  ===============================================================
``rows``                        rows logged in the window
``drift.share_drifted``         share of compared feature columns that drifted (``data.drift``)
``drift.column.<c>``            column ``c``'s drift statistic (Wasserstein/std, JS, KS, chi2)
``drift.drifted``               the drifted columns (a list, evidence)
``prediction.drift``            drift statistic of the predictions vs reference predictions
``prediction.mean``             mean prediction (for 0/1 classes: the positive share)
``quality.null_share``          the largest share of nulls of any feature column
``quality.null_share.<c>``      share of nulls of column ``c``
``quality.out_of_range_share``  the largest share of values outside the reference's [min, max]
``latency.p50`` / ``.p99``      latency percentiles, seconds
``labels.count``                rows joined with a label
``perf.accuracy`` ...           accuracy, precision, recall (positive class), ECE (from scores)
``slice.<c>=<v>.<metric>``      the same, for one value of a slice column
``anomaly.*``                   see :mod:`conveyor.monitoring.anomaly`
==============================  ===============================================================

Drift and quality reuse :mod:`conveyor.data` (one sketch per column, the same tests and
defaults as ``conveyor data drift``); calibration reuses :mod:`conveyor.evaluation.calibration`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.store.metadata.schema import monitoring_window

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd

    from conveyor.store.metadata import MetadataStore

__all__ = [
    "Window",
    "WindowSpec",
    "compute_window",
    "latest_windows",
    "read_windows",
    "record_window",
]

#: Columns of the inference log that are bookkeeping, not features.
LOG_COLUMNS = ("at", "version", "request_id", "latency_s", "prediction", "model")


@dataclass(frozen=True)
class WindowSpec:
    """What to compare a window with and how.

    Args:
        reference: The training reference (feature columns; others are ignored).
        reference_predictions: The model's predictions on the reference, for prediction drift.
        labels: Actual outcomes: a frame with ``request_id`` and ``label`` columns.
        positive: The positive class of precision and recall.
        slices: Columns whose values each get their own performance metrics.
        score_column: A log column holding the positive-class probability, for calibration.
    """

    reference: pd.DataFrame
    reference_predictions: Any = None
    labels: pd.DataFrame | None = None
    positive: Any = 1
    slices: tuple[str, ...] = ()
    score_column: str | None = None
    drift_settings: Any = None
    features: tuple[str, ...] | None = field(default=None)


@dataclass(frozen=True)
class Window:
    """One stored window of one model (and version); ``id`` is its row's."""

    model: str
    version: int | None
    start: dt.datetime
    end: dt.datetime
    metrics: dict[str, Any]
    id: int | None = None


def compute_window(frame: pd.DataFrame, spec: WindowSpec) -> dict[str, Any]:
    """The metrics of one window of logged rows (see the module docstring).

    Raises:
        ValidationError: a numeric column holds infinite values.
    """
    import numpy as np

    from conveyor.data.drift import DriftSettings, compare_columns, judge
    from conveyor.data.profile import sketch_frame

    features = list(spec.features or [c for c in spec.reference.columns if c in frame.columns])
    metrics: dict[str, Any] = {"rows": len(frame)}
    if len(frame) == 0:
        return metrics
    settings = spec.drift_settings or DriftSettings()
    ref = sketch_frame(spec.reference, what="the reference", columns=features)
    cur = sketch_frame(frame, what="the window", columns=features)
    results = compare_columns(ref, cur, settings)
    judge(results, settings)
    drifted = [r["column"] for r in results if r["drifted"]]
    metrics["drift.share_drifted"] = len(drifted) / len(results) if results else 0.0
    metrics["drift.drifted"] = drifted
    metrics["drift.compared"] = len(results)
    for r in results:
        metrics[f"drift.column.{r['column']}"] = r["statistic"]
    if spec.reference_predictions is not None and "prediction" in frame:
        import pandas as pd

        pref = sketch_frame(
            pd.DataFrame({"prediction": np.asarray(spec.reference_predictions)}),
            what="the reference predictions",
        )
        pcur = sketch_frame(frame[["prediction"]], what="the window's predictions")
        presults = compare_columns(pref, pcur, settings)
        judge(presults, settings)
        if presults:
            metrics["prediction.drift"] = presults[0]["statistic"]
            metrics["prediction.drifted"] = bool(presults[0]["drifted"])
    metrics.update(_quality(frame, spec.reference, features))
    if "latency_s" in frame:
        latency = frame["latency_s"].to_numpy(dtype=float)
        metrics["latency.p50"] = float(np.quantile(latency, 0.5))
        metrics["latency.p99"] = float(np.quantile(latency, 0.99))
    if "prediction" in frame:
        pred = frame["prediction"]
        if pred.dtype.kind in "biuf":
            metrics["prediction.mean"] = float(np.nanmean(pred.to_numpy(dtype=float)))
    if spec.labels is not None and "request_id" in frame:
        metrics.update(_performance(frame, spec))
    return metrics


def _quality(frame: pd.DataFrame, reference: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """Null share per column, and the share outside the reference's range per numeric column."""
    out: dict[str, Any] = {}
    worst_null, worst_range = 0.0, 0.0
    for column in features:
        values = frame[column]
        null = float(values.isna().mean())
        out[f"quality.null_share.{column}"] = null
        worst_null = max(worst_null, null)
        ref = reference[column]
        if ref.dtype.kind in "iuf" and values.dtype.kind in "iuf":
            present = values.dropna()
            lo, hi = float(ref.min()), float(ref.max())
            share = float(((present < lo) | (present > hi)).mean()) if len(present) else 0.0
            out[f"quality.out_of_range_share.{column}"] = share
            worst_range = max(worst_range, share)
    out["quality.null_share"] = worst_null
    out["quality.out_of_range_share"] = worst_range
    return out


def _performance(frame: pd.DataFrame, spec: WindowSpec) -> dict[str, Any]:
    assert spec.labels is not None
    joined = frame.merge(
        spec.labels[["request_id", "label"]].drop_duplicates("request_id", keep="last"),
        on="request_id",
        how="inner",
    )
    out: dict[str, Any] = {"labels.count": len(joined)}
    if len(joined) == 0:
        return out
    out.update(_scores(joined, spec, "perf"))
    for column in spec.slices:
        for value, part in joined.groupby(column, sort=True, dropna=False):
            out.update(_scores(part, spec, f"slice.{column}={value}"))
    return out


def _scores(joined: pd.DataFrame, spec: WindowSpec, prefix: str) -> dict[str, float]:
    """Accuracy, precision and recall of the positive class, and ECE when scores are logged.

    Precision (recall) is 0.0 when nothing was predicted (is) positive, as scikit-learn's
    ``zero_division=0``.
    """
    import numpy as np

    y = joined["label"].to_numpy()
    p = joined["prediction"].to_numpy()
    if y.dtype != p.dtype and y.dtype.kind in "biuf" and p.dtype.kind in "biuf":
        y, p = y.astype(float), p.astype(float)
    tp = int(np.sum((p == spec.positive) & (y == spec.positive)))
    predicted = int(np.sum(p == spec.positive))
    actual = int(np.sum(y == spec.positive))
    out = {
        f"{prefix}.count": float(len(y)),
        f"{prefix}.accuracy": float(np.mean(y == p)),
        f"{prefix}.precision": tp / predicted if predicted else 0.0,
        f"{prefix}.recall": tp / actual if actual else 0.0,
    }
    if spec.score_column is not None and spec.score_column in joined:
        from conveyor.evaluation.calibration import expected_calibration_error

        positive = (y == spec.positive).astype(int)
        scores = joined[spec.score_column].to_numpy(dtype=float)
        out[f"{prefix}.ece"] = float(expected_calibration_error(positive, scores))
    return out


def record_window(
    store: MetadataStore,
    *,
    model: str,
    version: int | None,
    start: dt.datetime,
    end: dt.datetime,
    metrics: dict[str, Any],
    actor: str = "monitor",
) -> Window:
    """Store one window's metrics (non-finite numbers become null: JSON has no NaN)."""
    clean = {k: _finite(v) for k, v in metrics.items()}
    with store.write(actor) as tx:
        inserted = tx.conn.execute(
            sa.insert(monitoring_window).values(
                model=model, version=version, start=start, end=end, metrics=clean
            )
        )
        (row_id,) = inserted.inserted_primary_key or (None,)
    return Window(model, version, start, end, clean, row_id)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_windows(
    conn: sa.Connection,
    model: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[Window]:
    """Stored windows of ``model`` ending in (since, until], oldest first."""
    query = sa.select(monitoring_window).where(monitoring_window.c.model == model)
    if since is not None:
        query = query.where(monitoring_window.c.end > since)
    if until is not None:
        query = query.where(monitoring_window.c.end <= until)
    query = query.order_by(monitoring_window.c.start, monitoring_window.c.id)
    return [
        Window(r.model, r.version, r.start, r.end, dict(r.metrics or {}), r.id)
        for r in conn.execute(query)
    ]


def latest_windows(conn: sa.Connection, *, model: str | None = None) -> list[Window]:
    """The newest stored window of each model (or of ``model``), by model."""
    newest = sa.select(
        monitoring_window.c.model, sa.func.max(monitoring_window.c.start).label("start")
    ).group_by(monitoring_window.c.model)
    if model is not None:
        newest = newest.where(monitoring_window.c.model == model)
    sub = newest.subquery()
    query = (
        sa.select(monitoring_window)
        .join(
            sub,
            sa.and_(
                monitoring_window.c.model == sub.c.model,
                monitoring_window.c.start == sub.c.start,
            ),
        )
        .order_by(monitoring_window.c.model, monitoring_window.c.id)
    )
    return [
        Window(r.model, r.version, r.start, r.end, dict(r.metrics or {}), r.id)
        for r in conn.execute(query)
    ]
