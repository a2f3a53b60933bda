"""Localisation measures on hand-computed maps."""

from __future__ import annotations

import math

import numpy as np

from strokelrp.analysis.localisation import (
    context_share,
    mass_accuracy,
    pointing_game,
    positive_share,
    rank_accuracy,
)


def test_localisation_by_hand() -> None:
    r = np.zeros((2, 1, 1, 5))
    r[0, 0, 0] = [4.0, 1.0, 0.0, 2.0, -3.0]
    r[1, 0, 0] = [0.0, 1.0, 0.0, 0.0, 0.0]  # voxel map: 4, 2, 0, 2, -3
    mask = np.array([[[True, False, True, False, False]]])
    assert mass_accuracy(r, mask) == 4.0 / 8.0
    # the 2 highest voxels: 4 (in) and a tie of 2 at voxels 1 and 3 (both out): 1 of 2
    assert rank_accuracy(r, mask) == 0.5
    mask2 = np.array([[[False, True, False, False, False]]])
    # one place, the tie of two voxels at 2 shares it: voxel 1 is in -> 1/2
    r2 = r.copy()
    r2[0, 0, 0, 0] = -1.0
    assert rank_accuracy(r2, mask2) == 0.5
    assert pointing_game(r, mask) == 1.0 and pointing_game(r, mask2) == 0.0
    assert context_share(r, mask) == 0.5
    assert math.isnan(rank_accuracy(r, np.zeros_like(mask)))
    # ADC (channel 0) in the mask {0, 4}: +4 and -3 -> 4 / 7 positive
    lesion = np.array([[[True, False, False, False, True]]])
    assert positive_share(r, lesion, 0) == 4.0 / 7.0
    assert math.isnan(positive_share(r, lesion, 1))
