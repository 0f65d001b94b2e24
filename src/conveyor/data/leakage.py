"""Label leakage: features that give the answer away, and rows shared by training and evaluation.

Checks (all blocking; a leak makes every later metric a lie):

* ``leakage.identical_to_label`` - a column that is the label under another name: its values map
  one-to-one onto the label's. This includes every strictly monotone transform of a numeric
  label (``log(price)`` beside ``price``): equal ranks imply a one-to-one map, so "identical or
  monotone" is one check.
* ``leakage.perfect_predictor`` - a single feature that predicts the label almost perfectly on
  its own: for a two-class label, the ROC AUC of the feature's values (numbers) or of its
  per-category label rate (categories) is at least ``max_auc`` (0.99) or at most ``1 - max_auc``;
  for a numeric label, ``|Spearman rho| >= max_auc``. Identifiers are skipped: an id's
  per-category label rate is the label itself. Labels with more than two classes that are not
  numbers are only checked for identity.
* ``leakage.future_timestamp`` - when the label time column is declared, a datetime column
  with values later than the label time in any row: the feature was recorded after the outcome.
* ``leakage.shared_rows`` - rows of the current (evaluation) data that also occur in the
  reference (training) data, compared by a 64-bit hash of the shared columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.data.findings import Finding

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from conveyor.data.profile import ColumnSketch

__all__ = ["binary_auc", "leakage_findings", "row_hashes", "shared_row_findings"]


def binary_auc(scores: np.ndarray[Any, Any], positive: np.ndarray[Any, Any]) -> float:
    """ROC AUC of ``scores`` for a boolean label, by the Mann-Whitney rank sum (ties averaged)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray[Any, Any]:
    """A 64-bit hash per row of ``columns`` (index ignored)."""
    import numpy as np
    import pandas as pd

    hashes: np.ndarray[Any, Any] = np.asarray(
        pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    )
    return hashes


def _spearman(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    import numpy as np
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))


def leakage_findings(
    frame: pd.DataFrame,
    sketches: dict[str, ColumnSketch],
    target: str,
    *,
    max_auc: float = 0.99,
    label_time: str | None = None,
    dataset: str = "current",
) -> list[Finding]:
    """Leakage findings of one labelled dataset."""
    import numpy as np

    from conveyor.data.drift import id_like

    findings: list[Finding] = []
    y_all = frame[target]
    label = sketches[target]
    two_class = label.n_unique == 2
    numeric_label = label.kind == "numeric" and not two_class
    positive_value = label.value_counts()[0][-1] if two_class else None
    for name, s in sketches.items():
        if name in (target, label_time) or s.present == 0:
            continue
        x = frame[name]
        both = x.notna().to_numpy() & y_all.notna().to_numpy()
        if both.sum() < 2:
            continue
        xs, ys = x[both], y_all[both]
        if s.n_unique == label.n_unique and not id_like(s) and _one_to_one(xs, ys, s.n_unique):
            findings.append(
                Finding(
                    name,
                    "leakage.identical_to_label",
                    1.0,
                    None,
                    True,
                    f"column '{name}' is the label '{target}' under another name "
                    f"(its values map one-to-one onto the label's) in the {dataset} data",
                    {"dataset": dataset},
                )
            )
            continue
        if s.kind == "datetime" or id_like(s):
            continue
        if two_class:
            yv = ys.astype(str).to_numpy() == str(_label_str(positive_value, label))
            scored = _binary_auc_of(xs, yv, s)
            if scored is not None and max(scored[0], 1 - scored[0]) >= max_auc:
                auc, how = scored
                strength = max(auc, 1 - auc)
                findings.append(
                    Finding(
                        name,
                        "leakage.perfect_predictor",
                        strength,
                        max_auc,
                        True,
                        f"column '{name}' alone predicts '{target}' with ROC AUC "
                        f"{strength:.4f} ({how}) in the {dataset} data",
                        {"auc": auc, "dataset": dataset, "scored_by": how},
                    )
                )
        elif numeric_label and s.ordered:
            rho = _spearman(xs.to_numpy(dtype=np.float64), ys.to_numpy(dtype=np.float64))
            if abs(rho) >= max_auc:
                findings.append(
                    Finding(
                        name,
                        "leakage.perfect_predictor",
                        abs(rho),
                        max_auc,
                        True,
                        f"column '{name}' alone predicts '{target}' with |Spearman rho| "
                        f"{abs(rho):.4f} in the {dataset} data",
                        {"spearman": rho, "dataset": dataset},
                    )
                )
    if label_time is not None:
        findings.extend(_future(frame, sketches, label_time, dataset))
    return findings


