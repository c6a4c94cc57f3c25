"""Drift statistics against scipy's reference values, the choice of statistic, levels, and the demo data."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from bot.demo.predictions import KINDS, NEW_CATEGORY, prediction_log
from bot.digests.charts import distribution_png
from bot.digests.drift import (
    Thresholds,
    chi2_p_value,
    dataset_drift,
    feature_drift,
    jensen_shannon,
    ks_p_value,
    psi,
    wasserstein_normed,
)

RNG = np.random.default_rng(7)
NORMAL = RNG.normal(0.0, 1.0, 800)
SHIFTED = RNG.normal(0.3, 1.2, 600)
COLOURS = list(RNG.choice(["red", "green", "blue"], 700, p=[0.5, 0.3, 0.2]))
OTHER_COLOURS = list(RNG.choice(["red", "green", "blue", "teal"], 500, p=[0.4, 0.3, 0.2, 0.1]))
START = dt.date(2026, 10, 1)


# ---- the statistics match scipy on fixed samples


def test_ks_is_scipys_two_sample_test() -> None:
    """The p-value of scipy.stats.ks_2samp."""
    assert ks_p_value(NORMAL, SHIFTED) == pytest.approx(stats.ks_2samp(NORMAL, SHIFTED).pvalue)


def test_chi_square_is_the_homogeneity_test_over_both_samples_categories() -> None:
    """scipy.stats.chi2_contingency on the 2 x k table of counts, a category new in one sample included."""
    categories = ["blue", "green", "red", "teal"]
    table = [[COLOURS.count(c) for c in categories], [OTHER_COLOURS.count(c) for c in categories]]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert chi2_p_value(COLOURS, OTHER_COLOURS) == pytest.approx(expected)


def test_wasserstein_is_scipys_distance_over_the_reference_std() -> None:
    """scipy.stats.wasserstein_distance divided by the reference's standard deviation."""
    expected = stats.wasserstein_distance(NORMAL, SHIFTED) / np.std(NORMAL)
    assert wasserstein_normed(NORMAL, SHIFTED) == pytest.approx(expected, rel=1e-9)


def test_jensen_shannon_is_scipys_distance_of_the_category_shares() -> None:
    """scipy.spatial.distance.jensenshannon (natural log) of the shares over the union of categories."""
    categories = ["blue", "green", "red", "teal"]
    p = np.array([COLOURS.count(c) for c in categories], dtype=float)
    q = np.array([OTHER_COLOURS.count(c) for c in categories], dtype=float)
    expected = distance.jensenshannon(p / p.sum(), q / q.sum())
    assert jensen_shannon(COLOURS, OTHER_COLOURS) == pytest.approx(expected, rel=1e-9)


def test_psi_by_hand_for_categories() -> None:
    """Sum of (q - p) ln(q / p) over the categories."""
    reference, current = ["a"] * 50 + ["b"] * 50, ["a"] * 30 + ["b"] * 70
    by_hand = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.7 - 0.5) * math.log(0.7 / 0.5)
    assert psi(reference, current) == pytest.approx(by_hand)


def test_psi_of_a_sample_against_itself_is_zero_and_grows_with_a_shift() -> None:
    """Deciles of the reference: the same sample scores 0; a one-std shift scores far above 0.25."""
    assert psi(NORMAL, NORMAL) == pytest.approx(0.0)
    assert psi(NORMAL, NORMAL + 1.0) > 0.25


# ---- choice of statistic, levels, missing values


@pytest.mark.parametrize(
    ("kind", "rows", "method"),
    [
        ("numeric", 1000, "ks"),
        ("numeric", 1001, "wasserstein"),
        ("categorical", 1000, "chi2"),
        ("categorical", 1001, "jensen_shannon"),
    ],
)
def test_the_statistic_follows_type_and_reference_size(kind: str, rows: int, method: str) -> None:
    """Tests for up to 1,000 reference rows, distances above, as Evidently chooses them."""
    values = list(RNG.normal(size=rows)) if kind == "numeric" else list(RNG.choice(["x", "y"], rows))
    assert feature_drift("f", kind, values, values[:200]).method == method  # type: ignore[arg-type]


