"""Every rule against the textbook formula on the layer written as an explicit dense matrix.

The reference builds the matrix M (out x in) from the weights by explicit loops over output
voxels and kernel offsets (float64; the convolution's own forward is never used), then
evaluates z_ji (the contribution of input i to output j) and
R_i = sum_j z_ji / stab(sum_i z_ji) R_j literally. The engine's rules use transposed
convolutions on a batch of K relevance maps; both must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numerics import assert_relative_l2
from torch import nn

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.rules import (
    ConvLayer,
    Epsilon,
    WPlus,
    ZBox,
    ZPlus,
    fold_batchnorm,
    make_rule,
    maxpool_forward,
    maxpool_relevance,
)

F64 = torch.float64

# (module factory, input shape (C, D, H, W))
LAYERS = {
    "conv3-pad1": (lambda b: nn.Conv3d(2, 3, 3, padding=1, bias=b), (2, 3, 4, 4)),
    "conv3-stride2-odd": (lambda b: nn.Conv3d(2, 3, 3, stride=2, padding=1, bias=b), (2, 5, 4, 3)),
    "conv2-nopad": (lambda b: nn.Conv3d(3, 2, 2, bias=b), (3, 3, 3, 4)),
    "convT2-stride2": (lambda b: nn.ConvTranspose3d(3, 2, 2, stride=2, bias=b), (3, 2, 2, 3)),
    "convT3-stride2-pad1": (
        lambda b: nn.ConvTranspose3d(2, 3, 3, stride=2, padding=1, output_padding=1, bias=b),
        (2, 2, 3, 2),
    ),
}
# other dimensions and Linear: checked against the dense reference too
OTHER_LAYERS = {
    "conv2d-stride2-dil": (
        lambda b: nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2, bias=b),
        (2, 5, 6),
    ),
    "convT2d-stride2": (lambda b: nn.ConvTranspose2d(3, 2, 3, stride=2, bias=b), (3, 3, 2)),
    "conv1d": (lambda b: nn.Conv1d(2, 3, 3, padding=1, bias=b), (2, 7)),
    "convT1d": (lambda b: nn.ConvTranspose1d(2, 2, 2, stride=2, bias=b), (2, 3)),
    "conv1x1x1": (lambda b: nn.Conv3d(3, 2, 1, bias=b), (3, 2, 3, 2)),
    "conv1x1-2d": (lambda b: nn.Conv2d(2, 3, 1, bias=b), (2, 3, 4)),
    "linear": (lambda b: nn.Linear(5, 4, bias=b), (5,)),
}


def dense_and_links(layer: ConvLayer, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(M (n_out, n_in), links (n_out, n_in) bool) built by loops from the weights.

    Conv: out[o, p] = sum_{c, k} w[o, c, k] in[c, p * stride - pad + k * dil].
    ConvTranspose: out[o, q * stride - pad + k * dil] += w[c, o, k] in[c, q] (any dimension;
    Linear: no spatial dimensions).
    ``links`` marks the (output, input) pairs joined by a kernel tap, whatever its weight.
    """
    w = layer.weight.detach().double().numpy()
    cin = in_shape[0]
    spatial = in_shape[1:]
    ks = w.shape[2:]
    nd = len(spatial)
    st, pd, dl = layer.stride, layer.padding, layer.dilation
    op = layer.output_padding or (0,) * nd
    if layer.transposed:
        cout = w.shape[1]
        out_sp = tuple(
            (spatial[i] - 1) * st[i] - 2 * pd[i] + dl[i] * (ks[i] - 1) + op[i] + 1
            for i in range(nd)
        )
    else:
        cout = w.shape[0]
        out_sp = tuple(
            (spatial[i] + 2 * pd[i] - dl[i] * (ks[i] - 1) - 1) // st[i] + 1 for i in range(nd)
        )
    n_in, n_out = cin * int(np.prod(spatial)), cout * int(np.prod(out_sp))
    m = np.zeros((n_out, n_in))
    links = np.zeros((n_out, n_in), dtype=bool)

    for o in range(cout):
        for c in range(cin):
            for k in np.ndindex(*ks):
                tap = w[c, o][k] if layer.transposed else w[o, c][k]
                if layer.transposed:
                    for q in np.ndindex(*spatial):
                        p = tuple(q[i] * st[i] - pd[i] + k[i] * dl[i] for i in range(nd))
                        if all(0 <= p[i] < out_sp[i] for i in range(nd)):
                            j = np.ravel_multi_index((o, *p), (cout, *out_sp))
                            i_ = np.ravel_multi_index((c, *q), (cin, *spatial))
                            m[j, i_] += tap
                            links[j, i_] = True
                else:
                    for p in np.ndindex(*out_sp):
                        q = tuple(p[i] * st[i] - pd[i] + k[i] * dl[i] for i in range(nd))
                        if all(0 <= q[i] < spatial[i] for i in range(nd)):
                            j = np.ravel_multi_index((o, *p), (cout, *out_sp))
                            i_ = np.ravel_multi_index((c, *q), (cin, *spatial))
                            m[j, i_] += tap
                            links[j, i_] = True
    return m, links