def _one_to_one(xs: pd.Series, ys: pd.Series, n_unique: int) -> bool:
    """Whether the values of ``xs`` map one-to-one onto those of ``ys`` (both with ``n_unique``
    distinct values): then the pairs have no more distinct values than either side."""
    import pandas as pd

    pairs = pd.DataFrame({"x": xs.to_numpy(), "y": ys.to_numpy()}).drop_duplicates()
    return len(pairs) == n_unique


def _binary_auc_of(
    xs: pd.Series, positive: np.ndarray[Any, Any], s: ColumnSketch
) -> tuple[float, str] | None:
    """ROC AUC of one feature for a two-class label, and how it was scored (None: not scored)."""
    import numpy as np
    import pandas as pd

    if positive.all() or not positive.any():
        return None
    if s.ordered:
        return binary_auc(xs.to_numpy(dtype=np.float64), positive), "its values"
    if s.n_unique * 2 > s.present:
        return None  # near-unique text: its per-category rate would be the label itself
    keys = xs.astype(str)
    rate = pd.Series(positive, index=keys.index).groupby(keys).mean()
    scores = keys.map(rate).to_numpy(dtype=np.float64)
    return binary_auc(scores, positive), "its per-category label rate"


def _label_str(value: Any, label: ColumnSketch) -> str:
    if label.ordered and label.integral:
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value)


def _future(
    frame: pd.DataFrame, sketches: dict[str, ColumnSketch], label_time: str, dataset: str
) -> list[Finding]:
    import numpy as np

    from conveyor.core.errors import ConfigError

    lt = sketches.get(label_time)
    if lt is None or lt.kind != "datetime":
        raise ConfigError(
            f"label_time names column '{label_time}', which is not a datetime column of the "
            f"{dataset} data",
            hint="name the column that holds when each label became known (ISO timestamps)",
        )
    out: list[Finding] = []
    when = frame[label_time].to_numpy(dtype="datetime64[ns]")
    for name, s in sketches.items():
        if name == label_time or s.kind != "datetime":
            continue
        values = frame[name].to_numpy(dtype="datetime64[ns]")
        later = np.flatnonzero(values > when)
        if len(later):
            out.append(
                Finding(
                    name,
                    "leakage.future_timestamp",
                    float(len(later)),
                    0.0,
                    True,
                    f"column '{name}' is later than the label time '{label_time}' in "
                    f"{len(later)} row(s) of the {dataset} data",
                    {
                        "count": len(later),
                        "rows": [int(r) for r in later[:5]],
                        "dataset": dataset,
                    },
                )
            )
    return out


def shared_row_findings(
    ref_sorted: np.ndarray[Any, Any], cur_hashes: np.ndarray[Any, Any], columns: list[str]
) -> list[Finding]:
    """Rows of the current data that also occur in the reference (whose hashes are sorted)."""
    import numpy as np

    if not len(ref_sorted):
        return []
    at = np.minimum(np.searchsorted(ref_sorted, cur_hashes), len(ref_sorted) - 1)
    shared = ref_sorted[at] == cur_hashes
    count = int(shared.sum())
    if not count:
        return []
    rows = np.flatnonzero(shared)
    return [
        Finding(
            None,
            "leakage.shared_rows",
            float(count),
            0.0,
            True,
            f"{count} row(s) of the current data ({count / len(cur_hashes):.1%}) also occur "
            "in the reference data",
            {"count": count, "rows": [int(r) for r in rows[:5]], "columns": columns},
        )
    ]
