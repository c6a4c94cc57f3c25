"""Drift charts as PNG bytes: the reference-versus-current distribution of a model's most drifted column."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bot.digests.drift import FeatureDrift

_LOCK = threading.Lock()  # pyplot keeps global state; one chart at a time
MAX_CATEGORIES = 12


def distribution_png(
    model: str,
    feature: FeatureDrift,
    reference: NDArray[Any] | Sequence[Any],
    current: NDArray[Any] | Sequence[Any],
) -> bytes:
    """Histograms (numeric) or category shares (categorical) of both samples, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    from matplotlib import pyplot as plt

    with _LOCK:
        figure, axes = plt.subplots(figsize=(7, 3.6), dpi=100)
        try:
            if feature.kind == "numeric":
                _histograms(axes, np.asarray(reference, dtype=float), np.asarray(current, dtype=float))
            else:
                _shares(axes, reference, current)
            axes.set_title(
                f"{model}: {feature.feature} ({feature.method} {feature.score:.3g}, {feature.level})"
            )
            axes.legend()
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
        finally:
            plt.close(figure)
    return buffer.getvalue()


def _histograms(axes: Any, reference: NDArray[np.float64], current: NDArray[np.float64]) -> None:
    reference, current = reference[np.isfinite(reference)], current[np.isfinite(current)]
    both = np.concatenate([reference, current])
    low, high = np.quantile(both, [0.005, 0.995]) if both.size else (0.0, 1.0)
    bins = np.linspace(low, high if high > low else low + 1, 40)
    axes.hist(reference, bins=bins, density=True, alpha=0.55, label=f"reference ({reference.size:,})")
    axes.hist(current, bins=bins, density=True, alpha=0.55, label=f"current ({current.size:,})")
    axes.set_ylabel("density")


def _shares(
    axes: Any, reference: Sequence[Any] | NDArray[Any], current: Sequence[Any] | NDArray[Any]
) -> None:
    ref = Counter(str(v) for v in reference if v is not None)
    cur = Counter(str(v) for v in current if v is not None)
    names = [name for name, _ in (ref + cur).most_common(MAX_CATEGORIES)]
    positions = np.arange(len(names))
    ref_total, cur_total = max(sum(ref.values()), 1), max(sum(cur.values()), 1)
    axes.bar(positions - 0.2, [ref[n] / ref_total for n in names], width=0.4, label="reference")
    axes.bar(positions + 0.2, [cur[n] / cur_total for n in names], width=0.4, label="current")
    axes.set_xticks(positions, names, rotation=30, ha="right")
    axes.set_ylabel("share")
