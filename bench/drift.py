"""Drift benchmark: digest time at 1 million rows x 50 columns, and detection / false-alarm rates.

    .venv/bin/python -m bench.drift --rows 1000000 --columns 50 --samples 100

1. Time: a reference and a current sample of `--rows` rows each, `--columns` columns (40 numeric with
   several distributions, 10 categorical with 5 to 40 categories, some missing values), 10 % of the
   columns shifted. `dataset_drift` over all of them, `--repeat` times; the median is reported, with
   the time per column. The statistic is a distance at this size (Wasserstein, Jensen-Shannon).
2. Rates: the demo generator's prediction log (`bot/demo/predictions.py`), one week of reference
   and one week of current data, at drift sizes 0 (no drift: the false-alarm rate), 0.1, 0.25, 0.5
   and 1.0, `--samples` independent samples each, at two sample sizes (700 rows a week: the tests;
   14,000 a week: the distances). A detection is a data-set verdict of drift.
3. False alarms on one categorical column without drift, by number of categories (5, 20, 200, 500)
   and rows per sample (1,000: chi-square; 2,000 to 100,000: Jensen-Shannon), with even shares and
   with Zipf shares (the i-th category's share proportional to 1/i), `--samples` seeded pairs each
   (ten times as many at 1,000 rows, where they are cheap and the test's rate is near its 5 %):
   the share of "drift" verdicts now, and with the fixed 0.1 threshold alone (before the noise floor).

    .venv/bin/python -m bench.drift --false-alarms-only --samples 100
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import save
from bot.demo.predictions import KINDS, prediction_log
from bot.digests.drift import Kind, Thresholds, dataset_drift, feature_drift

ROOT = Path(__file__).resolve().parents[1]

START = dt.date(2026, 10, 1)


def _wide(rows: int, columns: int, seed: int, shifted: bool) -> tuple[dict[str, Kind], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    kinds: dict[str, Kind] = {}
    data: dict[str, Any] = {}
    numeric = columns * 4 // 5
    for index in range(columns):
        name = f"c{index:02d}"
        moved = shifted and index % 10 == 0
        if index < numeric:
            kinds[name] = "numeric"
            shape = index % 3
            values = (
                rng.normal(0.3 if moved else 0.0, 1.0, rows)
                if shape == 0
                else rng.lognormal(0.2 if moved else 0.0, 0.8, rows)
                if shape == 1
                else rng.gamma(2.0, 1.3 if moved else 1.0, rows)
            )
            values[rng.random(rows) < 0.02] = np.nan
            data[name] = values
        else:
            kinds[name] = "categorical"
            categories = np.array([f"v{k}" for k in range(5 + (index % 8) * 5)])
            weights = np.linspace(1.0, 2.0 if moved else 1.0, categories.size)
            data[name] = rng.choice(categories, rows, p=weights / weights.sum()).astype(object)
    return kinds, data


def _timing(rows: int, columns: int, repeat: int) -> dict[str, Any]:
    kinds, reference = _wide(rows, columns, seed=1, shifted=False)
    _kinds, current = _wide(rows, columns, seed=2, shifted=True)
    seconds = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = dataset_drift(kinds, reference, current)
        seconds.append(time.perf_counter() - started)
    assert result is not None
    median = statistics.median(seconds)
    return {
        "rows_per_sample": rows,
        "columns": columns,
        "runs": [round(s, 2) for s in seconds],
        "median_seconds": round(median, 2),
        "median_seconds_per_column": round(median / columns, 3),
        "columns_flagged_drift": len(result.drifted),
        "columns_shifted": sum(1 for index in range(columns) if index % 10 == 0),
    }


def _write_days(data: dict[str, Any], first: dt.date, days: int, folder: Path, fmt: str) -> None:
    """The sample as `days` daily files (`YYYY-MM-DD.parquet` or `.csv`) with a `day` column."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rows = len(next(iter(data.values())))
    bounds = np.linspace(0, rows, days + 1).astype(int)
    for index in range(days):
        day = first + dt.timedelta(days=index)
        part = {name: values[bounds[index] : bounds[index + 1]] for name, values in data.items()}
        columns = {
            name: pa.array(values, from_pandas=True) if values.dtype != object else pa.array(list(values))
            for name, values in part.items()
        }
        table = pa.table({"day": [day.isoformat()] * (bounds[index + 1] - bounds[index]), **columns})
        if fmt == "parquet":
            pq.write_table(table, folder / f"{day}.parquet")
        else:
            pacsv.write_csv(table, folder / f"{day}.csv")