def dense(layer: ConvLayer, in_shape: tuple[int, ...]) -> np.ndarray:
    """M (n_out, n_in) of the layer without bias (see :func:`dense_and_links`)."""
    return dense_and_links(layer, in_shape)[0]


def stab(z: np.ndarray, eps: float) -> np.ndarray:
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def reference(
    rule: str,
    m: np.ndarray,
    a: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None,
    eps: float,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
    gamma: float = 0.0,
    links: np.ndarray | None = None,
) -> np.ndarray:
    """R_in_i = sum_j z_ji / stab(Z_j) R_j for one relevance vector r (n_out,)."""
    mp, mn = np.maximum(m, 0), np.minimum(m, 0)
    if rule == "epsilon":
        z = m * a[None, :]
        zsum = z.sum(1) + (0 if b is None else b)
    elif rule == "w+":
        z = mp * a[None, :]
        zsum = z.sum(1)
    elif rule == "z+":
        z = mp * np.maximum(a, 0)[None, :] + mn * np.minimum(a, 0)[None, :]
        zsum = z.sum(1)
    elif rule == "zB":
        z = m * a[None, :] - mp * low[None, :] - mn * high[None, :]
        zsum = z.sum(1)
    elif rule == "gamma":
        contrib = m * a[None, :]
        z = contrib + gamma * np.maximum(contrib, 0)
        zsum = z.sum(1)
    elif rule == "flat":
        z = links.astype(float)
        zsum = z.sum(1)
    elif rule == "w2":
        z = m * m
        zsum = z.sum(1)
    else:
        raise AssertionError(rule)
    return (z * (r / stab(zsum, eps))[:, None]).sum(0)


def make_layer(key: str, bias: bool, seed: int) -> tuple[ConvLayer, tuple[int, ...], nn.Module]:
    torch.manual_seed(seed)
    factory, in_shape = {**LAYERS, **OTHER_LAYERS}[key]
    module = factory(bias).double()
    return ConvLayer.from_module(module), in_shape, module


def run_case(rule_obj, key: str, bias: bool, seed: int, k: int = 3, positive: bool = False):
    layer, in_shape, module = make_layer(key, bias, seed)
    gen = torch.Generator().manual_seed(seed + 100)
    a = torch.rand(1, *in_shape, generator=gen, dtype=torch.float64)
    if not positive:
        a = a * 2 - 1
    out = module(a)
    r = torch.randn(k, *out.shape[1:], generator=gen, dtype=torch.float64)
    got = rule_obj.relevance(layer, a, r)
    assert got.shape == (k, *in_shape)
    m = dense(layer, in_shape)
    b_full = None
    if module.bias is not None:
        b_full = (out - layer.forward(a, layer.weight)).reshape(-1).detach().numpy()
    return got, m, a, r, b_full


