"""Canary analysis: is the candidate worse than the stable version, by more than we tolerate?

At each step of a rollout the controller merges the telemetry windows of the stable and the
canary version since the step began (:meth:`WindowSummary.merge`) and calls :func:`analyse`.
Each check compares the two versions *statistically*, on the same traffic and the same time
span, rather than holding one noisy number against a fixed threshold: a canary fails a check
only when the data show, at the policy's ``confidence``, that it is worse by more than the
check's margin. Each check answers ``pass``, ``fail`` or ``inconclusive`` (too little data, or
data that cannot tell yet), or ``skipped`` when it does not apply yet (no labels, no predictions
at all); the analysis fails if any check fails, passes if every check that ran passed, and is
inconclusive otherwise: the controller waits for more data, and :func:`decide_step` applies the
``failure_limit`` / ``max_inconclusive`` tolerance across the analyses of a step.

The checks, and why each test:

- ``error_rate``: server errors over valid requests. The counts are binomial, and the question
  is one-sided with a margin: is ``p_canary - p_stable > max_error_rate_increase``? With a
  margin > 0 this is the Farrington-Manning score test (the z statistic of the difference, its
  variance taken at the maximum-likelihood proportions *restricted* to the margin, the test
  behind the Miettinen-Nurminen interval; well calibrated at small counts and zero errors, where
  a Wald test is not). It decides both ways: *fail* when the canary is significantly worse than
  stable + margin (``p = 1 - Phi(z) < alpha``), *pass* when it is significantly better than that
  (``Phi(z) < alpha``: non-inferiority shown), else inconclusive. So a pass needs evidence, not
  just an absence of errors: at the defaults, equal error rates near 0.1% pass from about 400
  requests per version. With a margin of 0 ("no increase at all") non-inferiority can never be
  shown, so the test becomes Fisher's exact test, one-sided: fail when it is significant, else
  pass.
- ``latency``: two tests, each with its own effect size, so that neither a tiny significant
  shift nor a noisy tail decides alone. The body: a one-sided Mann-Whitney U test on the
  latency samples (distribution-free; latencies are skewed and heavy-tailed, so a t-test would
  be dominated by the tail) says whether the canary is *stochastically* slower, and it fails
  only if its median is also more than ``max_latency_increase`` above stable's. The tail: how
  many sampled canary requests exceed stable's p99 (about 1% if the tails match; an exact
  one-sided binomial test), and it fails only if the canary's p99 is also more than the margin
  above stable's. With thousands of requests a 1% slowdown is significant yet harmless, and a
  p99 from a few hundred requests (the third-largest value) is noise on its own.
- ``latency_budget`` (only with ``max_p99_ms``): the canary's p99 against an absolute budget.
  A p99 over ``max_p99_ms`` means more than 1% of requests exceed it; the exceeding requests in
  the uniform latency sample are binomial, so the check fails when an exact binomial test
  shows that share is above 1%.
- ``prediction_drift``: whether the canary's predictions are distributed like stable's on the
  same traffic. Continuous predictions (scores, regression values): two-sample
  Kolmogorov-Smirnov, statistic = largest distance between the two distribution functions.
  Categorical ones (integer values, at most :data:`MAX_CATEGORIES` distinct: class indices):
  a chi-square test of homogeneity, statistic = total variation distance (half the sum of the
  absolute differences of class frequencies; for two classes it equals the KS statistic). Fail
  when significant *and* the statistic exceeds ``max_prediction_drift``: a new model is
  expected to differ a little. ``skipped`` when neither version recorded any prediction.
- ``quality`` (only once both versions have ``min_labels`` labelled outcomes; ``skipped``
  before, and ignored by the verdict, since labels may come back hours later): accuracy uses the
  same three-way score test as the error rate, on wrong predictions, with the margin
  ``max_quality_drop``. Regression (absolute errors, no correctness labels): a one-sided Welch
  t-test that the canary's mean absolute error exceeds stable's by more than
  ``max_mae_increase`` (relative); fail when significant, else pass.

Every check first needs ``min_requests`` valid requests (``min_requests`` prediction values for
drift) on *both* sides; below that it is inconclusive, never pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import stats

from conveyor.core.blocks import Field, check_values, integer, number, parse_block

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from conveyor.deploy.telemetry import WindowSummary

__all__ = [
    "MAX_CATEGORIES",
    "Analysis",
    "AnalysisSettings",
    "CheckResult",
    "StepDecision",
    "analyse",
    "decide_step",
    "farrington_manning_z",
    "restricted_mle",
    "shadow_report",
]

Verdict = Literal["pass", "fail", "inconclusive"]
CheckVerdict = Literal["pass", "fail", "inconclusive", "skipped"]

#: Integer-valued predictions with at most this many distinct values are treated as classes.
MAX_CATEGORIES = 20


@dataclass(frozen=True)
class AnalysisSettings:
    """The ``rollout:`` block of ``policies.yaml``: how a canary step is analysed.

    Attributes:
        interval_s: Seconds between two analyses of a step.
        min_requests: Valid requests (and prediction values) each version needs before any
            check gives a verdict; below it a check is inconclusive.
        confidence: Confidence of every test (``alpha = 1 - confidence``).
        max_error_rate_increase: Largest tolerated increase of the error rate, absolute
            (0.01 = one percentage point).
        max_latency_increase: Largest tolerated relative increase of p99 or median latency
            (0.2 = 20% slower).
        max_p99_ms: An absolute p99 budget for the canary, in ms; None: not checked.
        max_prediction_drift: Largest tolerated KS statistic (or total variation distance for
            class predictions) between canary and stable predictions.
        max_quality_drop: Largest tolerated accuracy drop, absolute (0.02 = two points).
        max_mae_increase: Largest tolerated relative increase of the mean absolute error
            (regression models, when labels come back).
        min_labels: Labelled outcomes each version needs before quality is checked.
        failure_limit: Failed analyses tolerated in a step before the rollout aborts
            (0: the first failure aborts), like Argo Rollouts' ``failureLimit``.
        max_inconclusive: Inconclusive analyses tolerated in a step before it aborts; None:
            wait as long as the controller's step timeout allows.
    """

    interval_s: float = 30.0
    min_requests: int = 200
    confidence: float = 0.95
    max_error_rate_increase: float = 0.01
    max_latency_increase: float = 0.2
    max_p99_ms: float | None = None
    max_prediction_drift: float = 0.1
    max_quality_drop: float = 0.02
    max_mae_increase: float = 0.1
    min_labels: int = 100
    failure_limit: int = 0
    max_inconclusive: int | None = None

    def __post_init__(self) -> None:
        check_values(asdict(self), _FIELDS, "rollout settings", "rollout")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str) -> AnalysisSettings:
        """The settings of a ``rollout:`` block, checked before a rollout starts.

        Args:
            mapping: The block, e.g. ``{"min_requests": 500, "failure_limit": 1}``.
            where: Where it comes from, for errors: ``"policies.yaml:12"``.

        Raises:
            ConfigError: ``"{where}: ..."`` naming the unknown key, or the key whose value has
                the wrong type or is out of range, and what it must be.
        """
        return cls(
            **parse_block(
                mapping,
                _FIELDS,
                where,
                what="rollout",
                block="the rollout block",
                example="rollout: {min_requests: 500, failure_limit: 1}",
            )
        )

    @property
    def alpha(self) -> float:
        """The significance level of every test."""
        return 1.0 - self.confidence

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values, for analysis records."""
        return asdict(self)


