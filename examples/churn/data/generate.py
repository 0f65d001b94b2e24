"""Generate a synthetic monthly snapshot of a telecom subscription business, for churn modelling.

Each row is one active customer in one month: who they are (``customer_id``, ``age``,
``gender``, ``region``), what they buy (``contract``, ``payment_method``, ``monthly_charges``,
``data_usage_gb``), how it has gone (``tenure_months``, ``total_charges``, ``support_calls``,
``late_payments``), when the snapshot row was taken (``event_time``), and whether they left by
the end of the month (``churned``, the label). Times are UTC, written without an offset.

The label comes from a logistic model of the features plus an unobserved "satisfaction" term, so
it is learnable but noisy: a good model reaches a ROC AUC of about 0.85, never 1.0.

Two regimes exist:

* the **base** regime (any month, ``drift=False``), and
* the **drifted** regime (``drift=True``), which tells the story of a bad month: prices went up,
  a network outage drove support calls up, a competitor launched a cheap unlimited-data plan in
  the west, and a digital wallet payment method appeared. Numeric distributions shift, the
  category mix changes, and the relationship between features and churn changes (concept
  drift): heavy data users now leave, while contract and tenure protect less. A model trained on
  a drifted month therefore scores clearly worse on a base month's holdout than a base model.

``gender`` has no effect on the label; it is kept only so fairness checks have something to
slice by.

Usage::

    python generate.py --month 2026-01 --rows 20000 --seed 7 --out churn-2026-01.csv
    python generate.py --month 2026-02 --rows 20000 --seed 7 --drift --out churn-2026-02.csv

or, from Python, ``generate("2026-01", rows=20000, seed=7, drift=False)``.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = (
    "electronic-check",
    "mailed-check",
    "bank-transfer",
    "credit-card",
    "digital-wallet",
)
REGIONS = ("north", "south", "east", "west")
GENDERS = ("female", "male")

# Past this many calls in a month, a customer's patience runs out: churn jumps, not creeps.
MANY_SUPPORT_CALLS = 4

COLUMNS = (
    "customer_id",
    "event_time",
    "age",
    "gender",
    "region",
    "contract",
    "payment_method",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "data_usage_gb",
    "support_calls",
    "late_payments",
    "churned",
)


@dataclass(frozen=True)
class Regime:
    """The parameters of one market regime: feature distributions and the churn model.

    Attributes:
        contract_mix: Probabilities of ``CONTRACTS``.
        payment_mix: Probabilities of ``PAYMENT_METHODS``.
        region_mix: Probabilities of ``REGIONS``.
        tenure_scale: Multiplier on the tenure of every contract type.
        usage_scale: Multiplier on monthly data usage.
        price_uplift: Added to every monthly charge, in currency units.
        support_rate: Multiplier on the expected number of support calls.
        intercept: Intercept of the churn logit.
        contract_effect: Logit added per contract type, in ``CONTRACTS`` order.
        tenure_effect: Logit per unit of ``log1p(tenure_months)`` (centred).
        charges_effect: Logit per currency unit of monthly charges above 65.
        usage_effect: Logit per GB of data usage above 12.
        support_effect: Logit per support call.
        support_threshold_effect: Extra logit once a customer called ``MANY_SUPPORT_CALLS``
            times or more.
        late_effect: Logit per late payment.
        echeck_effect: Logit for paying by electronic check.
        west_effect: Logit for living in the west region.
        age_effect: Logit per year of age above 44.
        noise_sd: Standard deviation of the unobserved satisfaction term of the logit.
    """

    contract_mix: tuple[float, ...]
    payment_mix: tuple[float, ...]
    region_mix: tuple[float, ...]
    tenure_scale: float
    usage_scale: float
    price_uplift: float
    support_rate: float
    intercept: float
    contract_effect: tuple[float, float, float]
    tenure_effect: float
    charges_effect: float
    usage_effect: float
    support_effect: float
    support_threshold_effect: float
    late_effect: float
    echeck_effect: float
    west_effect: float
    age_effect: float
    noise_sd: float


BASE = Regime(
    contract_mix=(0.52, 0.26, 0.22),
    # The digital wallet does not exist yet in the base regime.
    payment_mix=(0.34, 0.18, 0.24, 0.24, 0.0),
    region_mix=(0.30, 0.25, 0.25, 0.20),
    tenure_scale=1.0,
    usage_scale=1.0,
    price_uplift=0.0,
    support_rate=1.0,
    intercept=-1.9,
    contract_effect=(1.2, 0.0, -1.2),
    tenure_effect=-1.1,
    charges_effect=0.03,
    usage_effect=-0.04,
    support_effect=0.30,
    support_threshold_effect=0.8,
    late_effect=0.45,
    echeck_effect=0.45,
    west_effect=0.0,
    age_effect=-0.012,
    noise_sd=0.5,
)

DRIFTED = Regime(
    # A promotion pulled new customers onto month-to-month contracts, in the west above all.
    contract_mix=(0.64, 0.21, 0.15),
    payment_mix=(0.26, 0.10, 0.22, 0.28, 0.14),
    region_mix=(0.24, 0.22, 0.22, 0.32),
    tenure_scale=0.8,
    usage_scale=1.25,
    price_uplift=9.0,
    support_rate=1.8,
    intercept=-1.9,
    # The competitor's unlimited-data plan lures heavy users whatever their contract or tenure,
    # and support calls during the outage say little about an individual customer's mood.
    contract_effect=(0.6, 0.0, -0.6),
    tenure_effect=-0.45,
    charges_effect=0.035,
    usage_effect=0.05,
    support_effect=0.03,
    support_threshold_effect=0.0,
    late_effect=0.45,
    echeck_effect=0.1,
    west_effect=0.9,
    age_effect=0.0,
    noise_sd=0.5,
)


def _month_bounds(month: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return the first instant of ``month`` ("YYYY-MM") and the first instant of the next."""
    if re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month) is None:
        msg = f"month {month!r} is not of the form YYYY-MM, e.g. 2026-01"
        raise ValueError(msg)
    start = pd.Timestamp(f"{month}-01")
    return start, start + pd.offsets.MonthBegin(1)