@pytest.mark.parametrize("key", sorted(LAYERS) + sorted(OTHER_LAYERS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["epsilon", "w+", "z+"])
def test_rule_matches_dense_matrix_reference(key: str, bias: bool, seed: int, name: str) -> None:
    eps = 1e-3
    rule = make_rule(name, eps)
    got, m, a, r, b = run_case(rule, key, bias, seed)
    for j in range(r.shape[0]):
        want = reference(name, m, a.reshape(-1).numpy(), r[j].reshape(-1).numpy(), b, eps)
        np.testing.assert_allclose(got[j].reshape(-1).numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("key", sorted(LAYERS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("per_channel", [False, True])
def test_zbox_matches_dense_matrix_reference(
    key: str, bias: bool, seed: int, per_channel: bool
) -> None:
    eps = 1e-6
    cin = LAYERS[key][1][0]
    if per_channel:
        low, high = [-0.5 + 0.1 * c for c in range(cin)], [1.0 + 0.2 * c for c in range(cin)]
    else:
        low, high = 0.0, 1.0
    rule = ZBox(epsilon=eps, low=low, high=high)
    got, m, a, r, _ = run_case(rule, key, bias, seed, positive=True)
    in_shape = LAYERS[key][1]
    lo = np.broadcast_to(np.asarray(low, dtype=float).reshape(-1, 1, 1, 1), in_shape).reshape(-1)
    hi = np.broadcast_to(np.asarray(high, dtype=float).reshape(-1, 1, 1, 1), in_shape).reshape(-1)
    for j in range(r.shape[0]):
        want = reference(
            "zB", m, a.reshape(-1).numpy(), r[j].reshape(-1).numpy(), None, eps, lo, hi
        )
        np.testing.assert_allclose(got[j].reshape(-1).numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("key", sorted(LAYERS))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("name", "gamma"), [("gamma", 0.25), ("gamma", 3.0), ("flat", 0), ("w2", 0)]
)
def test_gamma_flat_w2_match_dense_matrix_reference(
    key: str, seed: int, name: str, gamma: float
) -> None:
    eps = 1e-3
    rule = make_rule(name, eps, gamma=gamma)
    got, _, a, r, _ = run_case(rule, key, True, seed)
    layer, in_shape, _ = make_layer(key, True, seed)
    m, links = dense_and_links(layer, in_shape)
    for j in range(r.shape[0]):
        want = reference(
            name, m, a.reshape(-1).numpy(), r[j].reshape(-1).numpy(), None, eps,
            gamma=gamma, links=links,
        )  # fmt: skip
        np.testing.assert_allclose(got[j].reshape(-1).numpy(), want, rtol=1e-10, atol=1e-12)


def test_loop_matrix_agrees_with_the_layer_on_a_vector() -> None:
    """The loop-built matrix is the layer (checked once, against torch's own convolution)."""
    for key in LAYERS:
        layer, in_shape, module = make_layer(key, False, 3)
        a = torch.randn(1, *in_shape, dtype=F64)
        want = module(a).detach().reshape(-1).numpy()
        np.testing.assert_allclose(dense(layer, in_shape) @ a.reshape(-1).numpy(), want)


def test_gamma_limits() -> None:
    """gamma = 0 is epsilon without bias; gamma -> infinity tends to z+."""
    layer, in_shape, module = make_layer("conv3-pad1", False, 2)
    a = torch.randn(1, *in_shape, dtype=F64)
    r = torch.randn(2, *module(a).shape[1:], dtype=F64)
    torch.testing.assert_close(
        make_rule("gamma", 1e-9, gamma=0.0).relevance(layer, a, r),
        Epsilon(1e-9).relevance(layer, a, r),
    )
    far = make_rule("gamma", 1e-9, gamma=1e7).relevance(layer, a, r)
    zp = ZPlus(1e-9).relevance(layer, a, r)
    assert float((far - zp).norm() / zp.norm()) < 1e-5


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), key=st.sampled_from(sorted(LAYERS)))
def test_flat_and_w2_conserve(seed: int, key: str) -> None:
    """Every contribution of flat and w^2 is >= 0: relevance is conserved exactly."""
    layer, in_shape, module = make_layer(key, False, seed)
    a = torch.randn(1, *in_shape, dtype=F64)
    r = torch.randn(2, *module(a).shape[1:], dtype=F64)
    for name in ("flat", "w2"):
        got = make_rule(name, 1e-12).relevance(layer, a, r)
        torch.testing.assert_close(got.sum((1, 2, 3, 4)), r.sum((1, 2, 3, 4)))


def test_epsilon_reuses_the_layer_output_when_given() -> None:
    layer, in_shape, module = make_layer("conv3-pad1", True, 4)
    a = torch.rand(1, *in_shape, dtype=F64)
    z = module(a).detach()
    r = torch.randn(2, *z.shape[1:], dtype=F64)
    rule = Epsilon(epsilon=1e-4)
    torch.testing.assert_close(rule.prepare(layer, a, z)(r), rule.relevance(layer, a, r))


def test_stabiliser_sign_of_zero_is_plus() -> None:
    """A zero denominator is stabilised to +eps, so relevance R becomes R * 0 / eps = 0 here
    (all contributions are zero), never NaN."""
    module = nn.Conv3d(1, 1, 1, bias=False).double()
    with torch.no_grad():
        module.weight.fill_(-1.0)
    layer = ConvLayer.from_module(module)
    a = torch.ones(1, 1, 1, 1, 2, dtype=torch.float64)
    r = torch.ones(1, 1, 1, 1, 2, dtype=torch.float64)
    out = WPlus(epsilon=1e-9).relevance(layer, a, r)  # W+ = 0 -> Z = 0
    assert torch.equal(out, torch.zeros_like(out))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    key=st.sampled_from(sorted(LAYERS)),
    name=st.sampled_from(["w+", "z+"]),
)
def test_wplus_and_zplus_conserve_on_positive_inputs(seed: int, key: str, name: str) -> None:
    """sum_i R_i = sum_j R_j Z_j / (Z_j + eps): every output passes on its relevance but the
    stabiliser's share (Z_j >= 0 here; all of it when Z_j = 0). A cut-off "Z_j > 1e-9 is live"
    was too coarse: a Z_j of 4e-7 keeps only 1 - 2.6e-6 of its R_j (hypothesis, seed 511)."""
    layer, in_shape, module = make_layer(key, True, seed)
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(1, *in_shape, generator=gen, dtype=torch.float64)
    r = torch.randn(2, *module(a).shape[1:], generator=gen, dtype=torch.float64)
    eps = 1e-12
    rule = make_rule(name, eps)
    got = rule.relevance(layer, a, r)
    z = layer.forward(a, layer.weight.clamp(min=0))
    assert bool((z >= 0).all())
    torch.testing.assert_close(got.sum((1, 2, 3, 4)), (r * z / (z + eps)).sum((1, 2, 3, 4)))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), key=st.sampled_from(sorted(LAYERS)))