def _field(
    convert: type, expected: str, example: str, low: float, high: float, **bounds: bool
) -> Field:
    test = integer if convert is int else number
    return Field(convert, test, expected, example, low, high, **bounds)


_FIELDS: dict[str, Field] = {
    "interval_s": _field(
        float,
        "a number of seconds > 0, at most 3600",
        "30",
        0,
        3600,
        low_inclusive=False,
        nullable=False,
    ),
    "min_requests": _field(int, "an integer from 1 to 10^9", "200", 1, 1e9, nullable=False),
    "confidence": _field(
        float,
        "a number in [0.5, 1), e.g. 0.95",
        "0.95",
        0.5,
        1,
        high_inclusive=False,
        nullable=False,
    ),
    "max_error_rate_increase": _field(
        float, "a number in [0, 1)", "0.01", 0, 1, high_inclusive=False, nullable=False
    ),
    "max_latency_increase": _field(float, "a number from 0 to 10", "0.2", 0, 10, nullable=False),
    "max_p99_ms": _field(
        float, "a number of milliseconds > 0", "50", 0, math.inf, low_inclusive=False
    ),
    "max_prediction_drift": _field(
        float, "a number in (0, 1]", "0.1", 0, 1, low_inclusive=False, nullable=False
    ),
    "max_quality_drop": _field(
        float, "a number in [0, 1)", "0.02", 0, 1, high_inclusive=False, nullable=False
    ),
    "max_mae_increase": _field(float, "a number from 0 to 10", "0.1", 0, 10, nullable=False),
    "min_labels": _field(int, "an integer from 1 to 10^9", "100", 1, 1e9, nullable=False),
    "failure_limit": _field(int, "an integer from 0 to 1000", "0", 0, 1000, nullable=False),
    "max_inconclusive": _field(int, "an integer from 0 to 10^6", "10", 0, 1e6),
}


