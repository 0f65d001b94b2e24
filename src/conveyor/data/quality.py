"""Quality checks of current data against the reference: missing values, duplicates, constant
columns, outliers and volume.

Each compares the current data with the reference, not with an absolute rule, so a column that
was always 30 % empty is not a finding, and one that jumps from 0 % to 30 % is.

Outliers use the robust z-score of Iglewicz and Hoaglin, ``0.6745 * (x - median) / MAD`` with
the reference's median and MAD, and flag ``|z| > 3.5``; when the MAD is 0 (a column that is
mostly one value) the mean absolute deviation times 1.2533 stands in. We chose it over an
IsolationForest because it reads the sorted sketch each column already has (two binary searches
per column, no model to fit, milliseconds on a million rows), is deterministic, and names the
column at fault; an IsolationForest is random, costs seconds per million rows and says only
"this row is odd". The finding is the *share* of outliers in the current data against the
share in the reference (heavy-tailed columns have outliers by nature), beyond
``max_outlier_increase`` and beyond three binomial standard errors (small samples are noisy).

Duplicate rows are found by a 64-bit hash per row (``pandas.util.hash_pandas_object``), the
same hashes that the leakage check uses to find rows shared with the reference; at a million
rows the chance of a false collision is about 3e-8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.data.findings import Finding

if TYPE_CHECKING:
    import numpy as np

    from conveyor.data.profile import ColumnSketch

__all__ = [
    "QualitySettings",
    "duplicate_share",
    "outlier_bounds",
    "outlier_finding",
    "quality_findings",
]

_Z = 0.6745  # the 0.75 quantile of the standard normal: makes MAD comparable with a std


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the quality checks; rates and shares are absolute increases (0.05 is 5
    percentage points)."""

    max_missing_increase: float = 0.05
    max_duplicate_increase: float = 0.01
    outlier_z: float = 3.5
    max_outlier_increase: float = 0.01
    min_volume_ratio: float = 0.1
    max_volume_ratio: float = 10.0


def outlier_bounds(ref: ColumnSketch, z: float) -> tuple[float, float] | None:
    """Values outside these bounds have a robust z-score above ``z`` (None: no spread)."""
    import numpy as np

    assert ref.values is not None
    med, mad = ref.median_mad
    scale = mad / _Z
    if scale == 0:
        scale = float(np.mean(np.abs(ref.values - med))) * 1.2533
    if scale == 0:
        return None
    return med - z * scale, med + z * scale


def _share_outside(sorted_values: np.ndarray[Any, Any], lo: float, hi: float) -> float:
    import numpy as np

    if len(sorted_values) == 0:
        return 0.0
    below = int(np.searchsorted(sorted_values, lo, side="left"))
    above = len(sorted_values) - int(np.searchsorted(sorted_values, hi, side="right"))
    return (below + above) / len(sorted_values)


def duplicate_share(sorted_hashes: np.ndarray[Any, Any]) -> tuple[float, int]:
    """Share and count of rows that repeat an earlier row, from the sorted row hashes."""
    if len(sorted_hashes) == 0:
        return 0.0, 0
    dup = int((sorted_hashes[1:] == sorted_hashes[:-1]).sum())
    return dup / len(sorted_hashes), dup


def outlier_finding(
    ref: ColumnSketch, cur: ColumnSketch, settings: QualitySettings
) -> Finding | None:
    """The outlier finding of one numeric column, if its outlier share grew (module docstring)."""
    from conveyor.data.drift import id_like

    name = ref.name
    if not (
        ref.kind == "numeric"
        and cur.kind == "numeric"
        and not ref.categorical_like
        and not id_like(ref)
        and ref.values is not None
        and cur.values is not None
        and ref.present
        and cur.present
    ):
        return None
    bounds = outlier_bounds(ref, settings.outlier_z)
    if bounds is None:
        return None
    ref_share = _share_outside(ref.values, *bounds)
    cur_share = _share_outside(cur.values, *bounds)
    # Three binomial standard errors: a small sample's share is noisy.
    noise = 3 * math.sqrt(max(ref_share, 0.005) * (1 - ref_share) / cur.present)
    limit = ref_share + max(settings.max_outlier_increase, noise)
    if cur_share <= limit:
        return None
    return Finding(
        name,
        "quality.outliers",
        cur_share,
        limit,
        False,
        f"column '{name}' has {cur_share:.1%} outliers (robust z > {settings.outlier_z}), "
        f"reference {ref_share:.1%}",
        {
            "reference_share": ref_share,
            "current_share": cur_share,
            "bounds": list(bounds),
            "method": "robust_z_mad",
        },
    )


