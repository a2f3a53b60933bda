"""Reference-based explanations: the references by hand, and each method against an
independent implementation (explicit matrices, float64)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import strokelrp
from strokelrp.attribution import attribution_input, score, weights_for
from strokelrp.errors import StrokeLRPError
from strokelrp.reference import midsagittal_plane, reference_array, reference_tensor

F64 = torch.float64


def test_healthy_reference_is_the_healthy_brain_mean_by_hand() -> None:
    x = np.zeros((6, 1, 1, 8))
    x[:, 0, 0, 1:7] = np.arange(1.0, 7.0)  # brain: columns 1..6 (perfusion non-zero)
    x[0, 0, 0, 1:7] = [9.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    target = np.zeros((1, 1, 8), bool)
    target[0, 0, 1] = True  # lesion at column 1; grown by 2: columns 0..3
    b = reference_array(x, "healthy", target)
    assert b[0, 0, 0, 4] == pytest.approx((3.0 + 4.0 + 5.0) / 3)  # columns 4, 5, 6
    assert b[2, 0, 0, 1] == pytest.approx((4.0 + 5.0 + 6.0) / 3)
    assert b[0, 0, 0, 0] == 0.0 and b[0, 0, 0, 7] == 0.0  # outside the brain: x itself
    np.testing.assert_array_equal(reference_array(x, "zero"), 0)
    assert reference_array(x, "mean")[1, 0, 0, 0] == pytest.approx(x[1].mean())


def test_mirror_reference_flips_about_the_plane_found_from_the_brain() -> None:
    brain = np.zeros((2, 3, 12), bool)
    brain[..., 3:10] = True  # symmetric about column 6
    assert midsagittal_plane(brain) == 6.0
    brain[..., 3:9] = True
    brain[..., 9] = False  # columns 3..8: centre 5.5
    assert midsagittal_plane(brain) == 5.5
    x = np.zeros((6, 1, 1, 12))
    x[:, 0, 0, 3:10] = np.arange(1.0, 8.0)  # brain columns 3..9, plane 6
    x[1, 0, 0, 4] = 100.0  # a "lesion" left of the plane; its mirror is column 8
    b = reference_array(x, "mirror", np.zeros((1, 1, 12), bool))
    assert b[1, 0, 0, 4] == x[1, 0, 0, 8] and b[1, 0, 0, 8] == 100.0
    assert b[1, 0, 0, 0] == 0.0  # outside the brain: x itself


def test_reference_arrays_and_files_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = np.ones((6, 2, 3, 4))
    np.save(tmp_path / "b.npy", np.full((6, 2, 3, 4), 0.5))
    assert reference_array(x, tmp_path / "b.npy")[3, 1, 2, 3] == 0.5
    with pytest.raises(StrokeLRPError, match=r"must have the input's shape \(6, 2, 3, 4\)"):
        reference_array(x, np.ones((6, 2, 3, 5)))
    with pytest.raises(StrokeLRPError, match="reference must be one of healthy"):
        reference_array(x, "healty")
    with pytest.raises(StrokeLRPError, match="does not exist"):
        reference_array(x, tmp_path / "missing.nii.gz")


class Linear(nn.Module):
    """Lesion logit sum_c w_c x_c + 0.1; background logit 0."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.conv = nn.Conv3d(len(w), 2, 1).double()
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, :, 0, 0, 0] = torch.tensor(w, dtype=F64)
            self.conv.bias[1] = 0.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_gradient_methods_with_a_reference_on_a_linear_model() -> None:
    """S = sum_v W_v (w . x_v + 0.1): (x - b) dS/dx = w (x - b) on the target voxels, IG the
    same (exact for a linear model), occlusion the patch's sum of w (x - b) shared evenly."""
    torch.manual_seed(0)
    w = [1.0, -2.0, 0.5, 0.0, 1.5, -1.0]
    model = Linear(w)
    x = torch.rand(6, 2, 4, 4, dtype=F64) + 0.5
    b = torch.rand(6, 2, 4, 4, dtype=F64)
    W = torch.zeros(1, 2, 2, 4, 4, dtype=F64)
    W[0, 1, :, :2] = 1.0
    want = torch.tensor(w, dtype=F64).view(6, 1, 1, 1) * (x - b) * W[0, 1]
    for method in ("gradient_x_input", "integrated_gradients(steps=3)"):
        got = strokelrp.attribute(model, x, method, target=W, reference=b)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    occ = strokelrp.attribute(model, x, "occlusion(patch=1;2;2)", target=W, reference=b)
    for c, i, j in itertools.product(range(6), (0, 2), (0, 2)):
        box = (c, slice(None), slice(i, i + 2), slice(j, j + 2))
        assert float(occ[box].sum()) == pytest.approx(float(want[box].sum()), abs=1e-12)
    with pytest.raises(StrokeLRPError, match="takes no reference"):
        strokelrp.attribute(model, x, "gradient", reference="healthy")