def test_zbox_conserves_inside_its_bounds(seed: int, key: str) -> None:
    """With low <= a <= high every contribution of z^B is >= 0, so relevance is conserved."""
    layer, in_shape, module = make_layer(key, False, seed)
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(1, *in_shape, generator=gen, dtype=torch.float64)
    r = torch.randn(2, *module(a).shape[1:], generator=gen, dtype=torch.float64)
    got = ZBox(epsilon=1e-12).relevance(layer, a, r)
    torch.testing.assert_close(got.sum((1, 2, 3, 4)), r.sum((1, 2, 3, 4)))


def test_batch_of_settings_equals_one_by_one() -> None:
    layer, in_shape, module = make_layer("convT2-stride2", True, 7)
    a = torch.randn(1, *in_shape, dtype=F64)
    r = torch.randn(4, *module(a).shape[1:], dtype=F64).detach()
    for rule in (Epsilon(1e-6), WPlus(1e-6), ZPlus(1e-6), ZBox(1e-6)):
        both = rule.relevance(layer, a, r)
        for j in range(4):
            torch.testing.assert_close(both[j : j + 1], rule.relevance(layer, a, r[j : j + 1]))


def test_fold_batchnorm_equals_conv_then_batchnorm() -> None:
    torch.manual_seed(3)
    for conv in (nn.Conv3d(2, 3, 3, padding=1), nn.ConvTranspose3d(2, 3, 2, stride=2)):
        bn = nn.BatchNorm3d(3)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        with torch.no_grad():
            bn.weight.uniform_(-2, 2)
            bn.bias.uniform_(-1, 1)
        conv, bn = conv.double(), bn.double().eval()
        x = torch.randn(1, 2, 3, 4, 4, dtype=F64)
        folded = fold_batchnorm(ConvLayer.from_module(conv), bn)
        torch.testing.assert_close(folded.forward(x, folded.weight, folded.bias), bn(conv(x)))


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", [(4, 4, 4), (5, 3, 7), (1, 2, 3)])
def test_maxpool_sends_relevance_to_the_winner(
    shape: tuple[int, int, int], channels_last: bool
) -> None:
    """Loop reference over the ceil-mode windows (odd sizes give partial windows), for
    relevance in either layout (channels-last relevance is scattered in its own layout)."""
    pool = nn.MaxPool3d(2, ceil_mode=True)
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(1, 2, *shape, generator=gen)
    out, state = maxpool_forward(pool, a)
    torch.testing.assert_close(out, pool(a))
    r = torch.randn(3, *out.shape[1:], generator=gen)
    if channels_last:
        r = r.contiguous(memory_format=torch.channels_last_3d)
    got = maxpool_relevance(r, state)
    want = torch.zeros(3, 2, *shape)
    for c in range(2):
        for od, oh, ow in np.ndindex(*out.shape[2:]):
            window = [
                (d, h, w)
                for d in range(2 * od, min(2 * od + 2, shape[0]))
                for h in range(2 * oh, min(2 * oh + 2, shape[1]))
                for w in range(2 * ow, min(2 * ow + 2, shape[2]))
            ]
            best = max(window, key=lambda p, c=c: float(a[0, c, p[0], p[1], p[2]]))
            want[:, c, best[0], best[1], best[2]] += r[:, c, od, oh, ow]
    torch.testing.assert_close(got, want)