def quality_findings(
    reference: dict[str, ColumnSketch],
    current: dict[str, ColumnSketch],
    settings: QualitySettings,
    *,
    ref_hashes: np.ndarray[Any, Any] | None = None,
    cur_hashes: np.ndarray[Any, Any] | None = None,
) -> list[Finding]:
    """The quality findings of ``current`` against ``reference`` (row hashes sorted), but
    outliers (:func:`outlier_finding`, which needs the sorted values)."""
    findings: list[Finding] = []
    for name, cur in current.items():
        ref = reference.get(name)
        if ref is None:
            continue
        jump = cur.null_rate - ref.null_rate
        if cur.present == 0:
            findings.append(
                Finding(
                    name,
                    "quality.missing_rate",
                    1.0,
                    ref.null_rate + settings.max_missing_increase,
                    True,
                    f"column '{name}' is entirely empty (reference: {ref.null_rate:.1%} missing)",
                    {"reference_rate": ref.null_rate, "current_rate": 1.0, "count": cur.nulls},
                )
            )
            continue
        if jump > settings.max_missing_increase:
            findings.append(
                Finding(
                    name,
                    "quality.missing_rate",
                    cur.null_rate,
                    ref.null_rate + settings.max_missing_increase,
                    True,
                    f"column '{name}' is {cur.null_rate:.1%} missing, reference "
                    f"{ref.null_rate:.1%}",
                    {
                        "reference_rate": ref.null_rate,
                        "current_rate": cur.null_rate,
                        "count": cur.nulls,
                    },
                )
            )
        if cur.n_unique <= 1 < ref.n_unique:
            findings.append(
                Finding(
                    name,
                    "quality.constant_column",
                    1.0,
                    None,
                    False,
                    f"column '{name}' holds one value only (reference: {ref.n_unique} distinct)",
                    {"reference_distinct": ref.n_unique},
                )
            )
    if ref_hashes is not None and cur_hashes is not None:
        ref_share, _ = duplicate_share(ref_hashes)
        cur_share, count = duplicate_share(cur_hashes)
        limit = ref_share + settings.max_duplicate_increase
        if cur_share > limit:
            findings.append(
                Finding(
                    None,
                    "quality.duplicate_rows",
                    cur_share,
                    limit,
                    False,
                    f"{count} duplicate row(s) ({cur_share:.1%}), reference {ref_share:.1%}",
                    {"count": count, "reference_share": ref_share},
                )
            )
    rows_ref = next(iter(reference.values())).rows if reference else 0
    rows_cur = next(iter(current.values())).rows if current else 0
    if rows_ref:
        ratio = rows_cur / rows_ref
        if not settings.min_volume_ratio <= ratio <= settings.max_volume_ratio:
            bound = settings.min_volume_ratio if ratio < 1 else settings.max_volume_ratio
            findings.append(
                Finding(
                    None,
                    "quality.volume",
                    ratio,
                    bound,
                    False,
                    f"{rows_cur} rows against {rows_ref} in the reference "
                    f"(x{ratio:.2f}, allowed x{settings.min_volume_ratio}-x"
                    f"{settings.max_volume_ratio})",
                    {"rows": rows_cur, "reference_rows": rows_ref},
                )
            )
    return findings
