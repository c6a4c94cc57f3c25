"""Drift of each feature between a reference and a current sample, and of the data set as a whole.

The statistic is chosen by the feature's type and the reference sample's size, the way Evidently's
default data-drift preset does:

| Feature | Reference rows <= 1,000 | Reference rows > 1,000 |
|---|---|---|
| numeric | two-sample Kolmogorov-Smirnov test (p-value) | Wasserstein distance / reference std |
| categorical | chi-square test of homogeneity (p-value) | Jensen-Shannon distance (natural log) |

PSI (population stability index) is available for either type. Missing values are left out of the
statistic and reported as their own change. Each feature gets one of three levels (thresholds in
`Thresholds`, documented in the README); the data set drifts when at least half its features do.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Kind = Literal["numeric", "categorical"]
Method = Literal["ks", "chi2", "wasserstein", "jensen_shannon", "psi"]
Level = Literal["ok", "watch", "drift"]
LEVELS: tuple[Level, ...] = ("ok", "watch", "drift")

SMALL_SAMPLE = 1000  # reference rows at or below this: statistical tests; above: distances
PSI_BINS = 10
_EPSILON = 1e-4  # an empty bin's share in PSI, so the logarithm stays finite


@dataclass(frozen=True)
class Thresholds:
    """Where `watch` and `drift` begin. Tests: p-value below; distances and PSI: at or above."""

    p_value_drift: float = 0.05
    p_value_watch: float = 0.10
    distance_drift: float = 0.10
    distance_watch: float = 0.075
    psi_drift: float = 0.25
    psi_watch: float = 0.10
    missing_drift: float = 0.10  # rise of the missing-value share (absolute), e.g. 2 % -> 12 %
    missing_watch: float = 0.05
    dataset_share: float = 0.5  # share of drifting features at which the data set drifts


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: the statistic used, its value, and the level it reaches."""

    feature: str
    kind: Kind
    method: Method
    score: float  # a p-value for ks and chi2, else a distance or the PSI
    level: Level
    reference_rows: int
    current_rows: int
    missing_reference: float = 0.0  # share of missing values
    missing_current: float = 0.0
    missing_level: Level = "ok"
    new_categories: tuple[str, ...] = ()

    @property
    def worst(self) -> Level:
        """The higher of the distribution's level and the missing values' level."""
        return max(self.level, self.missing_level, key=LEVELS.index)


@dataclass(frozen=True)
class DatasetDrift:
    """The verdict over all features: drift when at least `dataset_share` of them drift."""

    features: tuple[FeatureDrift, ...]
    drifted_share: float
    level: Level
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def drifted(self) -> tuple[FeatureDrift, ...]:
        """The features at `drift` (distribution or missing values), most drifted first."""
        found = [feature for feature in self.features if feature.worst == "drift"]
        return tuple(sorted(found, key=lambda f: severity(f, self.thresholds), reverse=True))


# ---- statistics on clean samples (missing values already removed)


def ks_p_value(reference: NDArray[np.float64], current: NDArray[np.float64]) -> float:
    """Two-sample Kolmogorov-Smirnov test: the p-value (small: the distributions differ)."""
    from scipy import stats

    return float(stats.ks_2samp(reference, current).pvalue)


def chi2_p_value(reference: Sequence[str], current: Sequence[str]) -> float:
    """Chi-square test of homogeneity over the categories of both samples: the p-value."""
    from scipy import stats

    ref_counts, cur_counts = Counter(reference), Counter(current)
    categories = sorted(set(ref_counts) | set(cur_counts))
    if len(categories) < 2:
        return 1.0
    table = np.array([[ref_counts[c] for c in categories], [cur_counts[c] for c in categories]])
    return float(stats.chi2_contingency(table, correction=False).pvalue)


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


