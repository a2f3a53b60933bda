"""Mean normalised signal (paper fig. 5 D1) on hand-computed 2x2x2 maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strokelrp.analysis.distribution import mean_normalized_signal, normalize
from strokelrp.errors import StrokeLRPError


def vol(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(2, 2, 2)


R = np.stack(
    [
        vol([1, -2, 2, 1, 0, 0, 0, 0]),  # / 2 -> .5 -1 1 .5: sum 1, mean 1/8
        vol([4, 0, 0, 0, 0, 0, 0, 0]),  # / 4 -> 1: mean 1/8
        vol([0] * 8),  # no relevance: NaN (the paper's "invalid values")
    ]
)


def test_channel_scope_hand_computed() -> None:
    out = mean_normalized_signal(R)
    np.testing.assert_allclose(out[:2], [1 / 8, 1 / 8])
    assert np.isnan(out[2])


def test_global_scope_uses_the_map_maximum() -> None:
    # max |R| over the map = 4: ch0 -> .25 -.5 .5 .25 (sum .5), ch1 -> 1, ch2 -> 0
    np.testing.assert_allclose(mean_normalized_signal(R, scope="global"), [0.5 / 8, 1 / 8, 0.0])
    assert np.isnan(mean_normalized_signal(np.zeros((2, 2, 2, 2)), scope="global")).all()


def test_batched_settings_and_scale_invariance() -> None:
    batch = torch.tensor(np.stack([R, 3.0 * R, -R]))
    out = mean_normalized_signal(batch)
    assert out.shape == (3, 3)
    np.testing.assert_allclose(out[1, :2], out[0, :2])  # scaling a map changes nothing
    np.testing.assert_allclose(out[2, :2], -out[0, :2])  # the measure is signed


def test_normalize_range_and_bad_scope() -> None:
    n = normalize(R[:2])
    assert np.nanmax(np.abs(n)) == 1.0
    with pytest.raises(StrokeLRPError, match="scope"):
        mean_normalized_signal(R, scope="voxel")  # type: ignore[arg-type]
    with pytest.raises(StrokeLRPError, match=r"\(C, D, H, W\)"):
        mean_normalized_signal(np.ones((2, 2, 2)))
