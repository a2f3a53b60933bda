"""Intervals and paired tests for the per-case values of ``assess.csv`` (pure numpy / scipy).

A verdict on 2-4 held-out cases rests on a 95 % percentile-bootstrap interval of the mean
(:func:`bootstrap_interval`), and two methods are compared case by case with the paired
Wilcoxon signed-rank test (:func:`paired_wilcoxon`; exact for small samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_DRAWS = 4000
"""Resamples of the percentile bootstrap."""


def bootstrap_interval(
    values: Sequence[float], level: float = 0.95, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the finite ``values`` and the percentile-bootstrap
    ``level`` interval of the mean (``draws`` resamples with replacement, seeded); NaNs
    without a value. One value gives (v, v, v): no spread can be measured from it."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(draws, v.size))].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(v.mean()), float(low), float(high)


def paired_wilcoxon(a: Sequence[float], b: Sequence[float]) -> tuple[int, float, float]:
    """(pairs, median difference a - b, two-sided p) of the Wilcoxon signed-rank test on the
    pairs where both values are finite; p is NaN with fewer than 2 pairs or when every
    difference is 0."""
    from scipy.stats import wilcoxon

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    if not pairs:
        return 0, math.nan, math.nan
    d = np.array([x - y for x, y in pairs])
    median = float(np.median(d))
    if len(pairs) < 2 or not d.any():
        return len(pairs), median, math.nan
    return len(pairs), median, float(wilcoxon(d, alternative="two-sided").pvalue)