# ---------------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckResult:
    """One check of an analysis.

    Attributes:
        name: ``error_rate``, ``latency``, ``latency_budget``, ``prediction_drift`` or
            ``quality``.
        verdict: ``pass``, ``fail``, ``inconclusive``, or ``skipped`` (not applicable yet;
            ignored by the analysis verdict).
        observed: The effect measured on the canary (its error-rate increase, relative latency
            increase, p99 in ms, drift statistic, accuracy drop or relative MAE increase).
        threshold: The margin ``observed`` is held against.
        p_value: The p-value of the test that decided, if one ran.
        detail: One line for humans.
    """

    name: str
    verdict: CheckVerdict
    observed: float | None
    threshold: float | None
    p_value: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The check as plain JSON values (no NaN)."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "observed": _finite(self.observed),
            "threshold": _finite(self.threshold),
            "p_value": _finite(self.p_value),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Analysis:
    """The outcome of one analysis of a step: a verdict and the checks behind it.

    Attributes:
        verdict: ``fail`` if any check failed, ``pass`` if every check that ran passed,
            else ``inconclusive``.
        checks: Every check, in a fixed order.
        stable_requests: Valid requests of the stable version analysed.
        canary_requests: Valid requests of the canary analysed.
    """

    verdict: Verdict
    checks: tuple[CheckResult, ...]
    stable_requests: int
    canary_requests: int

    def to_json(self) -> dict[str, Any]:
        """The analysis as plain JSON values, for the deployment record and the API."""
        return {
            "verdict": self.verdict,
            "stable_requests": self.stable_requests,
            "canary_requests": self.canary_requests,
            "checks": [check.to_json() for check in self.checks],
        }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------------- analysis


def analyse(stable: WindowSummary, canary: WindowSummary, settings: AnalysisSettings) -> Analysis:
    """Compare the canary with the stable version over the same span (see the module docstring).

    Args:
        stable: The stable version's windows since the step began, merged.
        canary: The canary's, merged the same way.
        settings: The ``rollout:`` block of the policy.
    """
    checks = [
        _error_rate_check(stable, canary, settings),
        _latency_check(stable, canary, settings),
    ]
    if settings.max_p99_ms is not None:
        checks.append(_latency_budget_check(canary, settings, settings.max_p99_ms))
    checks.append(_drift_check(stable, canary, settings))
    checks.append(_quality_check(stable, canary, settings))
    verdicts = {check.verdict for check in checks}
    verdict: Verdict
    if "fail" in verdicts:
        verdict = "fail"
    elif "inconclusive" in verdicts:
        verdict = "inconclusive"
    else:
        verdict = "pass"
    return Analysis(verdict, tuple(checks), stable.valid_requests, canary.valid_requests)


