"""Relevance shares per modality, inside the lesion, and on informative modalities."""

from __future__ import annotations

import numpy as np
import pytest

from strokelrp.analysis.shares import (
    informative_mask,
    informative_share,
    lesion_shares,
    modality_shares,
    share_summary,
    uniform_expectation,
)
from strokelrp.config import MODALITIES
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


def test_informative_share_against_uniform_expectation() -> None:
    shares = modality_shares(six_channel_map())
    assert informative_share(shares, ["adc", "MTT"]) == pytest.approx(1.0)
    assert informative_share(shares, [1]) == pytest.approx(0.25)
    assert uniform_expectation(["ADC", "MTT"]) == pytest.approx(2 / 6)
    assert uniform_expectation(["ADC", 0]) == pytest.approx(1 / 6)  # the same channel twice


def test_informative_mask_rejects_unknown_names() -> None:
    np.testing.assert_array_equal(informative_mask(["Tmax"]), [0, 0, 0, 0, 1, 0])
    with pytest.raises(StrokeLRPError, match="DWI"):
        informative_mask(["DWI"])


def summary_rows(case: str, shares: list[float], lesion: list[float], inf: list) -> list[dict]:
    return [
        {
            "series": "A",
            "setting": "raw",
            "run": "r",
            "case": case,
            "modality": m,
            "relevance_share": s,
            "lesion_share": ls,
            "informative": f,
        }
        for m, s, ls, f in zip(MODALITIES, shares, lesion, inf, strict=True)
    ]


def test_share_summary_hand_computed() -> None:
    nan = float("nan")
    rows = [
        # map 1: informative share 0.5 (ADC) vs uniform 1/6; lesion .5*1 + .25*0 + .25*.5 = .625
        *summary_rows(
            "1",
            [0.5, 0.25, 0.25, 0, 0, 0],
            [1, 0, 0.5, nan, nan, nan],
            [True, False, False, False, False, False],
        ),
        # map 2: no positive relevance: counted, but has no shares
        *summary_rows("2", [nan] * 6, [nan] * 6, [True] + [False] * 5),
        # map 3: every modality informative: nothing to compare; lesion share 1 * .25 = .25
        *summary_rows("3", [1, 0, 0, 0, 0, 0], [0.25, nan, nan, nan, nan, nan], [True] * 6),
    ]
    [s] = share_summary(rows)
    assert s["n_maps"] == 3 and s["n_informative_maps"] == 1
    assert s["informative_share"] == pytest.approx(0.5)
    assert s["uniform_expectation"] == pytest.approx(1 / 6)
    assert s["lesion_share"] == pytest.approx((0.625 + 0.25) / 2)