def generate(month: str, rows: int, seed: int, drift: bool = False) -> pd.DataFrame:
    """Generate one month of customer snapshots with their churn label.

    The same ``(month, rows, seed, drift)`` always yields the same frame. The month is mixed into
    the seed, so two months generated with one seed are independent samples.

    Args:
        month: The month the snapshot describes, as "YYYY-MM".
        rows: How many customers (rows) to generate.
        seed: Seed of the random generator.
        drift: Generate the drifted regime (shifted distributions, changed category mix and a
            changed relation between features and churn) instead of the base one.

    Returns:
        A frame with the columns of ``COLUMNS``, sorted by ``event_time``.

    Raises:
        ValueError: If ``month`` is not "YYYY-MM" or ``rows`` is not positive.
    """
    if rows <= 0:
        msg = f"rows must be a positive number of customers, got {rows}"
        raise ValueError(msg)
    start, end = _month_bounds(month)
    regime = DRIFTED if drift else BASE
    rng = np.random.default_rng(np.random.SeedSequence([seed, start.year, start.month]))

    # Ids are drawn from a fixed pool, so a customer can appear in several months, as in a real
    # monthly snapshot, and the hash-based split keeps them on the same side every month.
    pool = max(1_000_000, 2 * rows)
    width = len(str(pool - 1))
    ids = rng.choice(pool, size=rows, replace=False)
    customer_id = [f"C{i:0{width}d}" for i in ids]

    span_s = int((end - start).total_seconds())
    event_time = start + pd.to_timedelta(rng.integers(0, span_s, size=rows), unit="s")

    age = np.clip(np.round(rng.normal(44.0, 15.0, rows)), 18, 90)
    gender = rng.choice(np.array(GENDERS), size=rows)
    region_idx = rng.choice(len(REGIONS), size=rows, p=regime.region_mix)
    contract_idx = rng.choice(len(CONTRACTS), size=rows, p=regime.contract_mix)
    payment_idx = rng.choice(len(PAYMENT_METHODS), size=rows, p=regime.payment_mix)

    # Longer contracts go with longer customer lives; a gamma gives the long right tail.
    tenure_mean = np.array([14.0, 30.0, 45.0])[contract_idx] * regime.tenure_scale
    tenure = np.clip(np.floor(rng.gamma(1.6, tenure_mean / 1.6)), 0, 72)

    # Younger customers stream more.
    usage_scale = 6.0 * regime.usage_scale * (1.35 - (age - 18.0) / 100.0)
    data_usage = np.round(rng.gamma(2.0, usage_scale), 2)

    discount = np.array([0.0, -4.0, -8.0])[contract_idx]
    monthly = 22.0 + 2.2 * data_usage + discount + rng.normal(0.0, 10.0, rows)
    monthly = np.round(np.clip(monthly + regime.price_uplift, 18.25, 140.0), 2)
    # Past months were billed a little differently (promotions, older prices), hence the noise.
    total = np.round(monthly * np.maximum(tenure, 1.0) * rng.normal(1.0, 0.06, rows), 2)
    total = np.maximum(total, monthly)

    support_lambda = regime.support_rate * (0.8 + 0.015 * np.maximum(monthly - 60.0, 0.0))
    support_calls = rng.poisson(support_lambda).astype(float)
    is_echeck = payment_idx == PAYMENT_METHODS.index("electronic-check")
    late_payments = rng.poisson(0.25 + 0.45 * is_echeck).astype(float)

    logit = (
        regime.intercept
        + np.array(regime.contract_effect)[contract_idx]
        + regime.tenure_effect * (np.log1p(tenure) - 2.8)
        + regime.charges_effect * (monthly - 65.0)
        + regime.usage_effect * (data_usage - 12.0)
        + regime.support_effect * support_calls
        + regime.support_threshold_effect * (support_calls >= MANY_SUPPORT_CALLS)
        + regime.late_effect * late_payments
        + regime.echeck_effect * is_echeck
        + regime.west_effect * (region_idx == REGIONS.index("west"))
        + regime.age_effect * (age - 44.0)
        # Unobserved satisfaction: what keeps even a perfect model below AUC 1.0.
        + rng.normal(0.0, regime.noise_sd, rows)
    )
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    frame = pd.DataFrame(
        {
            "customer_id": customer_id,
            "event_time": event_time,
            "age": age.astype(np.int64),
            "gender": gender,
            "region": np.array(REGIONS)[region_idx],
            "contract": np.array(CONTRACTS)[contract_idx],
            "payment_method": np.array(PAYMENT_METHODS)[payment_idx],
            "tenure_months": tenure.astype(np.int64),
            "monthly_charges": monthly,
            "total_charges": total,
            "data_usage_gb": data_usage,
            "support_calls": support_calls.astype(np.int64),
            "late_payments": late_payments.astype(np.int64),
            "churned": churned,
        },
        columns=list(COLUMNS),
    )
    return frame.sort_values("event_time", kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, generate one month and write it as CSV.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", required=True, help='month to generate, "YYYY-MM"')
    parser.add_argument("--rows", type=int, default=20_000, help="number of customers")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    parser.add_argument(
        "--drift",
        action="store_true",
        help="generate the drifted regime (data drift and concept drift)",
    )
    parser.add_argument("--out", type=Path, required=True, help="path of the CSV to write")
    args = parser.parse_args(argv)
    try:
        frame = generate(args.month, rows=args.rows, seed=args.seed, drift=args.drift)
    except ValueError as exc:
        parser.error(str(exc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    # A summary for the person at the terminal; stderr keeps stdout clean for pipes.
    sys.stderr.write(
        f"wrote {len(frame)} rows to {args.out} "
        f"(month {args.month}, drift {args.drift}, churn rate {frame['churned'].mean():.3f})\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