def _too_few(
    name: str, what: str, stable: int, canary: int, needed: int, threshold: float | None
) -> CheckResult | None:
    if stable >= needed and canary >= needed:
        return None
    return CheckResult(
        name,
        "inconclusive",
        None,
        threshold,
        None,
        f"waiting for data: {needed} {what} needed per version, "
        f"stable has {stable}, canary {canary}",
    )


def _error_rate_check(
    stable: WindowSummary, canary: WindowSummary, settings: AnalysisSettings
) -> CheckResult:
    margin = settings.max_error_rate_increase
    waiting = _too_few(
        "error_rate",
        "valid requests",
        stable.valid_requests,
        canary.valid_requests,
        settings.min_requests,
        margin,
    )
    if waiting is not None:
        return waiting
    return _proportion_check(
        "error_rate",
        "error rate",
        (canary.server_errors, canary.valid_requests),
        (stable.server_errors, stable.valid_requests),
        margin,
        settings.alpha,
    )


def _proportion_check(
    name: str,
    label: str,
    canary: tuple[int, int],
    stable: tuple[int, int],
    margin: float,
    alpha: float,
) -> CheckResult:
    """Three-way test of ``p_canary - p_stable`` against ``margin`` (see the module docstring)."""
    (x_c, n_c), (x_s, n_s) = canary, stable
    p_c, p_s = x_c / n_c, x_s / n_s
    increase = p_c - p_s
    rates = f"canary {label} {p_c:.4%} vs stable {p_s:.4%} ({x_c}/{n_c} vs {x_s}/{n_s})"
    if margin == 0.0:
        p_value = float(
            stats.fisher_exact([[x_c, n_c - x_c], [x_s, n_s - x_s]], alternative="greater").pvalue
        )
        if p_value < alpha:
            return CheckResult(
                name, "fail", increase, margin, p_value, f"{rates}: significantly higher"
            )
        return CheckResult(
            name, "pass", increase, margin, p_value, f"{rates}: not significantly higher"
        )
    z = farrington_manning_z(x_c, n_c, x_s, n_s, margin)
    worse = float(stats.norm.sf(z))
    if worse < alpha:
        return CheckResult(
            name,
            "fail",
            increase,
            margin,
            worse,
            f"{rates}: higher by significantly more than {margin:g}",
        )
    within = float(stats.norm.cdf(z))
    if within < alpha:
        return CheckResult(
            name,
            "pass",
            increase,
            margin,
            within,
            f"{rates}: higher by significantly less than {margin:g}",
        )
    return CheckResult(
        name,
        "inconclusive",
        increase,
        margin,
        worse,
        f"{rates}: cannot tell yet whether the increase is within {margin:g}",
    )


def farrington_manning_z(x1: int, n1: int, x2: int, n2: int, margin: float) -> float:
    """Score statistic for ``H0: p1 - p2 = margin`` (Farrington & Manning, 1990).

    The variance is taken at the maximum-likelihood proportions restricted to
    ``p1 - p2 = margin``, the root of a cubic with a closed form. ``0 < margin < 1``.
    """
    p1, p2 = x1 / n1, x2 / n2
    r1, r2 = restricted_mle(x1, n1, x2, n2, margin)
    variance = r1 * (1 - r1) / n1 + r2 * (1 - r2) / n2
    difference = p1 - p2 - margin
    if variance <= 0.0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / math.sqrt(variance)


