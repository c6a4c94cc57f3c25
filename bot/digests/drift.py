"""Drift of each feature between a reference and a current sample, and of the data set as a whole.

The statistic is chosen by the feature's type and the reference sample's size, the way Evidently's
default data-drift preset does:

| Feature | Reference rows <= 1,000 | Reference rows > 1,000 |
|---|---|---|
| numeric | two-sample Kolmogorov-Smirnov test (p-value) | Wasserstein distance / reference std |
| categorical | chi-square test of homogeneity (p-value) | Jensen-Shannon distance (natural log) |

A numeric feature with five or fewer distinct values is compared as categories (chi-square, or
Jensen-Shannon). PSI (population stability index) is available for either type, and the method and
thresholds can be set per digest and per column (`Thresholds`). Missing values are left out of the
statistic and reported as their own change; infinities are left out with a note. A feature with too
few values to measure is "unchecked", never "ok". A distance over categories counts only beyond what
sampling alone gives at these sample sizes (`noise_floor`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Kind = Literal["numeric", "categorical"]
Method = Literal["ks", "chi2", "wasserstein", "jensen_shannon", "psi"]
# What a digest may ask for: a method, or "test" / "distance" (chosen by the column's type).
Choice = Literal["test", "distance", "ks", "chi2", "wasserstein", "jensen_shannon", "psi"]
Level = Literal["ok", "unchecked", "watch", "drift"]
LEVELS: tuple[Level, ...] = ("ok", "unchecked", "watch", "drift")  # in rising order of concern

NUMERIC_ONLY: frozenset[str] = frozenset({"ks", "wasserstein"})
FEW_VALUES = 5  # a numeric feature with at most this many distinct values is compared as categories
PSI_BINS = 10
_EPSILON = 1e-4  # an empty bin's share in PSI, so the logarithm stays finite
NOISE_DRAWS = 400  # samples drawn without drift to find a category distance's noise at these sizes
NOISE_WATCH, NOISE_DRIFT = 0.95, 0.99  # quantiles of that noise below which a distance is not counted


@dataclass(frozen=True)
class Thresholds:
    """How a feature is measured and where `watch` and `drift` begin (docs/reference.md, "How drift is
    measured").

    Tests: a p-value below the threshold; distances and PSI: at or above it.
    """

    p_value_drift: float = 0.05
    p_value_watch: float = 0.10
    distance_drift: float = 0.10
    distance_watch: float = 0.075
    psi_drift: float = 0.25
    psi_watch: float = 0.10
    missing_drift: float = 0.10  # rise of the missing-value share (absolute), e.g. 2 % -> 12 %
    missing_watch: float = 0.05
    dataset_share: float = 0.5  # share of drifting features at which the data set drifts
    dataset_more_than: bool = False  # False: at least `dataset_share`; True: more than it
    min_rows: int = 30  # fewer values than this in either sample: the feature is not checked
    small_sample: int = 1000  # reference values at or below this: `small_method`; above: `large_method`
    small_method: Choice = "test"
    large_method: Choice = "distance"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: the statistic used, its value, and the level it reaches."""

    feature: str
    kind: Kind
    method: Method
    score: float  # a p-value for ks and chi2, else a distance or the PSI; NaN when not checked
    level: Level
    reference_rows: int
    current_rows: int
    missing_reference: float = 0.0  # share of missing values
    missing_current: float = 0.0
    missing_level: Level = "ok"
    new_categories: tuple[str, ...] = ()
    threshold: float = math.nan  # where drift began for this feature (raised above noise, if it was)
    unchecked: str = ""  # why the distribution was not measured ("too few values", "no values")
    notes: tuple[str, ...] = ()  # e.g. infinities left out, compared as categories, threshold raised

    @property
    def worst(self) -> Level:
        """The higher of the distribution's level and the missing values' level."""
        return max(self.level, self.missing_level, key=LEVELS.index)


@dataclass(frozen=True)
class DatasetDrift:
    """The verdict over all features: drift at `dataset_share` of them; `unchecked` when any is."""

    features: tuple[FeatureDrift, ...]
    drifted_share: float
    level: Level
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def drifted(self) -> tuple[FeatureDrift, ...]:
        """The features at `drift` (distribution or missing values), most drifted first."""
        found = [feature for feature in self.features if feature.worst == "drift"]
        return tuple(sorted(found, key=severity, reverse=True))

    @property
    def unchecked(self) -> tuple[FeatureDrift, ...]:
        """The features whose distribution could not be measured."""
        return tuple(feature for feature in self.features if feature.level == "unchecked")


# ---- statistics on clean samples (missing values already removed)


def ks_p_value(reference: NDArray[np.float64], current: NDArray[np.float64]) -> float:
    """Two-sample Kolmogorov-Smirnov test: the p-value (small: the distributions differ)."""
    from scipy import stats

    return float(stats.ks_2samp(reference, current).pvalue)


def _counts(
    reference: Sequence[Any] | NDArray[Any], current: Sequence[Any] | NDArray[Any]
) -> tuple[list[str], NDArray[np.int64], NDArray[np.int64]]:
    """The categories of both samples and each sample's count of them (numbers: each distinct value)."""
    if isinstance(reference, np.ndarray) and reference.dtype.kind in "fiu":
        values, inverse = np.unique(np.concatenate([reference, np.asarray(current)]), return_inverse=True)
        ref = np.bincount(inverse[: reference.size], minlength=values.size)
        cur = np.bincount(inverse[reference.size :], minlength=values.size)
        return [format(v, "g") for v in values.tolist()], ref, cur
    ref_counts, cur_counts = Counter(reference), Counter(current)
    categories = sorted(set(ref_counts) | set(cur_counts))
    return (
        categories,
        np.array([ref_counts[c] for c in categories], dtype=np.int64),
        np.array([cur_counts[c] for c in categories], dtype=np.int64),
    )


def chi2_p_value(reference: Sequence[Any] | NDArray[Any], current: Sequence[Any] | NDArray[Any]) -> float:
    """Chi-square test of homogeneity over the categories of both samples: the p-value."""
    from scipy import stats

    categories, ref, cur = _counts(reference, current)
    if len(categories) < 2:
        return 1.0
    return float(stats.chi2_contingency(np.array([ref, cur]), correction=False).pvalue)


def wasserstein_normed(reference: NDArray[np.float64], current: NDArray[np.float64]) -> float:
    """Wasserstein (earth mover's) distance divided by the reference's standard deviation."""
    distance = _wasserstein(reference, current)
    return distance / max(float(np.std(reference)), 0.001)


def _wasserstein(u: NDArray[np.float64], v: NDArray[np.float64]) -> float:
    """The 1-D Wasserstein distance: the area between the two empirical distribution functions."""
    values = np.concatenate([u, v])
    order = np.argsort(values, kind="stable")
    from_u = order < u.size
    u_cdf = np.cumsum(from_u)[:-1] / u.size
    v_cdf = np.cumsum(~from_u)[:-1] / v.size
    return float(np.sum(np.abs(u_cdf - v_cdf) * np.diff(values[order])))


def _js_of_counts(p: NDArray[Any], q: NDArray[Any]) -> NDArray[np.float64]:
    """Jensen-Shannon distance (natural log) of count vectors, row by row (the last axis: categories)."""
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum(axis=-1)
    return np.asarray(np.sqrt(np.maximum((kl_p + kl_q) / 2, 0.0)), dtype=np.float64)


def _psi_of_counts(p: NDArray[Any], q: NDArray[Any]) -> NDArray[np.float64]:
    """PSI of count vectors, row by row: sum of (q - p) ln(q / p) over shares, empty ones at 1e-4."""
    p = np.clip(p / np.maximum(p.sum(axis=-1, keepdims=True), 1), _EPSILON, None)
    q = np.clip(q / np.maximum(q.sum(axis=-1, keepdims=True), 1), _EPSILON, None)
    return np.asarray(np.sum((q - p) * np.log(q / p), axis=-1), dtype=np.float64)


def jensen_shannon(reference: Sequence[Any] | NDArray[Any], current: Sequence[Any] | NDArray[Any]) -> float:
    """Jensen-Shannon distance (natural log, 0 to sqrt(ln 2)) between the category shares."""
    _, ref, cur = _counts(reference, current)
    return float(_js_of_counts(ref.astype(float), cur.astype(float)))


def psi(
    reference: NDArray[np.float64] | Sequence[str], current: NDArray[np.float64] | Sequence[str]
) -> float:
    """Population stability index: numeric values in the reference's deciles, or per category."""
    if isinstance(reference, np.ndarray) and reference.dtype.kind in "fiu":
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
        ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1)
        cur_share = np.bincount(
            np.searchsorted(edges, np.asarray(current, dtype=float), side="right"), minlength=edges.size + 1
        )
    else:
        _, ref_share, cur_share = _counts(reference, current)
    return float(_psi_of_counts(ref_share.astype(float), cur_share.astype(float)))


