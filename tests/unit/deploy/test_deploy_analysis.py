"""Canary analysis: each check against scipy's tests, verdicts, tolerance, and the policy block."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import optimize, stats

from conveyor.core.errors import ConfigError
from conveyor.deploy.analysis import (
    Analysis,
    AnalysisSettings,
    CheckResult,
    decide_step,
    farrington_manning_z,
    restricted_mle,
    shadow_report,
)
from conveyor.deploy.analysis import analyse as run_analysis
from conveyor.deploy.telemetry import Telemetry, WindowSummary

SETTINGS = AnalysisSettings()


def _summary(
    latencies: np.ndarray | None = None,
    errors: int = 0,
    predictions: np.ndarray | None = None,
    correct: tuple[int, int] | None = None,
    abs_errors: np.ndarray | None = None,
    seed: int = 0,
) -> WindowSummary:
    """A window with these latencies (the first ``errors`` answered 500) and outcomes."""
    telemetry = Telemetry(sample_size=20_000, seed=seed)
    for index, latency in enumerate([] if latencies is None else latencies.tolist()):
        telemetry.record_request(latency, 500 if index < errors else 200)
    if predictions is not None:
        telemetry.record_predictions(predictions)
    if correct is not None:
        right, total = correct
        for index in range(total):
            telemetry.record_feedback(correct=index < right)
    for error in [] if abs_errors is None else abs_errors.tolist():
        telemetry.record_feedback(abs_error=error)
    summary = telemetry.snapshot_and_reset()
    return summary if summary is not None else WindowSummary()


def _lognormal(seed: int, n: int, median_s: float = 0.02) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(median_s), 0.4, size=n)


def _check(analysis: Analysis, name: str) -> CheckResult:
    return next(check for check in analysis.checks if check.name == name)


# ---------------------------------------------------------------------- error rate


def _reference_restricted_p2(x1: int, n1: int, x2: int, n2: int, margin: float) -> float:
    def score(p2: float) -> float:
        p1 = p2 + margin
        return x1 / p1 - (n1 - x1) / (1 - p1) + x2 / p2 - (n2 - x2) / (1 - p2)

    return float(optimize.brentq(score, 1e-15, 1 - margin - 1e-15, xtol=1e-15))


@pytest.mark.parametrize(
    "case",
    [
        (30, 1000, 10, 1000, 0.01),
        (5, 200, 3, 300, 0.02),
        (7, 50, 40, 60, 0.1),
        (3, 1000, 2, 500, 0.005),
    ],
)
def test_restricted_mle_solves_the_likelihood_equation(
    case: tuple[int, int, int, int, float],
) -> None:
    r1, r2 = restricted_mle(*case)
    assert r1 - r2 == pytest.approx(case[4], abs=1e-12)
    assert r2 == pytest.approx(_reference_restricted_p2(*case), abs=1e-9)


def test_score_statistic_without_margin_is_the_pearson_chi_square() -> None:
    x1, n1, x2, n2 = 30, 1000, 10, 1000
    chi2 = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False).statistic
    assert farrington_manning_z(x1, n1, x2, n2, 1e-13) ** 2 == pytest.approx(chi2, rel=1e-9)
    assert restricted_mle(0, 200, 0, 200, 0.01) == pytest.approx((0.01, 0.0), abs=1e-12)


def test_clearly_higher_error_rate_fails() -> None:
    stable = _summary(_lognormal(1, 2000), errors=2)
    canary = _summary(_lognormal(2, 2000), errors=100)
    check = _check(run_analysis(stable, canary, SETTINGS), "error_rate")
    assert check.verdict == "fail"
    assert check.observed == pytest.approx(98 / 2000, rel=1e-12)
    r2 = _reference_restricted_p2(100, 2000, 2, 2000, 0.01)
    r1 = r2 + 0.01
    z = (98 / 2000 - 0.01) / math.sqrt(r1 * (1 - r1) / 2000 + r2 * (1 - r2) / 2000)
    assert check.p_value == pytest.approx(stats.norm.sf(z), rel=1e-9)


def test_equal_error_rates_pass_at_large_n_and_wait_at_small_n() -> None:
    stable = _summary(_lognormal(1, 3000), errors=3)
    canary = _summary(_lognormal(2, 3000), errors=3)
    check = _check(run_analysis(stable, canary, SETTINGS), "error_rate")
    assert check.verdict == "pass"
    assert check.p_value is not None
    assert check.p_value < 0.05
    # 300 requests each clear min_requests but cannot yet show the increase is within 1 point.
    small = run_analysis(
        _summary(_lognormal(1, 300), errors=1), _summary(_lognormal(2, 300), errors=1), SETTINGS
    )
    assert _check(small, "error_rate").verdict == "inconclusive"
    tiny = run_analysis(_summary(_lognormal(1, 50)), _summary(_lognormal(2, 50)), SETTINGS)
    assert tiny.verdict == "inconclusive"
    assert {check.verdict for check in tiny.checks} == {"inconclusive", "skipped"}
    assert "200 valid requests needed" in _check(tiny, "error_rate").detail


def test_zero_margin_uses_fishers_exact_test() -> None:
    settings = AnalysisSettings(max_error_rate_increase=0.0)
    stable = _summary(_lognormal(1, 1000), errors=2)
    canary = _summary(_lognormal(2, 1000), errors=12)
    check = _check(run_analysis(stable, canary, settings), "error_rate")
    expected = stats.fisher_exact([[12, 988], [2, 998]], alternative="greater").pvalue
    assert check.p_value == pytest.approx(expected, rel=1e-12)
    assert check.verdict == "fail"
    same = _check(
        run_analysis(stable, _summary(_lognormal(2, 1000), errors=3), settings), "error_rate"
    )
    assert same.verdict == "pass"


def test_client_errors_are_not_held_against_the_canary() -> None:
    telemetry = Telemetry(seed=1)
    for index, latency in enumerate(_lognormal(3, 3000).tolist()):
        telemetry.record_request(latency, 404 if index % 3 == 0 else 200)
    canary = telemetry.snapshot_and_reset()
    assert canary is not None
    check = _check(run_analysis(_summary(_lognormal(1, 3000)), canary, SETTINGS), "error_rate")
    assert check.verdict == "pass"
    assert check.observed == 0.0


# ---------------------------------------------------------------------- latency


def test_latency_half_again_slower_fails() -> None:
    stable_latencies = _lognormal(1, 3000)
    canary_latencies = _lognormal(2, 3000) * 1.5
    stable, canary = _summary(stable_latencies), _summary(canary_latencies)
    check = _check(run_analysis(stable, canary, SETTINGS), "latency")
    assert check.verdict == "fail"
    expected = stats.mannwhitneyu(canary_latencies, stable_latencies, alternative="greater")
    assert check.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    reference = np.quantile(canary_latencies, 0.99) / np.quantile(stable_latencies, 0.99) - 1
    assert check.observed == pytest.approx(reference, abs=0.05)


def test_a_slow_tail_fails_on_the_tail_test() -> None:
    """Same median, but 5% of the canary's requests three times slower: the body test does not
    see it, the tail test does (an exact binomial test against scipy's)."""
    stable_latencies = _lognormal(1, 3000)
    canary_latencies = _lognormal(2, 3000)
    canary_latencies[::20] *= 3.0
    stable, canary = _summary(stable_latencies), _summary(canary_latencies)
    check = _check(run_analysis(stable, canary, SETTINGS), "latency")
    assert check.verdict == "fail"
    assert "in the tail" in check.detail
    s99 = stable.latency_quantile(0.99)
    assert s99 is not None
    beyond = int(np.count_nonzero(canary_latencies > s99))
    expected = stats.binomtest(beyond, 3000, 0.01, alternative="greater").pvalue
    assert check.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_a_noisy_p99_over_few_requests_rarely_fails() -> None:
    """Identical distributions, 300 requests each, 300 times: the p99s often differ by 20% or
    more (each is the third-largest value), yet the check fails about as often as its
    significance level allows (5%), not whenever the p99 ratio is noisy."""
    settings = AnalysisSettings(min_requests=200)
    verdicts = [
        _check(
            run_analysis(
                _summary(_lognormal(100 + seed, 300)),
                _summary(_lognormal(5000 + seed, 300)),
                settings,
            ),
            "latency",
        ).verdict
        for seed in range(300)
    ]
    assert verdicts.count("fail") / len(verdicts) <= 0.05


def test_identical_latency_distributions_pass() -> None:
    stable_latencies, canary_latencies = _lognormal(1, 3000), _lognormal(2, 3000)
    analysis = run_analysis(_summary(stable_latencies), _summary(canary_latencies), SETTINGS)
    check = _check(analysis, "latency")
    assert check.verdict == "pass"
    expected = stats.mannwhitneyu(canary_latencies, stable_latencies, alternative="greater")
    assert check.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_significant_but_small_slowdown_passes() -> None:
    stable_latencies, canary_latencies = _lognormal(1, 15_000), _lognormal(2, 15_000) * 1.05
    check = _check(
        run_analysis(_summary(stable_latencies), _summary(canary_latencies), SETTINGS), "latency"
    )
    assert check.p_value is not None
    assert check.p_value < 0.05
    assert check.verdict == "pass"
    assert "within margin" in check.detail


def test_absolute_p99_budget() -> None:
    settings = AnalysisSettings(max_p99_ms=30.0)
    stable = _summary(_lognormal(1, 1000))
    slow = _lognormal(2, 1000, median_s=0.025)
    check = _check(run_analysis(stable, _summary(slow), settings), "latency_budget")
    over = int(np.count_nonzero(slow * 1e3 > 30.0))
    expected = stats.binomtest(over, 1000, 0.01, alternative="greater").pvalue
    assert check.verdict == "fail"
    assert check.p_value == pytest.approx(expected, rel=1e-9)
    fast = _lognormal(2, 1000, median_s=0.005)
    assert (
        _check(run_analysis(stable, _summary(fast), settings), "latency_budget").verdict == "pass"
    )
    assert all(
        check.name != "latency_budget" for check in run_analysis(stable, stable, SETTINGS).checks
    )


# ---------------------------------------------------------------------- prediction drift


def test_shifted_prediction_scores_fail_the_ks_check() -> None:
    rng = np.random.default_rng(4)
    stable_scores = rng.beta(2, 5, size=3000)
    canary_scores = np.clip(rng.beta(2, 5, size=3000) + 0.15, 0, 1)
    stable = _summary(_lognormal(1, 3000), predictions=stable_scores)
    canary = _summary(_lognormal(2, 3000), predictions=canary_scores)
    check = _check(run_analysis(stable, canary, SETTINGS), "prediction_drift")
    expected = stats.ks_2samp(canary_scores, stable_scores)
    assert check.verdict == "fail"
    assert check.observed == pytest.approx(expected.statistic, rel=1e-12)
    assert check.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_small_significant_drift_within_the_bound_passes() -> None:
    rng = np.random.default_rng(5)
    stable_scores, canary_scores = rng.normal(0, 1, 15_000), rng.normal(0.08, 1, 15_000)
    stable = _summary(_lognormal(1, 3000), predictions=stable_scores)
    canary = _summary(_lognormal(2, 3000), predictions=canary_scores)
    check = _check(run_analysis(stable, canary, SETTINGS), "prediction_drift")
    assert check.p_value is not None
    assert check.p_value < 0.05
    assert check.observed is not None
    assert check.observed < 0.1
    assert check.verdict == "pass"


def test_class_predictions_compare_class_frequencies() -> None:
    rng = np.random.default_rng(6)
    stable_classes = rng.choice(3, size=2000, p=[0.6, 0.3, 0.1]).astype(float)
    canary_classes = rng.choice(3, size=2000, p=[0.4, 0.3, 0.3]).astype(float)
    stable = _summary(_lognormal(1, 2000), predictions=stable_classes)
    canary = _summary(_lognormal(2, 2000), predictions=canary_classes)
    check = _check(run_analysis(stable, canary, SETTINGS), "prediction_drift")
    table = [
        [np.sum(canary_classes == k) for k in range(3)],
        [np.sum(stable_classes == k) for k in range(3)],
    ]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    c = np.bincount(canary_classes.astype(int)) / 2000
    s = np.bincount(stable_classes.astype(int)) / 2000
    assert check.verdict == "fail"
    assert check.observed == pytest.approx(0.5 * np.abs(c - s).sum(), rel=1e-12)
    assert check.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert "class frequencies" in check.detail


# ---------------------------------------------------------------------- quality


def test_accuracy_drop_fails_and_too_few_labels_are_skipped() -> None:
    stable = _summary(_lognormal(1, 3000), correct=(900, 1000))
    canary = _summary(_lognormal(2, 3000), correct=(800, 1000))
    analysis = run_analysis(stable, canary, SETTINGS)
    check = _check(analysis, "quality")
    assert check.verdict == "fail"
    assert check.observed == pytest.approx(0.1, rel=1e-12)
    z = farrington_manning_z(200, 1000, 100, 1000, 0.02)
    assert check.p_value == pytest.approx(stats.norm.sf(z), rel=1e-12)
    assert analysis.verdict == "fail"
    few = run_analysis(
        _summary(_lognormal(1, 3000), correct=(90, 99)),
        _summary(_lognormal(2, 3000), correct=(10, 99)),
        SETTINGS,
    )
    assert _check(few, "quality").verdict == "skipped"
    # Skipped checks (quality without labels, drift without any predictions) do not hold a
    # verdict back.
    assert _check(few, "prediction_drift").verdict == "skipped"
    assert few.verdict == "pass"


def test_regression_error_increase_uses_welch_against_the_margin() -> None:
    rng = np.random.default_rng(8)
    stable_errors, canary_errors = rng.exponential(1.0, 500), rng.exponential(1.4, 500)
    stable = _summary(_lognormal(1, 3000), abs_errors=stable_errors)
    canary = _summary(_lognormal(2, 3000), abs_errors=canary_errors)
    check = _check(run_analysis(stable, canary, SETTINGS), "quality")
    expected = stats.ttest_ind(
        canary_errors, stable_errors * 1.1, equal_var=False, alternative="greater"
    )
    assert check.verdict == "fail"
    assert check.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert check.observed == pytest.approx(
        canary_errors.mean() / stable_errors.mean() - 1, rel=1e-9
    )
    same = _summary(_lognormal(2, 3000), abs_errors=rng.exponential(1.0, 500))
    assert _check(run_analysis(stable, same, SETTINGS), "quality").verdict == "pass"
    constant = _summary(_lognormal(1, 3000), abs_errors=np.full(200, 1.0))
    higher = _summary(_lognormal(2, 3000), abs_errors=np.full(200, 1.2))
    check = _check(run_analysis(constant, higher, SETTINGS), "quality")
    assert (check.verdict, check.p_value) == ("fail", None)
    assert _check(run_analysis(constant, constant, SETTINGS), "quality").verdict == "pass"


# ---------------------------------------------------------------------- verdict, JSON


def test_a_good_canary_passes_every_check_and_serialises() -> None:
    rng = np.random.default_rng(9)
    stable = _summary(
        _lognormal(1, 4000), errors=4, predictions=rng.beta(2, 5, 4000), correct=(3400, 4000)
    )
    canary = _summary(
        _lognormal(2, 4000), errors=4, predictions=rng.beta(2, 5, 4000), correct=(3420, 4000)
    )
    analysis = run_analysis(stable, canary, AnalysisSettings(max_p99_ms=200.0))
    assert [check.name for check in analysis.checks] == [
        "error_rate", "latency", "latency_budget", "prediction_drift", "quality",
    ]  # fmt: skip
    assert {check.verdict for check in analysis.checks} == {"pass"}
    assert analysis.verdict == "pass"
    data = json.loads(json.dumps(analysis.to_json(), allow_nan=False))
    assert data["verdict"] == "pass"
    assert data["canary_requests"] == 4000
    assert data["checks"][0]["name"] == "error_rate"
    assert set(data["checks"][0]) == {
        "name",
        "verdict",
        "observed",
        "threshold",
        "p_value",
        "detail",
    }
    empty = run_analysis(WindowSummary(), WindowSummary(), SETTINGS)
    assert empty.verdict == "inconclusive"
    json.dumps(empty.to_json(), allow_nan=False)


# ---------------------------------------------------------------------- shadow


def test_shadow_report() -> None:
    primary_latencies = _lognormal(1, 1000)
    primary = _summary(primary_latencies)
    telemetry = Telemetry(seed=3, sample_size=5000)
    rng = np.random.default_rng(10)
    diffs = rng.exponential(0.1, 1000)
    shadow_latencies = _lognormal(2, 1000, median_s=0.03)
    for index in range(1000):
        telemetry.record_shadow(
            agree=index % 10 != 0,
            abs_diff=float(diffs[index]),
            shadow_latency_s=float(shadow_latencies[index]),
            error=index % 100 == 0,
            timed_out=index % 250 == 0,
        )
    shadow = telemetry.snapshot_and_reset()
    assert shadow is not None
    report = shadow_report(primary, shadow)
    assert report["comparisons"] == 1000
    assert report["agreement_rate"] == pytest.approx(0.9, rel=1e-12)
    # Wilson score interval, by its formula.
    z, p, n = stats.norm.ppf(0.975), 0.9, 1000
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert report["agreement_interval"] == pytest.approx([centre - half, centre + half], rel=1e-9)
    expected = np.quantile(diffs, [0.5, 0.9, 0.99])
    assert [report["difference_quantiles"][k] for k in ("p50", "p90", "p99")] == pytest.approx(
        expected.tolist(), rel=1e-12
    )
    assert report["difference_quantiles"]["max"] == diffs.max()
    assert report["shadow_latency_ms"]["p50"] == pytest.approx(
        np.median(shadow_latencies) * 1e3, rel=0.03
    )
    assert report["primary_latency_ms"]["p99"] == pytest.approx(
        np.quantile(primary_latencies, 0.99) * 1e3, rel=0.03
    )
    assert (report["errors"], report["timeouts"]) == (10, 4)
    assert report["error_rate"] == pytest.approx(0.01)
    json.dumps(report, allow_nan=False)
    nothing = shadow_report(WindowSummary(), WindowSummary())
    assert nothing["agreement_rate"] is None
    assert nothing["difference_quantiles"] is None


# ---------------------------------------------------------------------- failure_limit


@pytest.mark.parametrize(
    ("verdicts", "failure_limit", "max_inconclusive", "action"),
    [
        ([], 0, None, "wait"),
        (["fail"], 0, None, "abort"),
        (["inconclusive", "inconclusive"], 0, None, "wait"),
        (["inconclusive", "pass"], 0, None, "promote"),
        (["fail"], 1, None, "wait"),
        (["fail", "inconclusive", "fail"], 1, None, "abort"),
        (["fail", "pass"], 1, None, "promote"),
        (["fail", "fail", "pass"], 1, None, "abort"),
        (["inconclusive"] * 3, 0, 3, "wait"),
        (["inconclusive"] * 4, 0, 3, "abort"),
        (["pass", "fail"], 0, None, "promote"),
    ],
)
def test_failure_limit_semantics(
    verdicts: list[str], failure_limit: int, max_inconclusive: int | None, action: str
) -> None:
    settings = AnalysisSettings(failure_limit=failure_limit, max_inconclusive=max_inconclusive)
    decision = decide_step(verdicts, settings)
    assert decision.action == action
    assert decision.failures <= failure_limit + 1


def test_decide_step_counts_and_rejects_unknown_verdicts() -> None:
    decision = decide_step(["fail", "inconclusive", "fail"], AnalysisSettings(failure_limit=1))
    assert (decision.failures, decision.inconclusive) == (2, 1)
    assert "failure_limit 1" in decision.reason
    with pytest.raises(ValueError, match="'maybe'"):
        decide_step(["maybe"], SETTINGS)


# ---------------------------------------------------------------------- settings


def test_settings_from_mapping() -> None:
    assert AnalysisSettings.from_mapping({}, "policies.yaml:3") == AnalysisSettings()
    settings = AnalysisSettings.from_mapping(
        {"min_requests": 500, "confidence": 0.99, "max_p99_ms": 50, "failure_limit": 2,
         "max_inconclusive": None, "interval_s": 10},
        "policies.yaml:3",
    )  # fmt: skip
    assert settings.min_requests == 500
    assert settings.max_p99_ms == 50.0
    assert isinstance(settings.max_p99_ms, float)
    assert settings.alpha == pytest.approx(0.01)
    assert settings.to_dict()["failure_limit"] == 2


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"min_request": 5}, r"policies.yaml:7: unknown rollout key 'min_request'"),
        ({"confidence": "high"}, r"rollout key 'confidence' is 'high' \(str\)"),
        (
            {"confidence": 1.0},
            r"rollout key 'confidence' is 1.0; it must be a number in \[0.5, 1\)",
        ),
        ({"min_requests": 2.5}, r"rollout key 'min_requests' is 2.5 \(float\)"),
        ({"min_requests": 0}, r"rollout key 'min_requests' is 0"),
        ({"failure_limit": True}, r"rollout key 'failure_limit' is True \(bool\)"),
        ({"failure_limit": -1}, r"rollout key 'failure_limit' is -1"),
        ({"max_p99_ms": 0}, r"rollout key 'max_p99_ms' is 0"),
        ({"max_prediction_drift": None}, r"rollout key 'max_prediction_drift' cannot be null"),
        ({"interval_s": float("nan")}, r"rollout key 'interval_s' is nan"),
    ],
)
def test_settings_errors_name_the_key(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        AnalysisSettings.from_mapping(mapping, "policies.yaml:7")
    assert caught.value.hint


def test_unknown_key_hint_lists_the_keys_and_non_mappings_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        AnalysisSettings.from_mapping({"x": 1}, "policies.yaml:1")
    assert "failure_limit" in (caught.value.hint or "")
    assert "max_prediction_drift" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="must be a mapping, not list"):
        AnalysisSettings.from_mapping([], "policies.yaml:1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'min_labels' is 0"):
        AnalysisSettings(min_labels=0)