def test_levels_follow_the_thresholds() -> None:
    """A p-value below 0.05 drifts, below 0.10 is watched; a distance of 0.1 drifts, 0.075 is watched."""
    same = feature_drift("x", "numeric", NORMAL, NORMAL)
    assert same.level == "ok" and same.score == pytest.approx(1.0)
    assert feature_drift("x", "numeric", NORMAL, NORMAL + 0.5).level == "drift"
    big = RNG.normal(size=5000)
    assert feature_drift("x", "numeric", big, big + 0.08).level == "watch"
    assert feature_drift("x", "numeric", big, big + 0.2).level == "drift"
    strict = Thresholds(distance_drift=0.5, distance_watch=0.3)
    assert feature_drift("x", "numeric", big, big + 0.2, strict).level == "ok"


def test_missing_values_are_left_out_and_their_rise_is_reported() -> None:
    """NaN and None do not enter the statistic; a rise from 0 % to 20 % missing is drift on its own."""
    current = NORMAL.copy()
    current[: len(current) // 5] = np.nan
    found = feature_drift("age", "numeric", NORMAL, current)
    assert found.level == "ok" and found.missing_current == pytest.approx(0.2)
    assert found.missing_level == "drift" and found.worst == "drift"
    colours = [None if i % 15 == 0 else c for i, c in enumerate(COLOURS)]  # 6.7 % missing
    assert feature_drift("colour", "categorical", COLOURS, colours).missing_level == "watch"


def test_new_categories_are_named() -> None:
    """A category the reference never had is listed."""
    assert feature_drift("colour", "categorical", COLOURS, OTHER_COLOURS).new_categories == ("teal",)


def test_the_data_set_drifts_when_half_its_features_do() -> None:
    """Two of four features drifting is a data-set drift; one is a watch."""
    kinds = {"a": "numeric", "b": "numeric", "c": "numeric", "d": "numeric"}
    reference = dict.fromkeys(kinds, NORMAL)
    one = dataset_drift(kinds, reference, {**reference, "a": NORMAL + 1})  # type: ignore[arg-type]
    assert one.level == "watch" and one.drifted_share == 0.25 and [f.feature for f in one.drifted] == ["a"]
    two = dataset_drift(kinds, reference, {**reference, "a": NORMAL + 1, "b": NORMAL + 2})  # type: ignore[arg-type]
    assert two.level == "drift" and [f.feature for f in two.drifted] == ["b", "a"]  # most drifted first


# ---- the demo data


@pytest.mark.parametrize("rows_per_day", [60, 2000])
def test_the_injected_drift_is_found(rows_per_day: int) -> None:
    """Small samples (tests) and large ones (distances) find amount, the new category, missing ages."""
    log = prediction_log(START, days=28, rows_per_day=rows_per_day, drift_from=START + dt.timedelta(days=21))
    reference = log.between(START, START + dt.timedelta(days=13)).columns
    current = log.between(START + dt.timedelta(days=21), START + dt.timedelta(days=27)).columns
    result = dataset_drift(KINDS, reference, current)
    by_name = {feature.feature: feature for feature in result.features}
    assert by_name["amount"].level == "drift"
    assert by_name["merchant_category"].level == "drift"
    assert by_name["merchant_category"].new_categories == (NEW_CATEGORY,)
    assert by_name["account_age_days"].missing_level == "drift"
    assert result.level == "drift"


def test_without_drift_at_most_5_of_100_samples_raise_a_false_alarm() -> None:
    """The same generator without drift: 100 pairs of independent weeks, at most 5 data-set drift verdicts."""
    alarms = 0
    for seed in range(100):
        reference = prediction_log(START, days=7, rows_per_day=100, seed=seed).columns
        current = prediction_log(START, days=7, rows_per_day=100, seed=1000 + seed).columns
        alarms += dataset_drift(KINDS, reference, current).level == "drift"
    assert alarms <= 5


@pytest.mark.parametrize(("feature", "kind"), [("amount", "numeric"), ("merchant_category", "categorical")])
def test_a_chart_of_both_samples_is_a_png(feature: str, kind: str) -> None:
    """The reference-versus-current distribution of a column renders to PNG bytes."""
    log = prediction_log(START, days=14, rows_per_day=100, drift_from=START + dt.timedelta(days=7))
    reference = log.between(START, START + dt.timedelta(days=6)).columns[feature]
    current = log.between(START + dt.timedelta(days=7), START + dt.timedelta(days=13)).columns[feature]
    found = feature_drift(feature, kind, reference, current)  # type: ignore[arg-type]
    png = distribution_png("fraud-scorer", found, reference, current)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


# ---- never "ok" when it could not measure (issue 15, item 10)


@pytest.mark.parametrize(("rows", "method"), [(800, "ks"), (3000, "wasserstein")])
def test_infinities_are_left_out_with_a_note_and_a_shift_is_still_found(rows: int, method: str) -> None:
    """A 1-std shift with a few infinities: scipy's statistic on the finite values, drift, and a note."""
    rng = np.random.default_rng(11)
    reference, current = rng.normal(0.0, 1.0, rows), rng.normal(1.0, 1.0, rows)
    current[:5], reference[:2] = np.inf, -np.inf
    found = feature_drift("amount", "numeric", reference, current)
    ref, cur = reference[np.isfinite(reference)], current[np.isfinite(current)]
    expected = (
        stats.ks_2samp(ref, cur).pvalue
        if method == "ks"
        else stats.wasserstein_distance(ref, cur) / np.std(ref)
    )
    assert found.method == method and found.score == pytest.approx(expected, rel=1e-9)
    assert found.level == "drift"
    assert found.notes == ("infinite values left out: 2 reference, 5 current",)


@pytest.mark.parametrize(
    ("kind", "reference", "current", "reason"),
    [
        ("numeric", [math.nan] * 200, list(NORMAL), "no values in the reference window"),
        ("categorical", [None] * 200, COLOURS, "no values in the reference window"),
        ("numeric", [0.1], list(NORMAL + 3), "too few values (1 reference, 800 current; min_rows is 30)"),
        ("categorical", COLOURS, ["teal"] * 12, "too few values (700 reference, 12 current; min_rows is 30)"),
    ],
)
def test_a_column_with_no_or_too_few_values_is_not_checked(
    kind: str, reference: list[object], current: list[object], reason: str
) -> None:
    """All null, or below min_rows, on either side: "unchecked" with the reason, never ok, never drift."""
    found = feature_drift("f", kind, reference, current)  # type: ignore[arg-type]
    assert found.level == "unchecked" and found.unchecked == reason
    assert found.worst == "unchecked" and math.isnan(found.score)
    verdict = dataset_drift(
        {"f": kind, "g": "numeric"}, {"f": reference, "g": NORMAL}, {"f": current, "g": NORMAL}
    )  # type: ignore[dict-item]
    assert verdict.level == "unchecked" and [f.feature for f in verdict.unchecked] == ["f"]


def test_min_rows_is_a_threshold() -> None:
    """Twelve values each are measured when min_rows allows it."""
    found = feature_drift("f", "numeric", NORMAL[:12], NORMAL[:12] + 5, Thresholds(min_rows=10))
    assert found.level == "drift" and found.score == pytest.approx(
        stats.ks_2samp(NORMAL[:12], NORMAL[:12] + 5).pvalue
    )


def test_a_statistic_that_is_not_a_number_is_never_ok() -> None:
    """Values so large that the distance overflows to NaN: the column is not checked, not ok."""
    huge = np.array([sign * 1e308 * (1 + step / 1000) for sign in (-1, 1) for step in range(6)] * 100)
    found = feature_drift("f", "numeric", huge, huge)
    assert (
        found.level == "unchecked"
        and found.unchecked == "the statistic could not be computed on these values"
    )


def test_a_rise_to_all_missing_is_still_reported_as_missing_values() -> None:
    """A current window with no values: the distribution is not checked, the missing values drift."""
    found = feature_drift("f", "numeric", NORMAL, [math.nan] * 300)
    assert found.level == "unchecked" and found.unchecked == "no values in the current window"
    assert found.missing_current == 1.0 and found.worst == "drift"


# ---- few distinct values, many categories (issue 15, item 13)


@pytest.mark.parametrize(("rows", "method"), [(600, "chi2"), (4000, "jensen_shannon")])
def test_a_numeric_column_with_five_or_fewer_values_is_compared_as_categories(rows: int, method: str) -> None:
    """Evidently's rule: at most 5 distinct values (both samples) -> chi-square or Jensen-Shannon."""
    rng = np.random.default_rng(5)
    reference = rng.choice([0.0, 1.0, 2.0, 3.0, 4.0], rows, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    current = rng.choice([0.0, 1.0, 2.0, 3.0, 4.0], rows, p=[0.2, 0.3, 0.2, 0.2, 0.1])
    found = feature_drift("plan", "numeric", reference, current)
    ref_counts = np.array([(reference == v).sum() for v in range(5)])
    cur_counts = np.array([(current == v).sum() for v in range(5)])
    expected = (
        stats.chi2_contingency([ref_counts, cur_counts], correction=False).pvalue
        if method == "chi2"
        else distance.jensenshannon(ref_counts / rows, cur_counts / rows)
    )
    assert found.method == method and found.score == pytest.approx(expected, rel=1e-9)
    assert found.notes == ("compared as categories (5 distinct values)",)
    six = np.concatenate([reference, [5.0]])
    assert feature_drift("plan", "numeric", six, current).method == ("ks" if rows <= 1000 else "wasserstein")


@pytest.mark.parametrize(("categories", "shares"), [(200, "even"), (500, "zipf")])
def test_many_categories_without_drift_raise_no_false_alarm_and_a_shift_is_still_found(
    categories: int, shares: str
) -> None:
    """Jensen-Shannon at 200 even or 500 Zipf categories and 2,000 rows: at most 1 false drift in 20
    (20 in 20 before the noise floor); a tilt of the shares still drifts."""
    names = np.array([f"c{i}" for i in range(categories)], dtype=object)
    weights = np.ones(categories) if shares == "even" else 1.0 / np.arange(1, categories + 1)
    alarms = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        same = weights / weights.sum()
        found = feature_drift(
            "merchant", "categorical", rng.choice(names, 2000, p=same), rng.choice(names, 2000, p=same)
        )
        assert found.method == "jensen_shannon"
        alarms += found.level == "drift"
    assert alarms <= 1
    rng = np.random.default_rng(99)
    tilted = weights * np.linspace(1.0, 4.0, categories)
    reference = rng.choice(names, 2000, p=weights / weights.sum())
    shifted = rng.choice(names, 2000, p=tilted / tilted.sum())
    found = feature_drift("merchant", "categorical", reference, shifted)
    p = np.array([(reference == c).sum() for c in names], dtype=float)
    q = np.array([(shifted == c).sum() for c in names], dtype=float)
    assert found.score == pytest.approx(distance.jensenshannon(p / p.sum(), q / q.sum()), rel=1e-9)
    assert found.level == "drift" and found.threshold > 0.1  # raised above the noise, and still passed


def test_a_category_distance_must_pass_its_noise_not_equal_it() -> None:
    """Every value unique (an id): every split is as far apart, so no drift; one value replaced by
    another is."""
    ids = feature_drift("id", "categorical", [f"a{i}" for i in range(3000)], [f"b{i}" for i in range(3000)])
    assert ids.level == "ok" and ids.score == pytest.approx(math.sqrt(math.log(2)))
    swapped = feature_drift("plan", "categorical", ["x"] * 2000, ["y"] * 2000)
    assert swapped.level == "drift" and swapped.new_categories == ("y",)