def restricted_mle(x1: int, n1: int, x2: int, n2: int, margin: float) -> tuple[float, float]:
    """The proportions ``(p1, p2)`` of highest likelihood with ``p1 - p2 = margin``."""
    p1, p2 = x1 / n1, x2 / n2
    theta = n2 / n1
    a = 1 + theta
    b = -(1 + theta + p1 + theta * p2 + margin * (theta + 2))
    c = margin * margin + margin * (2 * p1 + theta + 1) + p1 + theta * p2
    d = -p1 * margin * (1 + margin)
    v = b**3 / (27 * a**3) - b * c / (6 * a * a) + d / (2 * a)
    u_squared = b * b / (9 * a * a) - c / (3 * a)
    u = math.copysign(math.sqrt(max(u_squared, 0.0)), v)
    if u == 0.0:
        r1 = -b / (3 * a)
    else:
        w = (math.pi + math.acos(min(max(v / u**3, -1.0), 1.0))) / 3
        r1 = 2 * u * math.cos(w) - b / (3 * a)
    r1 = min(max(r1, margin), 1.0)
    return r1, r1 - margin


def _latency_check(
    stable: WindowSummary, canary: WindowSummary, settings: AnalysisSettings
) -> CheckResult:
    margin = settings.max_latency_increase
    waiting = _too_few(
        "latency", "requests", stable.requests, canary.requests, settings.min_requests, margin
    )
    if waiting is not None:
        return waiting
    if len(stable.latency_sample) < 2 or len(canary.latency_sample) < 2:
        return CheckResult(
            "latency", "inconclusive", None, margin, None, "no latency sample recorded"
        )
    p_value = float(
        stats.mannwhitneyu(
            np.asarray(canary.latency_sample),
            np.asarray(stable.latency_sample),
            alternative="greater",
        ).pvalue
    )
    c50, s50 = _quantile(canary, 0.5), _quantile(stable, 0.5)
    c99, s99 = _quantile(canary, 0.99), _quantile(stable, 0.99)
    # The tail has its own test: a p99 from a few hundred requests is the third-largest value,
    # so its ratio alone is noise. How many canary requests exceed stable's p99? Under "no
    # slower in the tail" about 1% do (one-sided exact binomial test).
    sample = np.asarray(canary.latency_sample)
    beyond = int(np.count_nonzero(sample > s99)) if math.isfinite(s99) else 0
    tail_p = float(stats.binomtest(beyond, len(sample), 0.01, alternative="greater").pvalue)
    median_up, tail_up = _relative(c50, s50), _relative(c99, s99)
    increase = max(tail_up, median_up)
    numbers = (
        f"canary p50 {c50 * 1e3:.1f} ms / p99 {c99 * 1e3:.1f} ms vs stable "
        f"p50 {s50 * 1e3:.1f} ms / p99 {s99 * 1e3:.1f} ms (Mann-Whitney p={p_value:.3g}; "
        f"{beyond}/{len(sample)} canary requests beyond stable's p99, p={tail_p:.3g})"
    )
    slower_body = p_value < settings.alpha and median_up > margin
    slower_tail = tail_p < settings.alpha and tail_up > margin
    if slower_body or slower_tail:
        where = "in the median" if slower_body else "in the tail (p99)"
        return CheckResult(
            "latency",
            "fail",
            increase,
            margin,
            min(p_value, tail_p)
            if slower_body and slower_tail
            else (p_value if slower_body else tail_p),
            f"{numbers}: significantly slower {where}, by more than {margin:.0%}",
        )
    reason = (
        "slower within margin"
        if p_value < settings.alpha or tail_p < settings.alpha
        else "not significantly slower"
    )
    return CheckResult("latency", "pass", increase, margin, p_value, f"{numbers}: {reason}")


def _quantile(summary: WindowSummary, q: float) -> float:
    value = summary.latency_quantile(q)
    return value if value is not None else math.nan


