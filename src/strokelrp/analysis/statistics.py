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


PAIR_COLUMNS: tuple[str, ...] = ("measure", "method", "other", "pairs", "median_difference", "p")
"""The columns of ``assess_pairs.csv``, the companion table of ``assess.csv``."""

PAIRED_MEASURES: tuple[str, ...] = (
    "prior_gap",
    "random_gap",
    "morf_aopc",
    "lesion_share",
    "positive_adc",
    "positive_rcbf",
)
"""The measures compared between methods, case by case."""


def paired_table(
    rows: Sequence[dict[str, object]], measures: Sequence[str] = PAIRED_MEASURES
) -> list[dict[str, object]]:
    """Per measure and pair of methods (first-seen order, each pair once): the paired
    Wilcoxon test over the cases both have (:func:`paired_wilcoxon`, method minus other).
    ``rows``: ``assess.csv`` rows (numbers or strings; empty = undefined)."""

    def value(row: dict[str, object] | None, key: str) -> float:
        v = None if row is None else row.get(key)
        return math.nan if v in (None, "") else float(v)  # type: ignore[arg-type]

    methods: list[str] = []
    by: dict[tuple[str, str], dict[str, object]] = {}
    for row in rows:
        method = str(row["method"])
        if method not in methods:
            methods.append(method)
        by[(method, str(row["case"]))] = row
    cases = sorted({case for _, case in by})
    out: list[dict[str, object]] = []
    for measure in measures:
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                xs = [value(by.get((a, c)), measure) for c in cases]
                ys = [value(by.get((b, c)), measure) for c in cases]
                n, median, p = paired_wilcoxon(xs, ys)
                out.append(
                    {"measure": measure, "method": a, "other": b, "pairs": n,
                     "median_difference": median, "p": p}
                )  # fmt: skip
    return out
