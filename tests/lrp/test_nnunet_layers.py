"""The relevance steps of nnU-Net's layers: InstanceNorm (passed, or folded with the instance's
statistics) against a dense reference, strided and transposed convolutions, LeakyReLU, and
the two U-Nets nnU-Net builds (PlainConvUNet, ResidualEncoderUNet with its residual sums)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from strokelrp.attribution import attribute
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.engine import explain
from strokelrp.lrp.presets import preset

F64 = torch.float64


def matrix(module: nn.Module, shape: tuple[int, ...]) -> np.ndarray:
    """A (transposed) convolution's linear part as M (n_out, n_in), from unit basis vectors."""
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=F64).view(n, *shape)
    with torch.no_grad():
        out = module(basis) - module(torch.zeros_like(basis[:1]))
    return out.reshape(n, -1).T.numpy()


def epsilon_back(m: np.ndarray, bias: np.ndarray, a: np.ndarray, r: np.ndarray, eps: float):
    """LRP-epsilon on z = M a + b, by the textbook formula: R_i = a_i sum_j M_ji R_j / stab(z_j)."""
    z = m @ a + bias
    s = r / (z + eps * np.where(z >= 0, 1.0, -1.0))
    return a * (m.T @ s)


def test_instancenorm_fold_equals_a_dense_reference_with_the_instance_statistics() -> None:
    torch.manual_seed(0)
    conv1, norm = nn.Conv3d(2, 3, 3, padding=1), nn.InstanceNorm3d(3, affine=True)
    conv2 = nn.Conv3d(3, 2, 1)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    net = nn.Sequential(conv1, norm, nn.LeakyReLU(0.01), conv2).to(F64).eval()
    x = torch.randn(1, 2, 3, 4, 4, dtype=F64)
    start = torch.randn(1, 2, 3, 4, 4, dtype=F64)
    eps = 0.1
    got = explain(net, x, target=start, rules=preset("epsilon", epsilon=eps, instancenorm="fold"))
    # the reference: per-channel statistics of conv1's output, computed with loops
    xs = x[0].numpy().reshape(-1)
    m1 = matrix(conv1, (2, 3, 4, 4))
    b1 = np.repeat(conv1.bias.detach().numpy(), 48)
    z1 = (m1 @ xs + b1).reshape(3, 48)
    s = np.empty(3)
    t = np.empty(3)
    for c in range(3):
        mean = sum(z1[c]) / 48
        var = sum((v - mean) ** 2 for v in z1[c]) / 48
        s[c] = float(norm.weight[c].detach()) / np.sqrt(var + norm.eps)
        t[c] = float(norm.bias[c].detach()) - mean * s[c]
    y = (s[:, None] * z1 + t[:, None]).reshape(-1)
    a1 = np.where(y > 0, y, 0.01 * y)
    m2 = matrix(conv2, (3, 3, 4, 4))
    b2 = np.repeat(conv2.bias.detach().numpy(), 48)
    r1 = epsilon_back(m2, b2, a1, start[0].numpy().reshape(-1), eps)  # LeakyReLU passes
    folded = np.repeat(s, 48)[:, None] * m1
    want = epsilon_back(folded, np.repeat(s, 48) * b1 + np.repeat(t, 48), xs, r1, eps)
    np.testing.assert_allclose(got.relevance[0].numpy().reshape(-1), want, rtol=1e-9, atol=1e-12)
    # passing the norm instead: the conv's own output is the rule's denominator
    passed = explain(
        net, x, target=start, rules=preset("epsilon", epsilon=eps, instancenorm="pass")
    )
    want_pass = epsilon_back(m1, b1, xs, r1, eps)
    np.testing.assert_allclose(passed.relevance[0].numpy().reshape(-1), want_pass, rtol=1e-9)