def _relative(canary: float, stable: float) -> float:
    if stable > 0:
        return canary / stable - 1.0
    return 0.0 if canary <= 0 else math.inf


def _latency_budget_check(
    canary: WindowSummary, settings: AnalysisSettings, budget_ms: float
) -> CheckResult:
    if canary.requests < settings.min_requests or not canary.latency_sample:
        return CheckResult(
            "latency_budget",
            "inconclusive",
            None,
            budget_ms,
            None,
            f"waiting for data: {settings.min_requests} requests needed, "
            f"canary has {canary.requests}",
        )
    sample = np.asarray(canary.latency_sample)
    over = int(np.count_nonzero(sample * 1e3 > budget_ms))
    p_value = float(stats.binomtest(over, sample.size, 0.01, alternative="greater").pvalue)
    p99 = canary.latency_quantile(0.99)
    p99_ms = p99 * 1e3 if p99 is not None else math.nan
    numbers = (
        f"canary p99 {p99_ms:.1f} ms, {over}/{sample.size} sampled requests over {budget_ms:g} ms"
    )
    if p_value < settings.alpha:
        return CheckResult(
            "latency_budget",
            "fail",
            p99_ms,
            budget_ms,
            p_value,
            f"{numbers}: significantly more than 1% over budget",
        )
    return CheckResult(
        "latency_budget", "pass", p99_ms, budget_ms, p_value, f"{numbers}: within budget"
    )


def _drift_check(
    stable: WindowSummary, canary: WindowSummary, settings: AnalysisSettings
) -> CheckResult:
    bound = settings.max_prediction_drift
    if stable.predictions == 0 and canary.predictions == 0:
        return CheckResult(
            "prediction_drift", "skipped", None, bound, None, "no predictions recorded"
        )
    waiting = _too_few(
        "prediction_drift",
        "prediction values",
        stable.predictions,
        canary.predictions,
        settings.min_requests,
        bound,
    )
    if waiting is not None:
        return waiting
    s = np.asarray(stable.prediction_sample)
    c = np.asarray(canary.prediction_sample)
    categories = _categories(s, c)
    if categories is not None:
        statistic, p_value = _categorical_drift(s, c, categories)
        how = f"total variation distance {statistic:.3f} between class frequencies"
    else:
        result = stats.ks_2samp(c, s)
        statistic, p_value = float(result.statistic), float(result.pvalue)
        how = f"KS statistic {statistic:.3f}"
    text = f"{how} (p={p_value:.3g}, {c.size} vs {s.size} sampled)"
    if p_value < settings.alpha and statistic > bound:
        return CheckResult(
            "prediction_drift",
            "fail",
            statistic,
            bound,
            p_value,
            f"{text}: predictions differ significantly, by more than {bound:g}",
        )
    return CheckResult(
        "prediction_drift", "pass", statistic, bound, p_value, f"{text}: within {bound:g}"
    )


def _categories(stable: np.ndarray, canary: np.ndarray) -> np.ndarray | None:
    both = np.concatenate([stable, canary])
    if both.size == 0 or not np.all(both == np.round(both)):
        return None
    values = np.unique(both)
    return values if values.size <= MAX_CATEGORIES else None


def _categorical_drift(
    stable: np.ndarray, canary: np.ndarray, categories: np.ndarray
) -> tuple[float, float]:
    """Total variation distance and the chi-square homogeneity p-value of two class samples."""
    table = np.array(
        [
            [np.count_nonzero(canary == value) for value in categories],
            [np.count_nonzero(stable == value) for value in categories],
        ]
    )
    distance = 0.5 * float(np.abs(table[0] / table[0].sum() - table[1] / table[1].sum()).sum())
    if categories.size < 2:
        return distance, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return distance, float(result.pvalue)