def _dense(conv: nn.Conv3d, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A stride-1, zero-padded Conv3d as an explicit matrix (out x in) and bias vector,
    written with loops over its kernel."""
    w = conv.weight.detach().numpy()
    co, ci, kd, kh, kw = w.shape
    pd, ph, pw = conv.padding  # type: ignore[misc]
    d, h, ww = shape
    n_in, n_out = ci * d * h * ww, co * d * h * ww
    m = np.zeros((n_out, n_in))
    for o, z, y, x_ in itertools.product(range(co), range(d), range(h), range(ww)):
        row = np.ravel_multi_index((o, z, y, x_), (co, d, h, ww))
        for i, a, bb, c in itertools.product(range(ci), range(kd), range(kh), range(kw)):
            zz, yy, xx = z + a - pd, y + bb - ph, x_ + c - pw
            if 0 <= zz < d and 0 <= yy < h and 0 <= xx < ww:
                m[row, np.ravel_multi_index((i, zz, yy, xx), (ci, d, h, ww))] += w[o, i, a, bb, c]
    bias = np.repeat(conv.bias.detach().numpy(), d * h * ww)
    return m, bias


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(2, 3, 3, padding=1).double()
        self.bn1 = nn.BatchNorm3d(3).double()
        self.act = nn.ReLU()
        self.head = nn.Conv3d(3, 2, 1).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.bn1(self.conv1(x))))


@pytest.mark.parametrize("eps", [1e-9, 0.25])
def test_lrp_of_the_difference_from_the_reference_against_explicit_matrices(eps: float) -> None:
    """LRP-epsilon of d = x - b: with the network as matrices (BatchNorm folded into the first
    layer), R_head = W * z2, R_a = a * W2^T (R_head / s(z2)), R_i = d_i (W1^T (R_a / s(z1)))_i
    with s(z) = z + eps sign(z) and z1 = W1 (d + b) + b1 the full pre-activation (the
    reference's part acts as a bias, stabilised once); the zero reference is plain LRP."""
    torch.manual_seed(1)
    model = Small().eval()
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-0.2, 0.2)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn1.bias.uniform_(-0.1, 0.1)
    shape = (2, 3, 4)
    x = torch.rand(2, *shape, dtype=F64) + 0.2
    b = torch.rand(2, *shape, dtype=F64) * 0.5
    W = torch.zeros(1, 2, *shape, dtype=F64)
    W[0, 1, 0] = 1.0
    W[0, 0, 1, 1:] = 0.5
    method = f"lrp:epsilon(epsilon={eps})"
    got = strokelrp.attribute(model, x, method, target=W, reference=b)

    m1, b1 = _dense(model.conv1, shape)
    bn = model.bn1
    n = int(np.prod(shape))
    scale = np.repeat((bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy(), n)
    shift = np.repeat((bn.bias - bn.running_mean * bn.weight
                       / torch.sqrt(bn.running_var + bn.eps)).detach().numpy(), n)  # fmt: skip
    m1, b1 = scale[:, None] * m1, scale * b1 + shift
    m2, b2 = _dense(model.head, shape)
    d = (x - b).numpy().ravel()
    z1 = m1 @ (d + b.numpy().ravel()) + b1
    a = np.maximum(z1, 0)
    z2 = m2 @ a + b2
    r2 = W.numpy().ravel() * z2

    def s(z: np.ndarray) -> np.ndarray:
        return z + eps * np.where(z >= 0, 1.0, -1.0)

    ra = a * (m2.T @ (r2 / s(z2)))
    want = d * (m1.T @ (ra / s(z1)))
    np.testing.assert_allclose(got.numpy().ravel(), want, rtol=1e-6, atol=1e-9)
    plain = strokelrp.attribute(model, x, method, target=W)
    zero = strokelrp.attribute(model, x, method, target=W, reference="zero")
    torch.testing.assert_close(plain, zero, rtol=1e-12, atol=1e-15)


def test_reference_tensor_uses_the_predicted_target() -> None:
    model = Linear([1.0] * 6)
    x = torch.rand(6, 2, 4, 4, dtype=F64) + 0.5
    xt = attribution_input(model, x)
    W = weights_for(model, xt)
    b = reference_tensor(xt, "healthy", W)
    assert b.shape == xt.shape and float(score(model, xt, W)) != 0


def test_explain_default_reference_and_the_colour_bar() -> None:
    """The CLI's default (kept free of torch) is the library's; figure 1's colour bar says what
    the sign means relative to it."""
    from strokelrp.cli import EXPLAIN_REFERENCE
    from strokelrp.pipeline.explain import effective_reference
    from strokelrp.reference import DEFAULT_REFERENCE
    from strokelrp.report.figure1 import colour_bar_label

    assert EXPLAIN_REFERENCE == DEFAULT_REFERENCE == "healthy"
    assert "evidence for the lesion\nrelative to the healthy reference" in colour_bar_label(
        "healthy"
    )
    assert "relative" not in colour_bar_label("none")
    assert effective_reference("lrp:epsilon+pass:0,0.4", "healthy") == "healthy"
    assert effective_reference("gradient", "healthy") is None
    assert effective_reference("gradient_x_input", "zero") is None