def noise_floor(
    reference_counts: NDArray[np.int64],
    current_counts: NDArray[np.int64],
    statistic: Callable[[NDArray[Any], NDArray[Any]], NDArray[np.float64]],
    quantiles: Sequence[float] = (NOISE_WATCH, NOISE_DRIFT),
) -> list[float]:
    """Quantiles of a category distance between two samples of these sizes without drift.

    The rows of both samples are shuffled between them (a permutation test: the category counts of
    the two together are kept, and each split is as likely as without drift), `NOISE_DRAWS` times with
    a fixed seed, so a digest gives the same answer on the same data. With many categories and few
    rows per category, two samples of one population are far apart by chance (at 200 categories and
    2,000 rows, Jensen-Shannon is about 0.15): a fixed threshold would call that drift.
    """
    pooled = reference_counts + current_counts
    rng = np.random.default_rng(0)
    draws = max(50, min(NOISE_DRAWS, 4_000_000 // max(pooled.size, 1)))
    batch = max(1, 4_000_000 // max(pooled.size, 1))  # memory: at most 4 M counts at a time
    found: list[NDArray[np.float64]] = []
    for start in range(0, draws, batch):
        size = min(batch, draws - start)
        ref = rng.multivariate_hypergeometric(
            pooled, int(reference_counts.sum()), size=size, method="marginals"
        )
        found.append(statistic(ref.astype(float), (pooled - ref).astype(float)))
    return [float(value) for value in np.quantile(np.concatenate(found), quantiles)]


# ---- one feature, one data set


def _missing(values: Sequence[object] | NDArray[Any]) -> NDArray[np.bool_]:
    """None, empty text and NaN, found with numpy's element-wise comparisons (no Python loop)."""
    array: NDArray[Any] = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if array.dtype.kind == "f":
        found: Any = np.isnan(array)
    elif array.dtype.kind == "U":
        found = array == ""
    elif array.dtype.kind != "O":
        found = np.zeros(array.shape, dtype=np.bool_)
    else:  # element-wise on objects: None, empty text, and NaN (the one value not equal to itself)
        found = (array == None) | (array == "") | (array != array)  # noqa: E711
    return np.asarray(found, dtype=np.bool_)


def _texts(values: Sequence[object] | NDArray[Any], missing: NDArray[np.bool_]) -> NDArray[Any]:
    """The values that are not missing, as text (an object array)."""
    kept = np.asarray(values, dtype=object)[~missing].tolist()
    return np.asarray(list(map(str, kept)), dtype=object)


def _distinct(values: NDArray[np.float64]) -> int:
    """The number of distinct values, counted in full only when the first 10,000 have few."""
    head = int(np.unique(values[:10_000]).size)
    return head if head > FEW_VALUES else int(np.unique(values).size)


def _level_of(score: float, drift: float, watch: float, lower_is_worse: bool) -> Level:
    if lower_is_worse:
        return "drift" if score < drift else "watch" if score < watch else "ok"
    return "drift" if score >= drift else "watch" if score >= watch else "ok"


def choose(kind: Kind, choice: Choice, distinct: int) -> Method:
    """The method a choice means for this feature: "test"/"distance" by type and distinct values."""
    as_categories = kind == "categorical" or distinct <= FEW_VALUES
    if choice == "test":
        return "chi2" if as_categories else "ks"
    if choice == "distance":
        return "jensen_shannon" if as_categories else "wasserstein"
    if kind == "categorical" and choice in NUMERIC_ONLY:
        raise ValueError(f"{choice} compares numbers; a categorical feature takes chi2, jensen_shannon, psi")
    return choice


def feature_drift(
    feature: str,
    kind: Kind,
    reference: Sequence[object] | NDArray[np.float64],
    current: Sequence[object] | NDArray[np.float64],
    limits: Thresholds | None = None,
    method: Choice | None = None,
) -> FeatureDrift:
    """The drift of one feature; `method` overrides the choice by type and size (e.g. "psi")."""
    limits = limits or Thresholds()
    ref_missing, cur_missing = _missing(reference), _missing(current)
    missing_ref = float(ref_missing.mean()) if ref_missing.size else 0.0
    missing_cur = float(cur_missing.mean()) if cur_missing.size else 0.0
    missing_level = _level_of(missing_cur - missing_ref, limits.missing_drift, limits.missing_watch, False)
    notes: list[str] = []
    ref: NDArray[Any]
    cur: NDArray[Any]
    if kind == "numeric":
        ref = np.asarray(reference, dtype=float)[~ref_missing]
        cur = np.asarray(current, dtype=float)[~cur_missing]
        infinite = int(np.isinf(ref).sum()), int(np.isinf(cur).sum())
        if any(infinite):  # as scipy's nan_policy and Evidently do with infinities: left out, and said
            ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
            notes.append(f"infinite values left out: {infinite[0]:,} reference, {infinite[1]:,} current")
        distinct = _distinct(np.concatenate([ref, cur]))
    else:
        ref, cur = _texts(reference, ref_missing), _texts(current, cur_missing)
        distinct = FEW_VALUES + 1  # not used for categories
    choice = method or (limits.small_method if ref.size <= limits.small_sample else limits.large_method)
    chosen = choose(kind, choice, distinct)
    if kind == "numeric" and chosen in ("chi2", "jensen_shannon"):
        notes.append(f"compared as categories ({distinct} distinct values)")
    new: tuple[str, ...] = ()
    if kind == "categorical":
        new = tuple(sorted(set(cur.tolist()) - set(ref.tolist())))
    lower_is_worse = chosen in ("ks", "chi2")
    drift_at, watch_at = (
        (limits.p_value_drift, limits.p_value_watch)
        if lower_is_worse
        else (limits.psi_drift, limits.psi_watch)
        if chosen == "psi"
        else (limits.distance_drift, limits.distance_watch)
    )
    unchecked = _too_few(ref.size, cur.size, limits.min_rows)
    score = math.nan
    if not unchecked:
        with np.errstate(all="ignore"):  # an overflow gives a score that is not finite: said below
            score, drift_at, watch_at = _score(chosen, kind, ref, cur, drift_at, watch_at, notes)
        if not math.isfinite(score):
            unchecked = "the statistic could not be computed on these values"
    return FeatureDrift(
        feature=feature,
        kind=kind,
        method=chosen,
        score=score,
        level="unchecked" if unchecked else _level_of(score, drift_at, watch_at, lower_is_worse),
        reference_rows=int(np.size(ref_missing)),
        current_rows=int(np.size(cur_missing)),
        missing_reference=missing_ref,
        missing_current=missing_cur,
        missing_level=missing_level,
        new_categories=new,
        threshold=drift_at,
        unchecked=unchecked,
        notes=tuple(notes),
    )


def _too_few(reference: int, current: int, minimum: int) -> str:
    """Why two samples of these sizes cannot be compared ("" when they can)."""
    empty = [side for side, size in (("reference", reference), ("current", current)) if size == 0]
    if empty:
        return f"no values in the {' and '.join(empty)} window"
    if min(reference, current) < minimum:
        return f"too few values ({reference:,} reference, {current:,} current; min_rows is {minimum:,})"
    return ""


def _score(
    method: Method,
    kind: Kind,
    ref: NDArray[Any],
    cur: NDArray[Any],
    drift_at: float,
    watch_at: float,
    notes: list[str],
) -> tuple[float, float, float]:
    """The statistic, and the drift and watch thresholds (a category distance's raised above noise)."""
    if method == "ks":
        return ks_p_value(ref, cur), drift_at, watch_at
    if method == "chi2":
        return chi2_p_value(ref, cur), drift_at, watch_at
    if method == "wasserstein":
        return wasserstein_normed(ref, cur), drift_at, watch_at
    if method == "psi" and kind == "numeric":
        return psi(ref, cur), drift_at, watch_at
    _, ref_counts, cur_counts = _counts(ref, cur)
    statistic = _js_of_counts if method == "jensen_shannon" else _psi_of_counts
    score = float(statistic(ref_counts.astype(float), cur_counts.astype(float)))
    # Beyond the noise, not at it: when every split gives the same distance (all values unique, say),
    # the sample's own distance equals the quantile up to rounding, and that is no evidence of drift.
    noise_watch, noise_drift = (
        value * (1 + 1e-9) + 1e-12 for value in noise_floor(ref_counts, cur_counts, statistic)
    )
    if noise_drift > drift_at:
        notes.append(f"drift threshold raised to {noise_drift:.3g}: the noise of samples this size")
    return score, max(drift_at, noise_drift), max(watch_at, noise_watch)


def dataset_drift(
    kinds: Mapping[str, Kind],
    reference: Mapping[str, Sequence[object] | NDArray[np.float64]],
    current: Mapping[str, Sequence[object] | NDArray[np.float64]],
    limits: Thresholds | None = None,
    columns: Mapping[str, Thresholds] | None = None,
) -> DatasetDrift:
    """Every feature's drift and the verdict: drift at `dataset_share`, watch when any feature moves,
    unchecked when none moves but one could not be measured. `columns` overrides `limits` per feature."""
    limits = limits or Thresholds()
    columns = columns or {}
    features = tuple(
        feature_drift(name, kind, reference[name], current[name], columns.get(name, limits))
        for name, kind in kinds.items()
    )
    share = sum(1 for f in features if f.worst == "drift") / len(features) if features else 0.0
    drifts = share > limits.dataset_share if limits.dataset_more_than else share >= limits.dataset_share
    worst = {f.worst for f in features}
    level: Level = (
        "drift"
        if features and drifts
        else "watch"
        if worst & {"watch", "drift"}
        else "unchecked"
        if "unchecked" in worst
        else "ok"
    )
    return DatasetDrift(features, share, level, limits)


def severity(feature: FeatureDrift) -> float:
    """How far past its drift threshold a feature is (1.0: at the threshold), comparable across methods."""
    if feature.level == "unchecked":
        return 0.0
    if feature.method in ("ks", "chi2"):
        return feature.threshold / max(feature.score, 1e-300)
    return feature.score / feature.threshold