def _quality_check(
    stable: WindowSummary, canary: WindowSummary, settings: AnalysisSettings
) -> CheckResult:
    needed = settings.min_labels
    if stable.labels >= needed and canary.labels >= needed:
        result = _proportion_check(
            "quality",
            "wrong-prediction rate",
            (canary.labels - canary.correct, canary.labels),
            (stable.labels - stable.correct, stable.labels),
            settings.max_quality_drop,
            settings.alpha,
        )
        return result
    if stable.abs_errors >= needed and canary.abs_errors >= needed:
        return _mae_check(stable, canary, settings)
    return CheckResult(
        "quality",
        "skipped",
        None,
        settings.max_quality_drop,
        None,
        f"not checked: {needed} labelled outcomes needed per version, stable has "
        f"{max(stable.labels, stable.abs_errors)}, canary "
        f"{max(canary.labels, canary.abs_errors)}",
    )


def _mae_check(
    stable: WindowSummary, canary: WindowSummary, settings: AnalysisSettings
) -> CheckResult:
    margin = settings.max_mae_increase
    c_mean, c_std = _mean_std(canary.abs_error_sum, canary.abs_error_sum_sq, canary.abs_errors)
    s_mean, s_std = _mean_std(stable.abs_error_sum, stable.abs_error_sum_sq, stable.abs_errors)
    # H0: mu_c <= (1 + m) mu_s is Welch's test against stable's errors scaled by (1 + m).
    scale = 1.0 + margin
    increase = _relative(c_mean, s_mean)
    if c_std == 0.0 and s_std == 0.0:
        # No spread at all (t is undefined): the means are exact, compare them directly.
        verdict: CheckVerdict = "fail" if c_mean > s_mean * scale else "pass"
        return CheckResult(
            "quality",
            verdict,
            increase,
            margin,
            None,
            f"canary MAE {c_mean:.4g} vs stable {s_mean:.4g}, every error the same",
        )
    p_value = float(
        stats.ttest_ind_from_stats(
            c_mean,
            c_std,
            canary.abs_errors,
            s_mean * scale,
            s_std * scale,
            stable.abs_errors,
            equal_var=False,
            alternative="greater",
        ).pvalue
    )
    text = f"canary MAE {c_mean:.4g} vs stable {s_mean:.4g} (Welch p={p_value:.3g})"
    if p_value < settings.alpha:
        return CheckResult(
            "quality",
            "fail",
            increase,
            margin,
            p_value,
            f"{text}: higher by significantly more than {margin:.0%}",
        )
    return CheckResult(
        "quality", "pass", increase, margin, p_value, f"{text}: not significantly worse"
    )


