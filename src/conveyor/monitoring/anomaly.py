"""Anomalies in a model's outputs: impossible answers, a shifted mean or class mix, one answer
taking over.

Per window:

* ``anomaly.nan_share``: predictions that are NaN or null;
* ``anomaly.out_of_range_share``: predictions outside the range the reference predictions span
  (for probabilities, outside [0, 1] as well);
* ``anomaly.top_answer_share`` and ``anomaly.top_answer_lift``: the share of the most frequent
  answer, and that share minus the same answer's share in the reference (a stuck model or a
  broken upstream answering one thing to everyone);
* ``anomaly.mean_ewma``: the EWMA statistic of the standardised prediction mean, and
  ``anomaly.mean_shift`` (1.0 when it is outside its control limit). For 0/1 classes the mean is
  the positive share, so this covers the class mix of binary models too.

**EWMA, not CUSUM.** Both detect a persistent shift that no single window shows. CUSUM is
optimal for one shift size ``k`` chosen in advance; we do not know in advance whether an output
shifts by a little for long (drift) or by a lot at once (a bad release), and EWMA with the usual
lambda = 0.2 and L = 3 is close to CUSUM for small shifts and better for large ones. It also has
one state number per stream, which is stored in the window row and carried to the next window,
and the statistic reads as "a smoothed z-score", which is what an on-call engineer can judge.
Windows differ in size, so each window's mean is first standardised by its own standard error,
``z_t = (mean_t - mu_ref) / (sd_ref / sqrt(n_t))``, and the EWMA runs over ``z_t`` with the
asymptotic control limit ``L * sqrt(lambda / (2 - lambda))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Ewma", "output_anomalies"]


@dataclass(frozen=True)
class Ewma:
    """An EWMA control chart over standardised values (see the module docstring)."""

    lam: float = 0.2
    width: float = 3.0

    @property
    def limit(self) -> float:
        return self.width * math.sqrt(self.lam / (2.0 - self.lam))

    def update(self, previous: float | None, z: float) -> float:
        """The next EWMA value (the first window starts from the in-control value 0)."""
        return self.lam * z + (1.0 - self.lam) * (previous or 0.0)

    def out_of_control(self, value: float) -> bool:
        return abs(value) > self.limit


def output_anomalies(
    predictions: Any,
    reference_predictions: Any,
    *,
    previous_ewma: float | None = None,
    chart: Ewma | None = None,
) -> dict[str, Any]:
    """The anomaly metrics of one window's predictions (see the module docstring).

    Args:
        predictions: This window's predictions.
        reference_predictions: The model's predictions on the reference data.
        previous_ewma: The ``anomaly.mean_ewma`` of the previous window, if any.
        chart: The EWMA chart's parameters.
    """
    import numpy as np
    import pandas as pd

    chart = chart or Ewma()
    cur = pd.Series(predictions)
    ref = pd.Series(reference_predictions)
    out: dict[str, Any] = {}
    if len(cur) == 0:
        return out
    out["anomaly.nan_share"] = float(cur.isna().mean())
    present = cur.dropna()
    counts = present.value_counts(normalize=True, sort=True)
    if len(counts):
        top = counts.index[0]
        ref_share = float((ref == top).mean()) if len(ref) else 0.0
        out["anomaly.top_answer"] = top.item() if hasattr(top, "item") else top
        out["anomaly.top_answer_share"] = float(counts.iloc[0])
        out["anomaly.top_answer_lift"] = float(counts.iloc[0]) - ref_share
    numeric = cur.dtype.kind in "biuf" and ref.dtype.kind in "biuf"
    if numeric and len(present) and len(ref):
        values = present.to_numpy(dtype=float)
        reference = ref.to_numpy(dtype=float)
        lo, hi = float(np.min(reference)), float(np.max(reference))
        if lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
        out["anomaly.out_of_range_share"] = float(np.mean((values < lo) | (values > hi)))
        sd = float(np.std(reference, ddof=1)) if len(reference) > 1 else 0.0
        if sd > 0:
            z = (float(np.mean(values)) - float(np.mean(reference))) / (sd / math.sqrt(len(values)))
            ewma = chart.update(previous_ewma, z)
            out["anomaly.mean_z"] = z
            out["anomaly.mean_ewma"] = ewma
            out["anomaly.mean_shift"] = 1.0 if chart.out_of_control(ewma) else 0.0
    return out
