"""Residual additions under ``sums="epsilon"`` and ``sums="exact"``, against LRP-epsilon
written out by hand with the network as explicit matrices (1x1x1 convolutions: kron(W, I))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import strokelrp
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import preset

F64 = torch.float64


class Residual(nn.Module):
    """x -> a = c1(x), b = relu(a), s = b + c2(b), head(s)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv3d(2, 3, 1)
        self.c2 = nn.Conv3d(3, 3, 1)
        self.head = nn.Conv3d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = torch.relu(self.c1(x))
        return self.head(b + self.c2(b))


def _matrix(conv: nn.Conv3d, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A 1x1x1 convolution over n voxels as (kron(W, I_n), bias repeated)."""
    w = conv.weight.detach().numpy()[:, :, 0, 0, 0]
    return np.kron(w, np.eye(n)), np.repeat(conv.bias.detach().numpy(), n)


@pytest.mark.parametrize("sums", ["epsilon", "exact"])
def test_residual_sum_matches_the_hand_written_walk(sums: str) -> None:
    torch.manual_seed(3)
    model = Residual().to(F64).eval()
    shape = (1, 2, 2)
    n = int(np.prod(shape))
    x = torch.randn(2, *shape, dtype=F64)
    W = torch.rand(1, 2, *shape, dtype=F64)
    eps = 0.25
    got = strokelrp.attribute(model, x, f"lrp:epsilon(epsilon={eps},sums={sums})", target=W)

    def stab(z: np.ndarray, e: float) -> np.ndarray:
        return z + e * np.where(z >= 0, 1.0, -1.0)

    e_sum = eps if sums == "epsilon" else 1e-9
    m1, b1 = _matrix(model.c1, n)
    m2, b2 = _matrix(model.c2, n)
    mh, bh = _matrix(model.head, n)
    xv = x.numpy().ravel()
    a = m1 @ xv + b1
    b = np.maximum(a, 0)
    c = m2 @ b + b2
    s = b + c
    zh = mh @ s + bh
    r_head = W.numpy().ravel() * zh
    r_s = s * (mh.T @ (r_head / stab(zh, eps)))
    r_b = b * r_s / stab(s, e_sum)  # the skip's share
    r_c = c * r_s / stab(s, e_sum)  # the branch's share
    r_b = r_b + b * (m2.T @ (r_c / stab(c, eps)))
    want = xv * (m1.T @ (r_b / stab(a, eps)))
    np.testing.assert_allclose(got.numpy().ravel(), want, rtol=1e-9, atol=1e-12)


def test_sums_is_checked_and_shown() -> None:
    assert "sums=exact" in preset("epsilon", sums="exact").summary()
    with pytest.raises(StrokeLRPError, match="sums must be"):
        preset("epsilon", sums="half")