def _mean_std(total: float, total_sq: float, n: int) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) from a count, a sum and a sum of squares."""
    mean = total / n
    spread = total_sq - n * mean * mean
    # The difference of two large sums is only known to ~1e-16 of total_sq: a spread below
    # that noise is no spread (and would turn identical errors into an infinite t).
    if n < 2 or spread <= 1e-10 * total_sq:
        return mean, 0.0
    return mean, math.sqrt(spread / (n - 1))


# ---------------------------------------------------------------------- shadow


def shadow_report(
    primary: WindowSummary, shadow: WindowSummary, confidence: float = 0.95
) -> dict[str, Any]:
    """How a shadow version compares with the primary on the same requests.

    The comparisons are read from ``shadow`` (the server calls ``record_shadow`` on the shadow
    version's :class:`Telemetry`), the primary's latency from ``primary``.

    Returns:
        ``comparisons``, ``agreement_rate`` and its Wilson score ``agreement_interval`` at
        ``confidence`` (sound near 0 and 1, where agreement rates live; None without
        comparisons), ``difference_quantiles`` of the absolute differences (``p50``, ``p90``,
        ``p99``, ``max`` of the sample; None without any), ``primary_latency_ms`` and
        ``shadow_latency_ms`` (``p50``, ``p99`` from the histograms), and the shadow's
        ``errors``, ``timeouts`` and their rates over the comparisons.
    """
    n = shadow.shadow_comparisons
    agreement: float | None = None
    interval: list[float] | None = None
    if n > 0:
        agreement = shadow.shadow_agreements / n
        ci = stats.binomtest(shadow.shadow_agreements, n).proportion_ci(
            confidence_level=confidence, method="wilson"
        )
        interval = [float(ci.low), float(ci.high)]
    differences: dict[str, float] | None = None
    if shadow.shadow_diff_sample:
        sample = np.asarray(shadow.shadow_diff_sample)
        q50, q90, q99 = np.quantile(sample, [0.5, 0.9, 0.99])
        differences = {
            "p50": float(q50),
            "p90": float(q90),
            "p99": float(q99),
            "max": float(sample.max()),
        }
    return {
        "comparisons": n,
        "agreement_rate": agreement,
        "agreement_interval": interval,
        "difference_quantiles": differences,
        "primary_latency_ms": _ms(primary.latency_quantile(0.5), primary.latency_quantile(0.99)),
        "shadow_latency_ms": _ms(
            shadow.shadow_latency_quantile(0.5), shadow.shadow_latency_quantile(0.99)
        ),
        "errors": shadow.shadow_errors,
        "timeouts": shadow.shadow_timeouts,
        "error_rate": shadow.shadow_errors / n if n else None,
        "timeout_rate": shadow.shadow_timeouts / n if n else None,
    }


def _ms(p50: float | None, p99: float | None) -> dict[str, float | None]:
    return {
        "p50": p50 * 1e3 if p50 is not None else None,
        "p99": p99 * 1e3 if p99 is not None else None,
    }


# ---------------------------------------------------------------------- tolerance


@dataclass(frozen=True)
class StepDecision:
    """What the controller does after an analysis of a step.

    Attributes:
        action: ``promote`` (go to the next step), ``abort`` (roll back), or ``wait``
            (analyse again after ``interval_s``).
        reason: One line for the deployment record.
        failures: Failed analyses in the step so far.
        inconclusive: Inconclusive analyses in the step so far.
    """

    action: Literal["promote", "abort", "wait"]
    reason: str
    failures: int
    inconclusive: int


def decide_step(verdicts: Sequence[str], settings: AnalysisSettings) -> StepDecision:
    """The ``failure_limit`` / ``max_inconclusive`` semantics over a step's analyses, in order.

    A step ends at its first decision: a ``pass`` promotes; a failure beyond ``failure_limit``
    (the ``failure_limit + 1``-th fail) aborts, as does an inconclusive beyond
    ``max_inconclusive``. Failures are counted over the whole step, not reset by an
    inconclusive analysis in between: a canary that fails every other analysis must not slip
    through (a pass ends the step, so within a step failures are only ever separated by
    inconclusive analyses). Verdicts after the deciding one are ignored.

    Raises:
        ValueError: A verdict is not ``pass``, ``fail`` or ``inconclusive``.
    """
    failures = inconclusive = 0
    for index, verdict in enumerate(verdicts, start=1):
        if verdict == "pass":
            return StepDecision("promote", f"analysis {index} passed", failures, inconclusive)
        if verdict == "fail":
            failures += 1
            if failures > settings.failure_limit:
                return StepDecision(
                    "abort",
                    f"analysis {index} failed: {failures} failed analyses "
                    f"(failure_limit {settings.failure_limit})",
                    failures,
                    inconclusive,
                )
        elif verdict == "inconclusive":
            inconclusive += 1
            limit = settings.max_inconclusive
            if limit is not None and inconclusive > limit:
                return StepDecision(
                    "abort",
                    f"analysis {index} inconclusive: {inconclusive} inconclusive analyses "
                    f"(max_inconclusive {limit})",
                    failures,
                    inconclusive,
                )
        else:
            raise ValueError(f"unknown analysis verdict {verdict!r}")
    return StepDecision(
        "wait",
        f"{failures} failed and {inconclusive} inconclusive analyses so far",
        failures,
        inconclusive,
    )