def test_instancenorm_fold_is_refused_when_the_normalised_value_changed_in_place() -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = nn.Conv3d(1, 2, 1), nn.InstanceNorm3d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.conv(x)
            y = self.norm(z)
            z.mul_(2)  # the norm's input is overwritten after it was read
            return y

    with pytest.raises(StrokeLRPError, match="changed in place"):
        explain(
            InPlace().eval(),
            torch.randn(1, 1, 2, 2, 2),
            target="authors",
            rules=preset("epsilon", instancenorm="fold"),
        )


def test_strided_and_transposed_convolutions_with_leaky_relu_equal_gradient_times_input() -> None:
    """Bias-free, positively homogeneous: LRP-0 = x * dS/dx (Euler), through every step."""
    torch.manual_seed(1)
    net = (
        nn.Sequential(
            nn.Conv3d(2, 4, 3, stride=2, padding=1, bias=False),
            nn.LeakyReLU(0.01),
            nn.ConvTranspose3d(4, 3, 2, stride=2, bias=False),
            nn.LeakyReLU(0.01),
            nn.Conv3d(3, 2, 1, bias=False),
        )
        .to(F64)
        .eval()
    )
    x = torch.randn(1, 2, 4, 6, 6, dtype=F64)
    w = torch.randn(1, 2, 4, 6, 6, dtype=F64)
    got = explain(net, x, target=lambda out: out * w, rules=preset("epsilon", epsilon=1e-30))
    xg = x.clone().requires_grad_(True)
    (net(xg) * w).sum().backward()
    want = x * xg.grad
    torch.testing.assert_close(got.relevance[0], want[0], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------- nnU-Net's own U-Nets


def nnunet(kind: str, bias: bool) -> nn.Module:
    arch = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    kw = dict(
        input_channels=2, n_stages=3, features_per_stage=[4, 6, 8], conv_op=nn.Conv3d,
        kernel_sizes=3, strides=[1, 2, 2], num_classes=2, conv_bias=bias,
        norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False,
    )  # fmt: skip
    torch.manual_seed(2)
    if kind == "plain":
        net = arch.PlainConvUNet(**kw, n_conv_per_stage=2, n_conv_per_stage_decoder=1)
    else:
        net = arch.ResidualEncoderUNet(
            **kw, n_blocks_per_stage=[1, 2, 2], n_conv_per_stage_decoder=1
        )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if not bias and isinstance(m, nn.Conv3d | nn.ConvTranspose3d) and m.bias is not None:
                m.bias.zero_()  # the segmentation heads always carry a bias
    return net.to(F64).eval()


@pytest.mark.parametrize("kind", ["plain", "residual"])
def test_nnunets_networks_conserve_with_lrp0_when_bias_free(kind: str) -> None:
    """Convolutions without bias, InstanceNorm passed, LeakyReLU passed, residual sums split
    in proportion: every cut through the walk carries the output's relevance."""
    net = nnunet(kind, bias=False)
    x = torch.randn(1, 2, 8, 8, 8, dtype=F64)
    rules = preset("epsilon", epsilon=1e-30, instancenorm="pass")
    result = explain(net, x, target="authors", rules=rules)
    assert result.conservation.max_deviation() < 1e-8
    points = result.conservation.points
    assert sum("transpconvs" in p for p in points) == 2
    if kind == "residual":
        assert any(".skip." in p for p in points)  # the residual blocks' projection path


@pytest.mark.parametrize("kind", ["plain", "residual"])
@pytest.mark.parametrize(
    "method", ["lrp:epsilon", "lrp:epsilon(instancenorm=fold)", "lrp:composite"]
)
def test_nnunets_networks_explain_through_attribution(kind: str, method: str) -> None:
    net = nnunet(kind, bias=True)
    x = torch.randn(2, 8, 8, 8, dtype=F64)
    r = attribute(net, x, method, target="authors")
    assert r.shape == x.shape and bool(torch.isfinite(r).all()) and bool(r.abs().sum() > 0)
    rules = preset(method[4:].split("(")[0], instancenorm="fold" if "fold" in method else "pass")
    c = explain(net, x[None], target="authors", rules=rules).conservation
    assert np.isfinite(c.max_deviation())  # reported (biases and the norms' shifts absorb)
