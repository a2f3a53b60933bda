"""Bootstrap intervals and the paired Wilcoxon test, by hand."""

from __future__ import annotations

import math

import pytest

from strokelrp.analysis.statistics import bootstrap_interval, paired_wilcoxon


def test_bootstrap_interval_by_hand() -> None:
    assert bootstrap_interval([0.3, 0.3, 0.3]) == (0.3, 0.3, 0.3)
    assert bootstrap_interval([0.7]) == (0.7, 0.7, 0.7)
    assert all(math.isnan(v) for v in bootstrap_interval([math.nan]))
    # two values 0 and 1: a resampled mean is 0, 0.5 or 1 (1/4, 1/2, 1/4); the 2.5 and 97.5
    # percentiles of 4000 draws are 0 and 1
    assert bootstrap_interval([0.0, 1.0, math.nan]) == (0.5, 0.0, 1.0)
    mean, low, high = bootstrap_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and 1.0 <= low < 2.5 < high <= 4.0


def test_paired_wilcoxon_by_hand() -> None:
    # five positive differences: the exact two-sided p is 2 / 2^5
    n, median, p = paired_wilcoxon([2, 4, 6, 8, 10], [1, 2, 3, 4, 5])
    assert (n, median) == (5, 3.0) and p == pytest.approx(2 / 32)
    # ranks 1, 2 positive and 3 negative: W+ = 3, W- = 3 -> p = 1
    assert paired_wilcoxon([1, 2, 0], [0, 0, 3])[2] == pytest.approx(1.0)
    assert math.isnan(paired_wilcoxon([1.0], [0.0])[2])
    assert math.isnan(paired_wilcoxon([1.0, 2.0], [1.0, 2.0])[2])


def test_paired_table_compares_methods_case_by_case() -> None:
    from strokelrp.analysis.statistics import paired_table

    rows = []
    for case, (a, b) in enumerate([(0.5, 0.1), (0.4, 0.2), (0.6, 0.1), (0.7, 0.3), (0.9, 0.2)]):
        rows.append({"case": str(case), "method": "A", "prior_gap": str(a)})
        rows.append({"case": str(case), "method": "B", "prior_gap": b})
    rows.append({"case": "9", "method": "A", "prior_gap": "1.0"})  # B has no case 9: unpaired
    (row,) = paired_table(rows, ["prior_gap"])
    assert (row["method"], row["other"], row["pairs"]) == ("A", "B", 5)
    assert row["median_difference"] == pytest.approx(0.4)  # 0.4, 0.2, 0.5, 0.4, 0.7
    assert row["p"] == pytest.approx(2 / 32)  # every difference positive: exact p
