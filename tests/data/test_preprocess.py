"""Normalisation and resizing (and resizing back) to the series scales."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from strokelrp.config import SERIES
from strokelrp.core.masks import brain_mask
from strokelrp.core.volumes import resize_volume
from strokelrp.data.isles2017 import load_isles2017
from strokelrp.data.preprocess import (
    normalize_minmax,
    normalize_zscore,
    preprocess_case,
    series_shape,
)
from strokelrp.errors import StrokeLRPError


def test_minmax_maps_each_channel_to_0_1_and_a_constant_channel_to_0() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(500, 100, (3, 4, 5)), np.full((3, 4, 5), 7.0)])
    image[0, 0, 0, 0] = -20.0
    out = normalize_minmax(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert out[0].min() == 0.0 and out[0].max() == 1.0 and out[0, 0, 0, 0] == 0.0
    assert np.all(out[1] == 0.0) and not np.isnan(out).any()
    # a hand-computed channel
    ch = np.array([[[[2.0, 4.0], [6.0, 10.0]]]])
    np.testing.assert_allclose(normalize_minmax(ch)[0, 0], [[0.0, 0.25], [0.5, 1.0]])


def test_zscore_standardises_inside_the_brain_and_zeros_outside() -> None:
    rng = np.random.default_rng(1)
    image = np.zeros((3, 4, 10, 10), dtype=np.float32)
    image[:, :, 2:8, 2:8] = rng.normal(40.0, 5.0, (3, 4, 6, 6))
    image[0] += 1000.0  # ADC-like channel with signal outside the brain too
    out = normalize_zscore(image)
    mask = brain_mask(image)
    assert mask.sum() == 4 * 36
    for c in range(3):
        assert out[c][mask].mean() == pytest.approx(0.0, abs=1e-5)
        assert out[c][mask].std() == pytest.approx(1.0, abs=1e-4)
        assert np.all(out[c][~mask] == 0.0)
    const = normalize_zscore(np.ones((2, 2, 3, 3), dtype=np.float32))
    assert np.all(const == 0.0)


def test_brain_mask_survives_min_max_of_a_zero_mean_control(tmp_path) -> None:
    from strokelrp.data.isles2017 import load_isles2017
    from strokelrp.data.synth import synthesize_isles2017

    root = synthesize_isles2017(tmp_path / "d", 1, shape=(32, 32, 6), seed=0, control=["MTT"])
    case = load_isles2017(root)[0]
    raw = brain_mask(case.image)
    assert (case.image[1] < 0).any() and 0.05 < raw.mean() < 0.8
    # raw: the brain is where the informative perfusion maps are non-zero
    np.testing.assert_array_equal(raw, np.any(case.image[2:] != 0, axis=0) | (case.image[1] != 0))
    normalised = normalize_minmax(case.image)
    assert abs(float(np.median(normalised[1][~raw])) - 0.5) < 0.2  # background is not 0 here
    np.testing.assert_array_equal(brain_mask(normalised), raw)


@pytest.mark.parametrize("series", sorted(SERIES))
def test_resize_to_each_series_and_back_numpy(series: str) -> None:
    native = (19, 40, 56)
    vol = np.random.default_rng(2).random((6, *native)).astype(np.float32)
    small = resize_volume(vol, SERIES[series])
    assert isinstance(small, np.ndarray) and small.dtype == np.float32
    assert small.shape == (6, *SERIES[series])
    back = resize_volume(small, native)
    assert back.shape == vol.shape
    assert small.min() >= 0.0 and small.max() <= 1.0  # trilinear only averages


def test_resize_torch_in_torch_out_keeps_dtype_and_device() -> None:
    t = torch.rand(2, 5, 8, 8, dtype=torch.float64)
    out = resize_volume(t, (7, 12, 4))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert out.shape == (2, 7, 12, 4) and out.device == t.device
    assert resize_volume(out, (5, 8, 8)).shape == t.shape


def test_labels_stay_binary_both_ways_and_keep_their_dtype() -> None:
    label = np.zeros((19, 192, 192), dtype=np.uint8)
    label[5:12, 60:120, 32:88] = 1
    small = resize_volume(label, SERIES["A"], mode="nearest")
    assert small.dtype == np.uint8 and small.shape == (19, 48, 48)
    assert set(np.unique(small)) == {0, 1}
    back = resize_volume(small, label.shape, mode="nearest")
    assert back.dtype == np.uint8 and back.shape == label.shape
    assert set(np.unique(back)) == {0, 1}
    # the block comes back where it was (exactly, as its edges fall on the 4x4 cells)
    assert np.array_equal(back, label)
    t = torch.from_numpy(label).to(torch.int64)
    assert resize_volume(t, SERIES["B"], mode="nearest").dtype == torch.int64


def test_resize_to_the_same_shape_is_the_identity() -> None:
    vol = np.random.default_rng(3).random((2, 3, 4, 5)).astype(np.float32)
    same = resize_volume(vol, (3, 4, 5))
    assert np.array_equal(same, vol) and same is not vol


def test_downsampling_by_two_averages_neighbours() -> None:
    vol = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = resize_volume(vol, (1, 2, 2))
    np.testing.assert_allclose(out[0, 0], [[2.5, 4.5], [10.5, 12.5]])


def test_resize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="mode"):
        resize_volume(np.zeros((2, 2, 2)), (1, 1, 1), mode="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a volume"):
        resize_volume(np.zeros((2, 2)), (1, 1, 1))


def test_series_names_and_explicit_shapes() -> None:
    assert series_shape("a") == (19, 48, 48) and series_shape((5, 8, 8)) == (5, 8, 8)
    with pytest.raises(StrokeLRPError, match="unknown series 'Z'"):
        series_shape("Z")


def test_preprocess_case_at_series_a(tiny_source: Path) -> None:
    case = load_isles2017(tiny_source, cases=["1"])[0]
    x, y = preprocess_case(case, "A")
    assert x.shape == (6, 19, 48, 48) and x.dtype == np.float32
    assert y is not None and y.shape == (19, 48, 48) and y.dtype == np.uint8
    assert x.min() >= 0.0 and x.max() <= 1.0 and not np.isnan(x).any()
    assert set(np.unique(y)) == {0, 1}
    xz, _ = preprocess_case(case, (8, 32, 32), normalization="zscore")
    assert xz.shape == (6, 8, 32, 32) and xz.min() < 0.0
    with pytest.raises(StrokeLRPError, match="unknown normalization"):
        preprocess_case(case, "A", normalization="robust")  # type: ignore[arg-type]
