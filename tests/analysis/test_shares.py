"""Relevance shares per modality, inside the lesion, and against the modalities' ablation."""

from __future__ import annotations

import numpy as np
import pytest

from strokelrp.analysis.shares import (
    ablation_rho,
    abs_modality_shares,
    lesion_shares,
    modality_shares,
    share_summary,
    spearman,
)
from strokelrp.data.layouts.isles2017 import CHANNELS as MODALITIES
from strokelrp.errors import StrokeLRPError


def six_channel_map() -> np.ndarray:
    r = np.zeros((6, 2, 2, 2))
    r[0].flat[:3] = [1.0, -1.0, 2.0]  # positive relevance 3
    r[1].flat[1] = 1.0  # positive relevance 1
    r[2].flat[0] = -5.0  # negative only: no positive relevance
    return r


def test_modality_shares_count_only_positive_relevance() -> None:
    # total positive = 3 + 1 = 4
    np.testing.assert_allclose(modality_shares(six_channel_map()), [0.75, 0.25, 0, 0, 0, 0])


def test_modality_shares_batched_and_undefined() -> None:
    batch = np.stack([six_channel_map(), -np.abs(six_channel_map())])
    out = modality_shares(batch)
    assert out.shape == (2, 6)
    assert np.isnan(out[1]).all()  # no positive relevance anywhere


def test_lesion_shares_per_channel() -> None:
    label = np.zeros((2, 2, 2), dtype=np.uint8)
    label.flat[[0, 1]] = 1
    out = lesion_shares(six_channel_map(), label)
    # ch0: inside = voxel 0 (1) + voxel 1 (-1 -> 0) = 1 of 3; ch1: voxel 1 inside = 1 of 1
    np.testing.assert_allclose(out[:2], [1 / 3, 1.0])
    assert np.isnan(out[2:]).all()  # no positive relevance: undefined


def test_lesion_shares_shape_mismatch() -> None:
    with pytest.raises(StrokeLRPError, match="share"):
        lesion_shares(six_channel_map(), np.zeros((2, 2, 3)))


def test_spearman_against_pearson_of_hand_ranks() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks (1, 2.5, 2.5, 4), y ranks (2, 1, 4, 3)
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([2, 1, 4, 3])
    expected = np.corrcoef(rx, ry)[0, 1]
    assert spearman([0.1, 0.5, 0.5, 0.9], [3, 1, 9, 5]) == pytest.approx(expected)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(StrokeLRPError, match="equal"):
        spearman([1, 2], [1, 2, 3])
    assert np.isnan(spearman([1, np.nan, 3], [1, 2, 3]))


@pytest.mark.parametrize("seed", range(5))
def test_spearman_equals_scipy_with_ties(seed: int) -> None:
    """Against the independent reference scipy.stats.spearmanr (ties: few distinct values)."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, 40).astype(float)
    b = a * rng.choice([-1.0, 0.5, 2.0]) + rng.normal(size=40)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_abs_modality_shares_and_ablation_rho_by_hand() -> None:
    # |R| per channel: 1 + 1 + 2 = 4, 1, 5 -> total 10
    np.testing.assert_allclose(abs_modality_shares(six_channel_map()), [0.4, 0.1, 0.5, 0, 0, 0])
    assert np.isnan(abs_modality_shares(np.zeros((2, 1, 1, 1)))).all()
    batch = abs_modality_shares(np.stack([six_channel_map(), 2 * six_channel_map()]))
    np.testing.assert_allclose(batch[0], batch[1])
    # shares ranked (2, 1, 3, 0...) against drops ranked the same: +1; reversed: -1
    shares = abs_modality_shares(six_channel_map())
    assert ablation_rho(shares, [0.2, 0.1, 0.3, 0, 0, 0]) == pytest.approx(1.0)
    assert ablation_rho(shares, [-0.2, -0.1, -0.3, 0, 0, 0]) == pytest.approx(-1.0)


def summary_rows(
    case: str, shares: list[float], lesion: list[float], drop: list, abs_shares: list | None = None
) -> list[dict]:
    """One map's six rows; ``abs_shares`` (shares of |R|) default to the positive shares."""
    abs_shares = shares if abs_shares is None else abs_shares
    return [
        {
            "series": "A",
            "setting": "raw",
            "run": "r",
            "case": case,
            "modality": m,
            "relevance_share": s,
            "lesion_share": ls,
            "ablation_drop": d,
            "abs_share": a,
        }
        for m, s, ls, d, a in zip(MODALITIES, shares, lesion, drop, abs_shares, strict=True)
    ]


