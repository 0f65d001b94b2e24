"""Column sketches: one pass of sorting or counting per column, reused by every check.

Evidently spends its time computing each column's statistics several times over (DESIGN.md,
"What we know about speed"). Here each column is reduced once, to a :class:`ColumnSketch`:

* numeric, datetime and boolean columns to their **sorted non-null values** (float64; datetimes
  as seconds since the epoch). Quantiles, min/max, the median and MAD, the number of distinct
  values, the KS statistic, the Wasserstein distance, PSI bins and histograms all read this one
  sorted array (``np.searchsorted``/indexing, no second sort of the same data);
* text and categorical columns to their **value counts** (one hash pass), which chi-square,
  Jensen-Shannon, PSI, unseen categories and bar charts all read.

Kinds: ``numeric`` (ints and floats), ``datetime``, ``boolean``, ``categorical`` (everything
else, compared as text). A numeric column with at most :data:`FEW_VALUES` distinct values is also
compared as categorical by drift tests, as Evidently does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "FEW_VALUES",
    "QUANTILES",
    "ColumnSketch",
    "Kind",
    "profile_stats",
    "sketch_checked",
    "sketch_column",
    "sketch_frame",
    "sorted_quantile",
]

Kind = Literal["numeric", "datetime", "boolean", "categorical"]

#: At most this many distinct values and a numeric column is compared as categories.
FEW_VALUES = 5
#: Quantiles recorded in stats and schemas.
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# Value counts of more categories than this are cut to the most frequent in stored stats.
_TOP = 20
# A released numeric column keeps its value counts when it has at most this many values.
_KEEP_COUNTS = 50


@dataclass
class ColumnSketch:
    """What every check needs to know about one column of one dataset."""

    name: str
    kind: Kind
    rows: int
    nulls: int
    #: Sorted non-null values (numeric, datetime, boolean), float64.
    values: np.ndarray[Any, Any] | None = None
    #: Distinct labels, sorted, and their counts (categorical columns).
    labels: np.ndarray[Any, Any] | None = None
    counts: np.ndarray[Any, Any] | None = None
    integral: bool = False
    #: min, max, mean, std, quantiles and few-value counts, kept when ``values`` is released.
    _summary: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ordered(self) -> bool:
        """Numbers, datetimes and booleans: compared by value (else as text categories)."""
        return self.kind != "categorical"

    def _stat(self, key: str) -> float:
        import numpy as np

        if key not in self._summary:
            v = self.values
            assert v is not None, f"{self.name}: values were released before {key} was read"
            if not len(v):
                value = float("nan")
            elif key == "min":
                value = float(v[0])
            elif key == "max":
                value = float(v[-1])
            elif key == "mean":
                value = float(v.mean())
            else:
                value = float(np.std(v))
            self._summary[key] = value
        return float(self._summary[key])

    @property
    def min(self) -> float:
        return self._stat("min")

    @property
    def max(self) -> float:
        return self._stat("max")

    @property
    def mean(self) -> float:
        return self._stat("mean")

    @property
    def std(self) -> float:
        """Population standard deviation (ddof 0), as Evidently norms Wasserstein distances."""
        return self._stat("std")

    def release(self) -> ColumnSketch:
        """Drop the sorted values, keeping every summary later checks read; returns self.

        Validation sketches one column at a time and releases it once the checks that need
        every value (drift, outliers, charts) are done, so memory beyond the data stays at one
        column's worth instead of a sorted copy of every column.
        """
        if self.values is None:
            return self
        if len(self.values):
            for key in ("min", "max", "mean", "std"):
                self._stat(key)
            self._summary["quantiles"] = {q: self.quantile(q) for q in QUANTILES}
            _ = self.median_mad
        _ = self.n_unique
        if self.n_unique <= _KEEP_COUNTS:
            self._summary["counts"] = self.value_counts()
        self.values = None
        return self

    @property
    def present(self) -> int:
        return self.rows - self.nulls

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @cached_property
    def n_unique(self) -> int:
        if self.labels is None:
            v = self.values
            assert v is not None, f"{self.name}: values were released"
            return 0 if len(v) == 0 else int((v[1:] != v[:-1]).sum()) + 1
        assert self.labels is not None
        return len(self.labels)

    def value_counts(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Distinct values (sorted) and their counts; for numeric columns, from the sorted array."""
        import numpy as np

        if self.labels is not None and self.counts is not None:
            return self.labels, self.counts
        if "counts" in self._summary:
            kept: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] = self._summary["counts"]
            return kept
        assert self.values is not None, f"{self.name}: values were released"
        v = self.values
        if len(v) == 0:
            return v, np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.concatenate(([True], v[1:] != v[:-1])))
        counts = np.diff(np.append(starts, len(v)))
        return v[starts], counts

    @property
    def categorical_like(self) -> bool:
        """Compared with category tests: text, booleans, and numbers with few distinct values."""
        return self.kind in ("categorical", "boolean") or self.n_unique <= FEW_VALUES

    def quantile(self, q: float) -> float:
        """Linear-interpolation quantile (numpy's default method) of the sorted values."""
        kept = self._summary.get("quantiles", {})
        if q in kept:
            return float(kept[q])
        assert self.values is not None, f"{self.name}: values were released"
        return sorted_quantile(self.values, q)

    @cached_property
    def median_mad(self) -> tuple[float, float]:
        """Median and median absolute deviation of the values, without a selection pass.

        The deviations below and above the median are two sorted runs (the lower half read
        backwards), so the MAD is the median of two sorted arrays: a binary search.
        """
        import numpy as np

        v = self.values
        assert v is not None
        assert len(v)
        med = sorted_quantile(v, 0.5)
        split = int(np.searchsorted(v, med, side="right"))
        below = med - v[:split][::-1]
        above = v[split:] - med
        n = len(v)
        if n % 2:
            return med, _kth_of_two(below, above, n // 2)
        return med, (_kth_of_two(below, above, n // 2 - 1) + _kth_of_two(below, above, n // 2)) / 2


def sorted_quantile(values: np.ndarray[Any, Any], q: float) -> float:
    """Quantile ``q`` of sorted values by linear interpolation, as ``np.quantile`` by default."""
    n = len(values)
    if n == 0:
        return float("nan")
    h = (n - 1) * q
    lo = int(h)
    hi = min(lo + 1, n - 1)
    a, b = float(values[lo]), float(values[hi])
    return a + (h - lo) * (b - a)


def _kth_of_two(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], k: int) -> float:
    """The k-th smallest (0-based) value of the union of two sorted arrays."""
    lo, hi = max(0, k + 1 - len(b)), min(k + 1, len(a))
    # Find how many values to take from a: the smallest i with a[i] >= b[k - i].
    while lo < hi:
        i = (lo + hi) // 2
        if a[i] < b[k - i]:
            lo = i + 1
        else:
            hi = i
    i, j = lo, k + 1 - lo
    candidates = ([float(a[i - 1])] if i > 0 else []) + ([float(b[j - 1])] if j > 0 else [])
    return max(candidates)


def _kind(series: pd.Series) -> Kind:
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "categorical"


def sketch_column(series: pd.Series, *, name: str) -> ColumnSketch:
    """Reduce one column to its sketch (one sort or one count)."""
    import numpy as np
    import pandas as pd

    kind = _kind(series)
    rows = len(series)
    if kind == "categorical":
        counts = series.value_counts(dropna=True, sort=False)
        labels = np.asarray(counts.index.astype(str), dtype=object)
        order = np.argsort(labels)
        cnt = counts.to_numpy(dtype=np.int64)[order]
        return ColumnSketch(
            name, kind, rows, rows - int(cnt.sum()), labels=labels[order], counts=cnt
        )
    if kind == "datetime":
        s = series
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        raw = s.to_numpy(dtype="datetime64[ns]")
        mask = ~np.isnat(raw)
        values = raw[mask].astype(np.int64).astype(np.float64) / 1e9
    else:
        if isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
            raw = series.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            raw = series.to_numpy().astype(np.float64, copy=False)
        mask = ~np.isnan(raw)
        values = raw[mask] if not mask.all() else raw.copy()
    values.sort(kind="quicksort")
    integral = kind != "numeric" or pd.api.types.is_integer_dtype(series.dtype)
    if kind == "numeric" and not integral and len(values):
        integral = bool(np.all(values == np.floor(values))) and bool(np.isfinite(values).all())
    return ColumnSketch(name, kind, rows, rows - len(values), values=values, integral=integral)


def sketch_frame(
    frame: pd.DataFrame, *, what: str, columns: list[str] | None = None
) -> dict[str, ColumnSketch]:
    """Sketch every column (or ``columns``) of ``frame``.

    Args:
        frame: The data.
        what: The dataset, for messages (a path, or "the DataFrame").
        columns: Only these columns.

    Raises:
        ValidationError: a numeric column holds infinite values.
    """
    return {
        str(name): sketch_checked(frame[name], name=str(name), what=what)
        for name in (columns if columns is not None else list(frame.columns))
    }


def sketch_checked(series: pd.Series, *, name: str, what: str) -> ColumnSketch:
    """:func:`sketch_column`, refusing infinite numbers (no distance or quantile survives them).

    Raises:
        ValidationError: naming the dataset and the column.
    """
    import math

    sketch = sketch_column(series, name=name)
    if (
        sketch.kind == "numeric"
        and sketch.present
        and not (math.isfinite(sketch.min) and math.isfinite(sketch.max))
    ):
        raise ValidationError(
            f"dataset {what}: column '{name}' holds infinite values",
            hint="replace inf/-inf with a number or a missing value",
        )
    return sketch


def _num(x: float) -> float | None:
    import math

    return None if math.isnan(x) or math.isinf(x) else float(x)


def column_stats(sketch: ColumnSketch) -> dict[str, Any]:
    """JSON-ready statistics of one column (the ``stats`` of a dataset version)."""
    import numpy as np

    out: dict[str, Any] = {
        "kind": sketch.kind,
        "rows": sketch.rows,
        "nulls": sketch.nulls,
        "null_rate": sketch.null_rate,
        "distinct": sketch.n_unique,
    }
    if sketch.ordered and sketch.present:
        out.update(
            min=_num(sketch.min),
            max=_num(sketch.max),
            mean=_num(sketch.mean),
            std=_num(sketch.std),
            quantiles={str(q): _num(sketch.quantile(q)) for q in QUANTILES},
        )
    if sketch.labels is not None and sketch.counts is not None:
        top = np.argsort(-sketch.counts, kind="stable")[:_TOP]
        out["top"] = {str(sketch.labels[i]): int(sketch.counts[i]) for i in top}
    return out


def profile_stats(sketches: dict[str, ColumnSketch]) -> dict[str, Any]:
    """Statistics of a whole dataset: its row count and every column's :func:`column_stats`."""
    rows = next(iter(sketches.values())).rows if sketches else 0
    return {"rows": rows, "columns": {n: column_stats(s) for n, s in sketches.items()}}