def test_bad_layers_and_bounds_raise_clear_errors() -> None:
    with pytest.raises(StrokeLRPError, match="grouped"):
        ConvLayer.from_module(nn.Conv3d(2, 2, 3, groups=2))
    with pytest.raises(StrokeLRPError, match="padding_mode"):
        ConvLayer.from_module(nn.Conv3d(2, 2, 3, padding=1, padding_mode="circular"))
    with pytest.raises(StrokeLRPError, match="groups=2"):
        ConvLayer.from_module(nn.Conv2d(2, 2, 3, groups=2))
    with pytest.raises(StrokeLRPError, match="Bilinear"):
        ConvLayer.from_module(nn.Bilinear(2, 2, 2))
    with pytest.raises(StrokeLRPError, match="unknown rule 'gama'"):
        make_rule("gama", 1e-9)
    with pytest.raises(StrokeLRPError, match="gamma must be >= 0"):
        make_rule("gamma", 1e-9, gamma=-1.0)
    with pytest.raises(StrokeLRPError, match="epsilon must be > 0"):
        Epsilon(epsilon=0.0)
    layer, in_shape, _ = make_layer("conv3-pad1", False, 0)
    with pytest.raises(StrokeLRPError, match="one value per input channel"):
        ZBox(low=[0.0, 0.0, 0.0]).relevance(
            layer, torch.rand(1, *in_shape, dtype=F64), torch.rand(1, 3, 3, 4, 4, dtype=F64)
        )


@pytest.mark.parametrize("key", sorted(LAYERS))
@pytest.mark.parametrize("name", ["epsilon", "w+", "z+", "zB", "gamma", "flat", "w2"])
def test_float32_path_matches_the_float64_reference(key: str, name: str) -> None:
    """float32 on the CPU goes through oneDNN directly (forward and transposed step)."""
    eps = 1e-3
    rule = make_rule(name, eps)
    layer64, in_shape, module = make_layer(key, True, 5)
    module32 = module.float()
    layer32 = ConvLayer.from_module(module32)
    gen = torch.Generator().manual_seed(9)
    a = torch.rand(1, *in_shape, generator=gen, dtype=F64)
    r = torch.randn(4, *module32(a.float()).shape[1:], generator=gen, dtype=F64)
    got = rule.relevance(layer32, a.float(), r.float())
    want = rule.relevance(layer64, a, r)
    assert got.dtype == torch.float32
    # relative L2, not element-wise: see tests/lrp/numerics.py. LRP-epsilon's denominators
    # z + eps sign(z) can be as small as eps = 1e-3, which amplifies rounding up to |terms| / eps
    # (measured up to 5e-5 over 20 seeds); the other rules' stay near 1e-7.
    assert_relative_l2(got, want, 1e-3 if name == "epsilon" else 1e-5)


@pytest.mark.parametrize(
    "kernel", [(2, 2, 2), (1, 1, 1), (2, 1, 3), (2, 3), (2,)], ids=lambda k: "x".join(map(str, k))
)
def test_tiling_transposed_convolution_is_pytorchs(kernel: tuple[int, ...]) -> None:
    """The float32 block product (kernel = stride, batch 1) against PyTorch's transposed
    convolution in float64, with a bias."""
    from strokelrp.lrp.rules import _conv_t

    gen = torch.Generator().manual_seed(4)
    n = len(kernel)
    x = torch.randn(1, 5, *range(3, 3 + n), generator=gen, dtype=F64)
    w = torch.randn(5, 3, *kernel, generator=gen, dtype=F64)
    b = torch.randn(3, generator=gen, dtype=F64)
    conv_t = {1: nn.functional.conv_transpose1d, 2: nn.functional.conv_transpose2d}
    want = conv_t.get(n, nn.functional.conv_transpose3d)(x, w, b, stride=kernel)
    got = _conv_t(x.float(), w.float(), b.float(), kernel, (0,) * n, (0,) * n, (1,) * n)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert_relative_l2(got, want, 1e-6)