def _digest_timing(rows: int, columns: int, repeat: int, fmt: str) -> dict[str, Any]:
    """The whole drift digest (read the files, compute, chart, render) over daily files on disk."""
    from bot.digests.config import load_digests
    from bot.digests.drift_digest import render_text, run_drift

    kinds, reference = _wide(rows, columns, seed=1, shifted=False)
    _kinds, current = _wide(rows, columns, seed=2, shifted=True)
    today = START + dt.timedelta(days=14)
    with tempfile.TemporaryDirectory(prefix="steward-bench-drift-") as folder:
        base = Path(folder)
        _write_days(reference, START, 7, base / "data", fmt)
        _write_days(current, START + dt.timedelta(days=7), 7, base / "data", fmt)
        numeric = [name for name, kind in kinds.items() if kind == "numeric"]
        categorical = [name for name, kind in kinds.items() if kind == "categorical"]
        monitor = {
            "model": "wide-model",
            "reference": {
                fmt: f"data/*.{fmt}",
                "from": START.isoformat(),
                "to": str(START + dt.timedelta(days=6)),
            },
            "current": {fmt: f"data/*.{fmt}", "last_days": 7},
            "date_column": "day",
            "numeric": numeric,
            "categorical": categorical,
        }
        config = {
            "digests": {
                "bench": {"kind": "drift", "schedule": "0 8 * * *", "channel": "C1", "monitors": [monitor]}
            }
        }
        (base / "digests.yaml").write_text(json.dumps(config))
        digest = load_digests(base / "digests.yaml").digests["bench"]
        seconds = []
        result = None
        for _ in range(repeat):
            started = time.perf_counter()
            (result,) = run_drift(digest, today, base, charts=True)
            render_text("bench", [result], today)
            seconds.append(time.perf_counter() - started)
    assert result is not None and result.drift is not None, result
    median = statistics.median(seconds)
    return {
        "format": fmt,
        "rows_per_sample": rows,
        "columns": columns,
        "runs": [round(s, 2) for s in seconds],
        "median_seconds": round(median, 2),
        "rows_read": result.reference_rows + result.current_rows,
        "columns_flagged_drift": len(result.drift.drifted),
    }


def _rates(samples: int) -> dict[str, Any]:
    rates: dict[str, Any] = {}
    for rows_per_day in (100, 2000):
        row: dict[str, float] = {}
        for size in (0.0, 0.1, 0.25, 0.5, 1.0):
            hits = 0
            for seed in range(samples):
                log = prediction_log(
                    START, 14, rows_per_day, drift_from=START + dt.timedelta(days=7), size=size, seed=seed
                )
                reference = log.between(START, START + dt.timedelta(days=6)).columns
                current = log.between(START + dt.timedelta(days=7), START + dt.timedelta(days=13)).columns
                hits += dataset_drift(KINDS, reference, current).level == "drift"
            row[str(size)] = round(hits / samples, 3)
        rates[f"{rows_per_day * 7:,} rows a week"] = row
    return rates


def _false_alarms(samples: int) -> dict[str, Any]:
    """Per shares, categories and rows: the false drift rate now and with the fixed threshold alone."""
    fixed = Thresholds().distance_drift
    table: dict[str, Any] = {}
    for shares_name in ("even", "zipf"):
        for categories in (5, 20, 200, 500):
            names = np.array([f"c{i}" for i in range(categories)], dtype=object)
            weights = np.ones(categories) if shares_name == "even" else 1.0 / np.arange(1, categories + 1)
            for rows in (1_000, 2_000, 10_000, 100_000):
                now = before = 0
                method = ""
                draws = samples * 10 if rows == 1_000 else samples  # cheap: a tighter rate for the test
                for seed in range(draws):
                    rng = np.random.default_rng([categories, rows, seed])
                    reference = rng.choice(names, rows, p=weights / weights.sum())
                    current = rng.choice(names, rows, p=weights / weights.sum())
                    found = feature_drift("c", "categorical", reference, current)
                    method = found.method
                    now += found.level == "drift"
                    before += (found.score >= fixed) if method == "jensen_shannon" else found.level == "drift"
                table[f"{shares_name}, {categories} categories, {rows:,} rows"] = {
                    "method": method,
                    "samples": draws,
                    "false_drift_rate": round(now / draws, 3),
                    "false_drift_rate_fixed_threshold": round(before / draws, 3),
                }
    return {"samples": samples, "cells": table}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--csv-repeat", type=int, default=1, help="whole-digest runs from CSV files (slow: read row by row)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "drift.json")
    parser.add_argument(
        "--false-alarms-only",
        action="store_true",
        help="only part 3 (to --out, default drift_false_alarms.json)",
    )
    args = parser.parse_args()
    if args.false_alarms_only:
        out = (
            args.out
            if args.out != parser.get_default("out")
            else ROOT / "bench" / "results" / "drift_false_alarms.json"
        )
        return save({"false_alarms_without_drift": _false_alarms(args.samples)}, out)
    result = {
        "timing": _timing(args.rows, args.columns, args.repeat),
        "digest_from_parquet": _digest_timing(args.rows, args.columns, args.repeat, "parquet"),
        "digest_from_csv": _digest_timing(args.rows, args.columns, args.csv_repeat, "csv")
        if args.csv_repeat
        else None,
        "detection_rate_by_drift_size": _rates(args.samples),
        "false_alarms_without_drift": _false_alarms(args.samples),
    }
    return save(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
