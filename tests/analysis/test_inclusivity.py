"""Inclusivity and binarisation on hand-computed 2x2x2 masks and maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strokelrp.analysis.inclusivity import (
    binarize_input,
    binarize_relevance,
    ground_truth_inclusivity,
    inclusivity,
    input_inclusivity,
)
from strokelrp.core.volumes import resize_volume
from strokelrp.errors import StrokeLRPError


def vol(values: list[float]) -> np.ndarray:
    """Eight values in C order as a (2, 2, 2) volume."""
    return np.asarray(values, dtype=np.float64).reshape(2, 2, 2)


def test_inclusivity_half_of_b_inside_a() -> None:
    a = vol([1, 1, 0, 0, 0, 0, 0, 0]).astype(bool)
    b = vol([1, 0, 1, 0, 0, 0, 0, 0]).astype(bool)
    # |a ∩ b| = 1 (first voxel), |b| = 2
    assert inclusivity(a, b, smoothing=0.0) == 0.5
    assert inclusivity(a, b) == pytest.approx(1 / (2 + 1e-6), abs=0)


def test_inclusivity_is_not_symmetric() -> None:
    a = vol([1, 1, 1, 1, 0, 0, 0, 0])
    b = vol([1, 0, 0, 0, 0, 0, 0, 0])
    assert inclusivity(a, b, smoothing=0.0) == 1.0  # b inside a
    assert inclusivity(b, a, smoothing=0.0) == 0.25  # 1 of a's 4 voxels inside b


def test_inclusivity_of_empty_b_is_zero_not_nan() -> None:
    empty = np.zeros((2, 2, 2), dtype=bool)
    assert inclusivity(vol([1] * 8), empty, smoothing=0.0) == 0.0
    assert inclusivity(empty, empty) == 0.0


def test_inclusivity_accepts_torch() -> None:
    a = torch.tensor(vol([1, 1, 0, 0, 0, 0, 0, 0]) > 0)
    b = torch.tensor(vol([0, 1, 1, 1, 0, 0, 0, 0]) > 0)
    assert inclusivity(a, b, smoothing=0.0) == pytest.approx(1 / 3)


def test_inclusivity_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(StrokeLRPError, match=r"\(2, 2, 2\).*\(2, 2\)"):
        inclusivity(np.ones((2, 2, 2)), np.ones((2, 2)))


def test_binarize_relevance_per_channel_strictly_above_threshold() -> None:
    r = np.stack(
        [
            vol([0.6, -1.0, 0.4, 0.5, 0, 0, 0, 0]),  # max |R| = 1: 0.6, 1 > 0.5; 0.5 is not
            vol([0, 0, 0, 0, 0, 0, 0, 0]),  # no relevance: empty mask, no NaN
            vol([0, 0, 0, 0, 0, 0, 0, 0.001]),  # tiny but non-zero: its own max, so inside
        ]
    )
    mask = binarize_relevance(r)
    assert mask.dtype == np.bool_ and mask.shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(mask[0].ravel(), [1, 1, 0, 0, 0, 0, 0, 0])
    assert not mask[1].any()
    np.testing.assert_array_equal(mask[2].ravel(), [0, 0, 0, 0, 0, 0, 0, 1])


def test_binarize_relevance_threshold_is_configurable_and_checked() -> None:
    r = vol([0.6, -1.0, 0.4, 0.5, 0, 0, 0, 0])[None]
    assert binarize_relevance(r, threshold=0.3)[0].sum() == 4  # 0.6, 1, 0.4, 0.5
    with pytest.raises(StrokeLRPError, match="threshold"):
        binarize_relevance(r, threshold=1.5)


def test_binarize_input_relative_to_channel_max() -> None:
    x = np.stack([vol([2.0, 0.2, 0.21, 0, 0, 0, 0, 0]), vol([0.0] * 8)])
    # channel 0: /2 -> 1, 0.1 (not > 0.1), 0.105, 0; channel 1 empty
    mask = binarize_input(x)
    np.testing.assert_array_equal(mask[0].ravel(), [1, 0, 1, 0, 0, 0, 0, 0])
    assert not mask[1].any()


def test_input_inclusivity_two_channels_hand_computed() -> None:
    r = np.stack([vol([1, 0.9, 0.1, 0, 0, 0, 0, 0]), vol([0, 0, 0, -3, 0, 0, 0, 0])])
    x = np.stack([vol([1, 0, 1, 1, 0, 0, 0, 0]), vol([0, 0, 0, 5, 5, 0, 0, 0])])
    # ch0: LRP mask {0, 1}, input mask {0, 2, 3}: 1 / 3
    # ch1: LRP mask {3}, input mask {3, 4}: 1 / 2
    out = input_inclusivity(r, x, smoothing=0.0)
    np.testing.assert_allclose(out, [1 / 3, 1 / 2])


def test_input_inclusivity_batched_settings_and_torch() -> None:
    r = np.stack([vol([1, 0.9, 0.1, 0, 0, 0, 0, 0]), vol([0, 0, 0, -3, 0, 0, 0, 0])])
    x = np.stack([vol([1, 0, 1, 1, 0, 0, 0, 0]), vol([0, 0, 0, 5, 5, 0, 0, 0])])
    batch = torch.tensor(np.stack([r, np.zeros_like(r)]), dtype=torch.float32)
    out = input_inclusivity(batch, torch.tensor(x), smoothing=0.0)
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out[0], [1 / 3, 1 / 2], rtol=1e-6)
    np.testing.assert_array_equal(out[1], [0.0, 0.0])  # an all-zero map covers nothing


def test_input_inclusivity_shape_mismatch() -> None:
    with pytest.raises(StrokeLRPError, match="share"):
        input_inclusivity(np.ones((6, 2, 2, 2)), np.ones((6, 2, 2, 3)))


def test_ground_truth_inclusivity_per_channel() -> None:
    r = np.stack([vol([1, 1, 1, 0, 0, 0, 0, 0]), vol([0, 0, 0, 0, 0, 0, 1, 0])])
    label = vol([0, 1, 1, 1, 1, 0, 0, 0]).astype(np.uint8)
    # lesion {1, 2, 3, 4}; ch0 covers {1, 2}: 2/4; ch1 covers nothing of it: 0
    np.testing.assert_allclose(ground_truth_inclusivity(r, label, smoothing=0.0), [0.5, 0.0])
    empty = np.zeros((2, 2, 2), dtype=np.uint8)
    np.testing.assert_array_equal(ground_truth_inclusivity(r, empty), [0.0, 0.0])


def repeat2(vol4: np.ndarray, shape: tuple[int, int, int], mode: str) -> np.ndarray:
    """A stand-in resize: (C, d, h, w) -> (C, 2d, 2h, 2w) by repeating voxels (any mode)."""
    assert shape == tuple(2 * s for s in vol4.shape[1:])
    return vol4.repeat(2, axis=1).repeat(2, axis=2).repeat(2, axis=3)


def test_native_grid_resamples_relevance_and_keeps_native_inputs() -> None:
    r = vol([1, 0, 0, 0, 0, 0, 0, 0])[None]  # model scale (1, 2, 2, 2)
    x_native = np.zeros((1, 4, 4, 4))
    x_native[0, :2, :2, :2] = 1.0  # the native block under model voxel 0
    x_native[0, 3, 3, 3] = 1.0  # one more bright voxel elsewhere
    # relevance voxel 0 becomes the 8 native voxels of that block: covers 8 of 9 bright voxels
    out = input_inclusivity(r, x_native, smoothing=0.0, grid=(4, 4, 4), resize=repeat2)
    np.testing.assert_allclose(out, [8 / 9])
    label_model = vol([1, 1, 0, 0, 0, 0, 0, 0])  # lesion at model scale, resized (nearest)
    gt = ground_truth_inclusivity(r, label_model, smoothing=0.0, grid=(4, 4, 4), resize=repeat2)
    np.testing.assert_allclose(gt, [0.5])  # 8 of the lesion's 16 native voxels


def test_native_grid_with_the_data_layers_resize() -> None:
    # model scale (1, 1, 2, 2) -> native (1, 1, 4, 4) with strokelrp.core.volumes.resize_volume
    r = np.zeros((1, 1, 2, 2))
    r[0, 0, 0, 0] = 1.0  # trilinear upsampling keeps the top-left native quarter >= 0.5
    label = np.zeros((1, 2, 2), dtype=np.uint8)
    label[0, 0, 0] = 1  # nearest: the top-left native 2x2 block
    out = ground_truth_inclusivity(r, label, smoothing=0.0, grid=(1, 4, 4))
    np.testing.assert_allclose(out, [1.0])
    x = np.ones((1, 1, 4, 4))  # all bright: the relevance mask covers 4 of 16 native voxels
    upsampled = input_inclusivity(r, x, smoothing=0.0, grid=(1, 4, 4))
    # 1-D weights of the 2 -> 4 trilinear resize: 1, .75, .25, 0 -> top-left 2x2 >= .5625
    mask_size = binarize_relevance(resize_volume(r, (1, 4, 4))).sum()
    np.testing.assert_allclose(upsampled, [mask_size / 16])
    assert mask_size == 4
