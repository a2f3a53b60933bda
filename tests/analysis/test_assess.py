"""The pure trust measures on hand-computed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from strokelrp.analysis.assess import brain_share, lesion_share, ordering

F64 = torch.float64


def test_brain_and_lesion_shares_by_hand() -> None:
    x = np.zeros((2, 1, 2, 3))
    x[1, 0, 0, :] = 1.0  # brain: the first row (a perfusion channel is non-zero)
    r = np.zeros((2, 1, 2, 3))
    r[0, 0, 0, 0] = 3.0  # in the brain
    r[1, 0, 1, 2] = -1.0  # outside
    assert brain_share(r, x) == 0.75
    target = np.zeros((1, 2, 3), bool)
    target[0, 0, 0] = True
    r2 = np.zeros((1, 1, 2, 3))
    r2[0, 0, 0, 1] = 2.0  # a neighbour of the target: counted (1-voxel dilation)
    r2[0, 0, 1, 2] = 6.0  # two steps away: not counted
    r2[0, 0, 0, 0] = -5.0  # negative: ignored
    assert lesion_share(r2, target) == 0.25
    assert lesion_share(r2, target, grow=0) == 0.0
    assert math.isnan(brain_share(np.zeros_like(r), x))


def test_orderings_put_the_most_relevant_first_and_break_ties_reproducibly() -> None:
    r = torch.tensor([[[[0.1, 5.0, -3.0, 0.0]]]], dtype=F64)
    assert ordering(r, True).tolist() == [1, 0, 3, 2]
    assert ordering(r, False).tolist() == [2, 3, 0, 1]
    ties = torch.zeros(1, 1, 1, 50)
    assert torch.equal(ordering(ties, seed=3), ordering(ties, seed=3))
    assert sorted(ordering(ties).tolist()) == list(range(50))


def test_summary_checks_by_hand() -> None:
    """Every check reads the bootstrap interval of its mean: with identical cases the interval
    is the value; with spread, a mean that passes can fail on the interval's low end."""
    from strokelrp.analysis.assess import CHECKS, summarize_methods

    def row(case: str, method: str, gap: float, **kw: float) -> dict:
        base = dict(brain_share=0.95, lesion_share=0.6, morf_aopc=1.0, lerf_aopc=0.0,
                    random_aopc=0.1, random_gap=0.9, randomisation_rho=0.8, contrast_rho=0.5,
                    ablation_rho=0.5, randomisation_shell=0.1, contrast_gap=0.1)  # fmt: skip
        base.update(kw)
        return {"case": case, "method": method, "prior_gap": gap, **base}

    rows = [
        row("1", "good", 0.3),
        row("2", "good", 0.3, random_aopc=0.2),  # ratio 5 here: the median ratio is shown only
        row("3", "good", 0.3),
        row("1", "bad", 0.4, contrast_rho=-0.99, contrast_gap=0.7, randomisation_shell=0.3),
        row(
            "2",
            "bad",
            -0.2,
            contrast_rho=-0.97,
            contrast_gap=0.3,
            brain_share="",
            randomisation_shell=0.6,
        ),  # mean gap 0.1 > 0, but the interval of the two
    ]  # cases' mean reaches -0.2: not faithful; contrast_gap and randomisation_shell: the
    # means (0.5, 0.45) are inside the bounds, the intervals' ends (0.7, 0.6) are not
    good, bad = summarize_methods(rows)
    assert good["morf_over_random"] == 10.0 and good["passes"]
    assert (good["prior_gap"], good["prior_gap_low"], good["prior_gap_high"]) == (0.3, 0.3, 0.3)
    assert all(good[f"{k}_ok"] for k in CHECKS)
    assert bad["brain_share"] == 0.95 and not bad["contrast_ok"] and not bad["passes"]
    assert math.isclose(bad["contrast_rho"], -0.98)
    assert math.isclose(bad["prior_gap"], 0.1) and bad["prior_gap_low"] == -0.2
    assert not bad["faithful_ok"] and bad["beats_random_ok"]
    assert bad["contrast_gap_high"] == 0.7 and not bad["randomisation_ok"]
    assert math.isclose(bad["randomisation_shell"], 0.45)


def test_randomisation_leaves_out_seeds_with_an_undefined_correlation() -> None:
    """A constant re-initialised map has no rank correlation: the mean, min and max are over
    the seeds that have one (by hand), and all-undefined stays undefined."""
    from strokelrp.analysis.assess import _randomisation_summary

    got = _randomisation_summary([0.2, math.nan, 0.6])
    assert got["randomisation_rho"] == pytest.approx(0.4)
    assert (got["randomisation_rho_min"], got["randomisation_rho_max"]) == (0.2, 0.6)
    assert got["randomisation_seeds"] == 2
    none = _randomisation_summary([math.nan, math.nan])
    assert math.isnan(none["randomisation_rho"]) and none["randomisation_seeds"] == 0