def jensen_shannon(reference: Sequence[str], current: Sequence[str]) -> float:
    """Jensen-Shannon distance (natural log, 0 to sqrt(ln 2)) between the category shares."""
    ref_counts, cur_counts = Counter(reference), Counter(current)
    categories = sorted(set(ref_counts) | set(cur_counts))
    p = np.array([ref_counts[c] for c in categories], dtype=float)
    q = np.array([cur_counts[c] for c in categories], dtype=float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    divergence = (_kl(p, m) + _kl(q, m)) / 2
    return math.sqrt(max(divergence, 0.0))


def _kl(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


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
        ref_counts, cur_counts = Counter(reference), Counter(current)
        categories = sorted(set(ref_counts) | set(cur_counts))
        ref_share = np.array([ref_counts[c] for c in categories])
        cur_share = np.array([cur_counts[c] for c in categories])
    p = np.clip(ref_share / max(ref_share.sum(), 1), _EPSILON, None)
    q = np.clip(cur_share / max(cur_share.sum(), 1), _EPSILON, None)
    return float(np.sum((q - p) * np.log(q / p)))


# ---- one feature, one data set


def _level(method: Method, score: float, limits: Thresholds) -> Level:
    if method in ("ks", "chi2"):
        return "drift" if score < limits.p_value_drift else "watch" if score < limits.p_value_watch else "ok"
    drift, watch = (
        (limits.psi_drift, limits.psi_watch)
        if method == "psi"
        else (limits.distance_drift, limits.distance_watch)
    )
    return "drift" if score >= drift else "watch" if score >= watch else "ok"


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


def feature_drift(
    feature: str,
    kind: Kind,
    reference: Sequence[object] | NDArray[np.float64],
    current: Sequence[object] | NDArray[np.float64],
    limits: Thresholds | None = None,
    method: Method | None = None,
) -> FeatureDrift:
    """The drift of one feature; `method` overrides the choice by type and size (e.g. "psi")."""
    limits = limits or Thresholds()
    ref_missing, cur_missing = _missing(reference), _missing(current)
    missing_ref = float(ref_missing.mean()) if ref_missing.size else 0.0
    missing_cur = float(cur_missing.mean()) if cur_missing.size else 0.0
    rise = missing_cur - missing_ref
    missing_level: Level = (
        "drift" if rise >= limits.missing_drift else "watch" if rise >= limits.missing_watch else "ok"
    )
    new: tuple[str, ...] = ()
    if kind == "numeric":
        ref = np.asarray(reference, dtype=float)[~ref_missing]
        cur = np.asarray(current, dtype=float)[~cur_missing]
        chosen: Method = method or ("ks" if ref.size <= SMALL_SAMPLE else "wasserstein")
        if ref.size == 0 or cur.size == 0:
            score, chosen = (1.0, "ks") if chosen == "ks" else (0.0, chosen)
        elif chosen == "ks":
            score = ks_p_value(ref, cur)
        elif chosen == "psi":
            score = psi(ref, cur)
        else:
            chosen, score = "wasserstein", wasserstein_normed(ref, cur)
    else:
        ref_cats = list(map(str, np.asarray(reference, dtype=object)[~ref_missing].tolist()))
        cur_cats = list(map(str, np.asarray(current, dtype=object)[~cur_missing].tolist()))
        new = tuple(sorted(set(cur_cats) - set(ref_cats)))
        chosen = method or ("chi2" if len(ref_cats) <= SMALL_SAMPLE else "jensen_shannon")
        if not ref_cats or not cur_cats:
            score = 1.0 if chosen == "chi2" else 0.0
        elif chosen == "chi2":
            score = chi2_p_value(ref_cats, cur_cats)
        elif chosen == "psi":
            score = psi(ref_cats, cur_cats)
        else:
            chosen, score = "jensen_shannon", jensen_shannon(ref_cats, cur_cats)
    return FeatureDrift(
        feature=feature,
        kind=kind,
        method=chosen,
        score=score,
        level=_level(chosen, score, limits),
        reference_rows=int(np.size(ref_missing)),
        current_rows=int(np.size(cur_missing)),
        missing_reference=missing_ref,
        missing_current=missing_cur,
        missing_level=missing_level,
        new_categories=new,
    )


def dataset_drift(
    kinds: Mapping[str, Kind],
    reference: Mapping[str, Sequence[object] | NDArray[np.float64]],
    current: Mapping[str, Sequence[object] | NDArray[np.float64]],
    limits: Thresholds | None = None,
) -> DatasetDrift:
    """Every feature's drift and the verdict: drift at `dataset_share`, watch when any feature moves."""
    limits = limits or Thresholds()
    features = tuple(
        feature_drift(name, kind, reference[name], current[name], limits) for name, kind in kinds.items()
    )
    share = sum(1 for f in features if f.worst == "drift") / len(features) if features else 0.0
    level: Level = (
        "drift"
        if features and share >= limits.dataset_share
        else "watch"
        if any(f.worst != "ok" for f in features)
        else "ok"
    )
    return DatasetDrift(features, share, level, limits)


def severity(feature: FeatureDrift, limits: Thresholds) -> float:
    """How far past its drift threshold a feature is (1.0: at the threshold), comparable across methods."""
    if feature.method in ("ks", "chi2"):
        return limits.p_value_drift / max(feature.score, 1e-300)
    threshold = limits.psi_drift if feature.method == "psi" else limits.distance_drift
    return feature.score / threshold
