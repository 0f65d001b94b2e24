"""Drift: has a column's distribution changed between the reference and the current data?

The test is chosen per column by type and size, as Evidently's default does, so results line up
with what users of Evidently know:

=================  ==========================  ===========================================
column             reference rows <= 1000       reference rows > 1000
=================  ==========================  ===========================================
numeric            KS (p-value)                 Wasserstein distance / std of reference
categorical-like   chi-square (p-value)         Jensen-Shannon distance
=================  ==========================  ===========================================

"Categorical-like" is text, booleans and numbers with at most five distinct values. PSI is
available as ``method="psi"`` (reference-decile bins for numbers, categories otherwise).

Verdicts must not flip with sample size alone (the issue): every p-value comes with an effect
size (KS: the statistic D, which is the largest CDF gap and does not grow with n; chi-square:
Cramer's V), and a p-value test declares drift only when the adjusted p-value is below ``alpha``
*and* the effect reaches ``min_effect``. Large samples use distances, which are effect sizes.

Many columns are tested at once, so p-values are adjusted with Benjamini-Hochberg across the
columns of one comparison: a clean random split of one dataset has no drift to find, and
without the adjustment 22 columns at alpha 0.05 would flag one by chance most of the time.

Not compared: datetime columns (new data is later by nature) and id-like columns (text or
integer columns whose values are all distinct: two samples of ids never overlap).

Dataset-level drift: at least ``drift_share`` of the compared columns drifted. It blocks by
default; a single column's drift warns unless ``block_on_column_drift`` is set. The default share
is 0.3, not Evidently's 0.5: in the example's drifted month (prices up, support calls up, a new
payment method, and a model trained before it scoring clearly worse) 5 of the 12 compared
columns drift, 42 %, and a gate that lets that month through is not guarding anything. Clean
random splits stay at 0 drifted columns (tests), so the lower share costs no false alarms there.
``drift_share: 0.5`` restores Evidently's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.data.findings import Finding

if TYPE_CHECKING:
    from conveyor.data.profile import ColumnSketch

__all__ = [
    "METHODS",
    "DriftSettings",
    "compare_column",
    "compare_columns",
    "drift_findings",
    "id_like",
    "judge",
]

METHODS = ("auto", "ks", "wasserstein", "chisquare", "jensenshannon", "psi")


@dataclass(frozen=True)
class DriftSettings:
    """How drift is tested and judged (Evidently's defaults, plus ``min_effect``; the dataset
    share is 0.3, see the module docstring)."""

    method: str = "auto"
    alpha: float = 0.05
    min_effect: float = 0.1
    distance_threshold: float = 0.1
    psi_threshold: float = 0.1
    size_cutoff: int = 1000
    drift_share: float = 0.3
    block_on_column_drift: bool = False


def id_like(s: ColumnSketch) -> bool:
    """Every value distinct, in a text or integer column: an identifier, not a feature."""
    return (
        (s.kind == "categorical" or (s.kind == "numeric" and s.integral))
        and s.present > 1
        and s.n_unique == s.present
    )


def _test_for(ref: ColumnSketch, settings: DriftSettings) -> str:
    if settings.method != "auto":
        return settings.method
    small = ref.rows <= settings.size_cutoff
    if ref.categorical_like:
        return "chisquare" if small else "jensenshannon"
    return "ks" if small else "wasserstein"


def compare_column(ref: ColumnSketch, cur: ColumnSketch, settings: DriftSettings) -> dict[str, Any]:
    """One column's drift result (before the multiple-testing adjustment).

    The verdict of p-value tests is provisional here: :func:`drift_findings` sets it after
    adjusting the p-values of all columns.
    """
    import numpy as np

    from conveyor.data import stats

    test = _test_for(ref, settings)
    numeric_values = ref.ordered and cur.ordered
    categorical = ref.categorical_like or not numeric_values
    if test in ("ks", "wasserstein") and categorical and not numeric_values:
        test = "chisquare" if test == "ks" else "jensenshannon"
    out: dict[str, Any] = {"column": ref.name, "test": test, "p_value": None, "p_adjusted": None}
    if test in ("ks", "wasserstein") or (test == "psi" and not ref.categorical_like):
        assert ref.values is not None
        assert cur.values is not None
        ks, wd = stats.ks_wasserstein(ref.values, cur.values)
        std = ref.std
        normed = wd / std if std > 0 else (0.0 if wd == 0 else float("inf"))
        out.update(ks_statistic=ks, wasserstein=wd, wasserstein_normed=normed)
        if test == "ks":
            out.update(
                statistic=ks,
                p_value=stats.ks_pvalue(ref.values, cur.values),
                effect_size=ks,
                effect_name="ks_statistic",
                threshold=settings.alpha,
            )
        elif test == "wasserstein":
            out.update(
                statistic=normed,
                effect_size=normed,
                effect_name="wasserstein_normed",
                threshold=settings.distance_threshold,
            )
        else:
            edges = stats.psi_bins(ref.values)
            r = stats.binned_counts(ref.values, edges)
            c = stats.binned_counts(cur.values, edges)
            value = stats.psi(r, c)
            out.update(
                statistic=value,
                effect_size=value,
                effect_name="psi",
                threshold=settings.psi_threshold,
            )
    else:
        rl, rc = ref.value_counts()
        cl, cc = cur.value_counts()
        if rl.dtype != cl.dtype:
            rl, cl = rl.astype(str), cl.astype(str)
        _, r, c = stats.align_counts(rl, rc, cl, cc)
        js = stats.js_distance(r, c)
        out["jensenshannon"] = js
        if test == "chisquare":
            chi2, p, dof, v = stats.chi2_homogeneity(r, c)
            out.update(
                statistic=chi2,
                p_value=p,
                dof=dof,
                effect_size=v,
                effect_name="cramers_v",
                threshold=settings.alpha,
            )
        elif test == "psi":
            value = stats.psi(r, c)
            out.update(
                statistic=value,
                effect_size=value,
                effect_name="psi",
                threshold=settings.psi_threshold,
            )
        else:
            out.update(
                test="jensenshannon",
                statistic=js,
                effect_size=js,
                effect_name="jensenshannon",
                threshold=settings.distance_threshold,
            )
    if out["p_value"] is None:
        out["drifted"] = bool(out["statistic"] >= out["threshold"])
    out["statistic"] = float(np.float64(out["statistic"]))
    return out


def compare_columns(
    reference: dict[str, ColumnSketch],
    current: dict[str, ColumnSketch],
    settings: DriftSettings,
) -> list[dict[str, Any]]:
    """Drift results of every comparable shared column (verdicts of p-value tests pending)."""
    results: list[dict[str, Any]] = []
    for name, ref in reference.items():
        cur = current.get(name)
        if cur is None or ref.kind == "datetime" or id_like(ref):
            continue
        if ref.present == 0 or cur.present == 0 or ref.ordered != cur.ordered:
            continue  # emptiness and type changes are quality and schema findings, not drift
        results.append(compare_column(ref, cur, settings))
    return results


def judge(results: list[dict[str, Any]], settings: DriftSettings) -> list[Finding]:
    """Adjust p-values across columns (Benjamini-Hochberg), set verdicts, and return a finding
    per drifted column plus one for dataset drift."""
    import numpy as np

    from conveyor.data import stats

    tested = [r for r in results if r["p_value"] is not None]
    if tested:
        adjusted = stats.bh_adjust(np.array([r["p_value"] for r in tested]))
        for r, p in zip(tested, adjusted, strict=True):
            r["p_adjusted"] = float(p)
            r["drifted"] = bool(p < settings.alpha and r["effect_size"] >= settings.min_effect)
    findings: list[Finding] = []
    for r in results:
        if not r["drifted"]:
            continue
        if r["p_value"] is not None:
            text = (
                f"{r['test']} p={r['p_adjusted']:.3g} (BH-adjusted) < {settings.alpha}, "
                f"{r['effect_name']}={r['effect_size']:.3f} >= {settings.min_effect}"
            )
            observed = r["p_adjusted"]
        else:
            text = f"{r['effect_name']}={r['statistic']:.3f} >= {r['threshold']}"
            observed = r["statistic"]
        findings.append(
            Finding(
                r["column"],
                f"drift.{r['test']}",
                observed,
                r["threshold"],
                settings.block_on_column_drift,
                f"column '{r['column']}' drifted: {text}",
                {k: v for k, v in r.items() if k != "column"},
            )
        )
    if results:
        share = sum(r["drifted"] for r in results) / len(results)
        if share >= settings.drift_share:
            findings.append(
                Finding(
                    None,
                    "drift.dataset",
                    share,
                    settings.drift_share,
                    True,
                    f"dataset drift: {share:.0%} of {len(results)} compared columns drifted "
                    f"(threshold {settings.drift_share:.0%})",
                    {
                        "drifted": [r["column"] for r in results if r["drifted"]],
                        "compared": len(results),
                    },
                )
            )
    return findings


def drift_findings(
    reference: dict[str, ColumnSketch],
    current: dict[str, ColumnSketch],
    settings: DriftSettings,
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Compare every shared column and judge: the per-column results and the findings."""
    results = compare_columns(reference, current, settings)
    return results, judge(results, settings)
