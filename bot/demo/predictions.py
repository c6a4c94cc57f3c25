"""A realistic fraud-scorer prediction log, with drift injected from a given day on (for the demo and tests).

Columns: `day` (ISO date), `amount` (lognormal), `merchant_category` (8 categories), `account_age_days`
(some missing), `country`, `device` (mobile / desktop), and the prediction `score` (a logistic function
of the features, so it drifts when they do). From `drift_from` on, with `size` 1.0:
- `amount` shifts up by 0.6 of its log-scale standard deviation;
- a new merchant category, `crypto_exchange`, takes 12 % of the transactions;
- missing `account_age_days` rise from 2 % to 20 % over the drifted days.
`size` scales all three (0: no drift at all), so detection can be measured at several drift sizes.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bot.digests.drift import Kind

CATEGORIES = ("grocery", "fuel", "travel", "electronics", "restaurants", "fashion", "gaming", "pharmacy")
CATEGORY_SHARES = (0.24, 0.14, 0.08, 0.1, 0.18, 0.12, 0.06, 0.08)
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "PL")
COUNTRY_SHARES = (0.35, 0.2, 0.12, 0.13, 0.12, 0.08)
NEW_CATEGORY = "crypto_exchange"
KINDS: dict[str, Kind] = {
    "amount": "numeric",
    "merchant_category": "categorical",
    "account_age_days": "numeric",
    "country": "categorical",
    "device": "categorical",
    "score": "numeric",
}


@dataclass(frozen=True)
class PredictionLog:
    """The log as columns (one entry per prediction)."""

    columns: dict[str, NDArray[Any]]

    @property
    def rows(self) -> int:
        """Number of predictions."""
        return int(self.columns["day"].size)

    def between(self, start: dt.date, end: dt.date) -> PredictionLog:
        """The predictions of days `start` to `end`, both included."""
        days = self.columns["day"]
        keep = (days >= start.isoformat()) & (days <= end.isoformat())
        return PredictionLog({name: values[keep] for name, values in self.columns.items()})


def prediction_log(
    start: dt.date,
    days: int,
    rows_per_day: int,
    drift_from: dt.date | None = None,
    size: float = 1.0,
    seed: int = 0,
) -> PredictionLog:
    """`days` days of predictions from `start`; drift of `size` from `drift_from` (None: never)."""
    rng = np.random.default_rng(seed)
    count = days * rows_per_day
    day_index = np.repeat(np.arange(days), rows_per_day)
    dates = np.array([(start + dt.timedelta(days=int(i))).isoformat() for i in range(days)])[day_index]
    drifted_days = 0 if drift_from is None else max(days - (drift_from - start).days, 0)
    first_drifted = days - drifted_days
    drifting = (day_index >= first_drifted) & (size > 0)
    # How far into the drift each row is, 0..1 (missing values rise gradually, not at once).
    progress = np.where(drifting, (day_index - first_drifted + 1) / max(drifted_days, 1), 0.0)

    log_amount = rng.normal(3.6, 1.0, count) + np.where(drifting, 0.6 * size, 0.0)
    amount = np.round(np.exp(log_amount), 2)
    category = rng.choice(np.array(CATEGORIES), size=count, p=CATEGORY_SHARES).astype(object)
    category[drifting & (rng.random(count) < 0.12 * size)] = NEW_CATEGORY
    age = np.round(rng.gamma(2.0, 400.0, count))
    missing_share = 0.02 + np.where(drifting, 0.18 * size * progress, 0.0)
    age[rng.random(count) < missing_share] = np.nan
    country = rng.choice(np.array(COUNTRIES), size=count, p=COUNTRY_SHARES).astype(object)
    device = np.where(rng.random(count) < 0.62, "mobile", "desktop").astype(object)
    risky = np.isin(category, ("travel", "electronics", "gaming", NEW_CATEGORY))
    logit = -4.0 + 0.45 * (log_amount - 3.6) + 1.1 * risky - 0.0006 * np.nan_to_num(age, nan=300.0)
    score = np.round(1.0 / (1.0 + np.exp(-(logit + rng.normal(0.0, 0.3, count)))), 4)
    return PredictionLog(
        {
            "day": dates,
            "amount": amount,
            "merchant_category": category,
            "account_age_days": age,
            "country": country,
            "device": device,
            "score": score,
        }
    )


def write_csv(log: PredictionLog, folder: Path) -> list[Path]:
    """One CSV file per day (`2026-10-01.csv` …): a date-partitioned source, as a job would write it."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(log.columns)
    written = []
    for day in sorted(set(log.columns["day"].tolist())):
        rows = log.between(dt.date.fromisoformat(day), dt.date.fromisoformat(day)).columns
        path = folder / f"{day}.csv"
        partial = path.with_suffix(".csv.tmp")
        with partial.open("w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(names)
            for values in zip(*(rows[name].tolist() for name in names), strict=True):
                out.writerow(
                    ["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
                )
        partial.replace(path)
        written.append(path)
    return written


DEMO_START = dt.date(2026, 10, 1)
DEMO_DAYS = 35  # to 2026-11-04
DEMO_DRIFT_FROM = dt.date(2026, 10, 29)


def main(argv: list[str] | None = None) -> int:
    """`python -m bot.demo.predictions FOLDER`: the demo's prediction log, drifting from 2026-10-29."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows-per-day", type=int, default=400)
    args = parser.parse_args(argv)
    log = prediction_log(DEMO_START, DEMO_DAYS, args.rows_per_day, drift_from=DEMO_DRIFT_FROM, seed=11)
    written = write_csv(log, args.folder)
    print(f"wrote {len(written)} daily files ({log.rows:,} predictions) to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
