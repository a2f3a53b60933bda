"""Well-conditioned float comparisons for the relevance tests.

Element-wise ``rtol``/``atol`` checks of a float32 map against float64 fail on whichever
elements sit behind a near-zero rule denominator: there, rounding of the order of float32's
unit roundoff (6e-8) is amplified by |terms| / |z|, and which elements those are depends on the
summation order that oneDNN picks for the CPU (AVX2 and AVX-512 differ). The relative L2 error
of the whole map is what float32 can promise: it weights every element by its share of the map.
"""

from __future__ import annotations

import torch


def relative_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want||, in float64 (0 when both are 0)."""
    got, want = got.double(), want.double()
    norm = float(want.norm())
    diff = float((got - want).norm())
    return diff / norm if norm > 0 else diff


def assert_relative_l2(got: torch.Tensor, want: torch.Tensor, bound: float) -> None:
    """Assert equal shapes and a relative L2 error below ``bound``."""
    assert got.shape == want.shape, (got.shape, want.shape)
    err = relative_l2(got, want)
    assert err <= bound, f"relative L2 error {err:.3g} > {bound:.3g}"
