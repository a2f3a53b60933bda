"""The paper's 3-D U-Net: shapes at every series scale, parameter count, gradient through skips."""

from __future__ import annotations

import pytest
import torch

from strokelrp.config import SERIES
from strokelrp.model import UNet3D, count_parameters


def test_parameter_count_matches_paper_at_width_32() -> None:
    assert count_parameters(UNet3D(width=32)) == 19_077_154  # "about 19.08 M"


@pytest.mark.parametrize("series", sorted(SERIES))
def test_output_shape_equals_input_shape_at_every_series_scale(series: str) -> None:
    model = UNet3D(width=2).eval()
    shape = SERIES[series]
    with torch.no_grad():
        out = model(torch.rand(1, 6, *shape))
    assert out.shape == (1, 2, *shape)


@pytest.mark.parametrize("shape", [(7, 5, 9), (3, 3, 3), (1, 1, 1), (19, 11, 13)])
def test_odd_sizes_are_cropped_back(shape: tuple[int, int, int]) -> None:
    model = UNet3D(width=2).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 6, *shape)).shape == (2, 2, *shape)


def test_wrong_channel_count_names_the_expected_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, 6, D, H, W\)"):
        UNet3D(width=2)(torch.rand(1, 5, 4, 4, 4))


def test_gradient_reaches_the_encoder_through_the_skips() -> None:
    """The authors' code detached the skips; here the loss through one skip alone reaches enc1."""
    torch.manual_seed(0)
    model = UNet3D(width=2).eval()
    # Block the up-path at the deepest level: any gradient at enc1 must come through cat1's skip.
    with torch.no_grad():
        model.up1.weight.zero_()
    model(torch.rand(1, 6, 5, 8, 8)).sum().backward()
    grad = model.enc1.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