def test_share_summary_hand_computed() -> None:
    nan = float("nan")
    rows = [
        # map 1: drops rank ADC > MTT > rCBF, the others ignored (|drop| < 0.01): shares on
        # the ignored ones 0 vs uniform 3/6; lesion .5*1 + .25*0 + .25*.5 = .625
        *summary_rows(
            "1",
            [0.5, 0.25, 0.25, 0, 0, 0],
            [1, 0, 0.5, nan, nan, nan],
            [0.3, 0.2, 0.1, 0.0, 0.005, -0.002],
        ),
        # map 2: no positive relevance: counted, but has no shares
        *summary_rows("2", [nan] * 6, [nan] * 6, [0.3] * 6),
        # map 3: no drop measured (an older table): lesion share 1 * .25 = .25 only
        *summary_rows("3", [1, 0, 0, 0, 0, 0], [0.25, nan, nan, nan, nan, nan], [nan] * 6),
        # map 4: every modality matters: no ignored ones to compare; shares anti-ranked
        *summary_rows(
            "4", [0, 0, 0, 0, 0.5, 0.5], [nan, nan, nan, nan, 0, 0], [0.6] * 4 + [0.1] * 2
        ),
    ]
    [s] = share_summary(rows)
    assert s["n_maps"] == 4 and s["n_ablation_maps"] == 2 and s["n_ignored_maps"] == 1
    assert s["ignored_share"] == pytest.approx(0.0)
    assert s["ignored_uniform"] == pytest.approx(0.5)
    rho1 = np.corrcoef([6, 4.5, 4.5, 2, 2, 2], [6, 5, 4, 2, 3, 1])[0, 1]  # average ranks
    rho4 = np.corrcoef([2.5, 2.5, 2.5, 2.5, 5.5, 5.5], [4.5, 4.5, 4.5, 4.5, 1.5, 1.5])[0, 1]
    assert s["ablation_rho"] == pytest.approx((rho1 + rho4) / 2)
    assert s["lesion_share"] == pytest.approx((0.625 + 0.25 + 0.5 * 0 + 0.5 * 0) / 3)


def test_share_summary_ranks_the_shares_of_abs_relevance() -> None:
    """ablation_rho uses the |R| shares (as assess does), not the positive ones; a table
    without them (written before) has no ablation_rho."""
    drops = [0.3, 0.2, 0.1, 0.05, 0.02, 0.0]
    positive = [0.0, 0.0, 0.1, 0.2, 0.3, 0.4]  # anti-ranked
    absolute = [0.4, 0.3, 0.1, 0.1, 0.06, 0.04]  # ranked like the drops, one tie
    [s] = share_summary(summary_rows("1", positive, [0.0] * 6, drops, absolute))
    want = np.corrcoef([6, 5, 3.5, 3.5, 2, 1], [6, 5, 4, 3, 2, 1])[0, 1]
    assert s["ablation_rho"] == pytest.approx(want)
    old = [
        {k: v for k, v in r.items() if k != "abs_share"}
        for r in summary_rows("1", positive, [0.0] * 6, drops)
    ]
    [s] = share_summary(old)
    assert np.isnan(s["ablation_rho"]) and s["n_ablation_maps"] == 0
