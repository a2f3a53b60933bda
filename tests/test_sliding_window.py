"""Whole-volume maps through nnU-Net's sliding window, against references written here:
a stitched forward with its own loops (autograd gives the gradient), the unpatched engine on a
volume of one patch, Euler's identity, conservation and the linearity of mirrorings and folds."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from strokelrp.attribution import attribute
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.engine import explain, target_weights
from strokelrp.lrp.filters import ClampFilter, PassFilter
from strokelrp.lrp.presets import preset
from strokelrp.sliding_window import (
    Window,
    window_attribute,
    window_explain,
    window_logits,
    window_weights,
)

F64 = torch.float64
LRP0 = preset("epsilon", epsilon=1e-30)  # LRP-0: a stabiliser far below every |z| in float64


def small_net(seed: int, bias: bool = True, cin: int = 2, k: int = 2) -> nn.Module:
    """A tiny fully convolutional net (any patch size), strided and transposed convolutions."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv3d(cin, 4, 3, padding=1, bias=bias),
        nn.LeakyReLU(0.01),
        nn.Conv3d(4, 6, 2, stride=2, bias=bias),
        nn.LeakyReLU(0.01),
        nn.ConvTranspose3d(6, 4, 2, stride=2, bias=bias),
        nn.LeakyReLU(0.01),
        nn.Conv3d(4, k, 1, bias=bias),
    )
    return net.to(F64).eval()


def random_weights(x: torch.Tensor, seed: int, k: int = 2) -> torch.Tensor:
    """Target weights W (k, *S) of both signs and varied amplitude on about 30 % of voxels."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(k, *x.shape[1:], generator=gen) < 0.3
    return torch.randn(k, *x.shape[1:], generator=gen, dtype=x.dtype) * mask


# ------------------------------------------------------------------- independent reference


def reference_steps(size: int, patch: int, step: float) -> list[int]:
    """nnU-Net's tile starts on one axis, written out: the fewest tiles whose starts are at
    most step * patch apart, spread evenly from 0 to size - patch and rounded."""
    if size <= patch:
        return [0]
    n = 1
    while (size - patch) / n > step * patch:
        n += 1
    return [int(np.round((size - patch) / n * i)) for i in range(n + 1)]


def reference_gaussian(patch: tuple[int, ...]) -> torch.Tensor:
    """The Gaussian importance map: a unit impulse at patch // 2 filtered with sigma = patch/8,
    scaled to a maximum of 10, zeros lifted to the smallest non-zero value."""
    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1.0
    g = gaussian_filter(impulse, [p / 8 for p in patch], 0, mode="constant", cval=0.0)
    g = g * (10.0 / g.max())
    g[g == 0] = g[g > 0].min()
    return torch.from_numpy(g)


def stitched(
    nets: list[nn.Module],
    x: torch.Tensor,
    patch: tuple[int, ...],
    step: float = 0.5,
    mirror: tuple[int, ...] = (),
    use_gauss: bool = True,
) -> torch.Tensor:
    """nnU-Net's sliding-window logits (K, *S) of x (C, *S), differentiable, with own loops:
    pad to the patch, tiles, mirror averaging, Gaussian-weighted sum over the normaliser,
    average over networks, crop."""
    shape = x.shape[1:]
    padded = [max(s, p) for s, p in zip(shape, patch, strict=True)]
    before = [(p - s) // 2 for s, p in zip(shape, padded, strict=True)]
    xp = x.new_zeros(x.shape[0], *padded)
    xp[(slice(None), *(slice(b, b + s) for b, s in zip(before, shape, strict=True)))] = x
    g = reference_gaussian(patch).to(x.dtype) if use_gauss else torch.ones(patch, dtype=x.dtype)
    flips = [()] + [c for i in range(len(mirror)) for c in itertools.combinations(mirror, i + 1)]
    starts = [reference_steps(s, p, step) for s, p in zip(padded, patch, strict=True)]
    total = 0
    for net in nets:
        acc = 0
        norm = torch.zeros(padded, dtype=x.dtype)
        for corner in itertools.product(*starts):
            sl = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
            piece = xp[(slice(None), *sl)][None]
            y = 0
            for f in flips:
                dims = [a + 2 for a in f]
                y = y + (torch.flip(net(torch.flip(piece, dims)), dims) if f else net(piece))
            y = y[0] / len(flips)
            full = torch.zeros(y.shape[0], *padded, dtype=x.dtype)
            full[(slice(None), *sl)] = y * g
            acc = acc + full
            norm[sl] += g
        total = total + acc / norm
    out = total / len(nets)
    return out[(slice(None), *(slice(b, b + s) for b, s in zip(before, shape, strict=True)))]


# ------------------------------------------------------------------------------ the window


@pytest.mark.parametrize(
    ("size", "patch", "step"), [(10, 4, 0.5), (37, 16, 0.5), (16, 16, 0.5), (50, 12, 0.33)]
)
def test_tile_starts_match_nnunets_rule(size: int, patch: int, step: float) -> None:
    assert Window((patch,), step=step).starts((size,)) == [reference_steps(size, patch, step)]


def test_tile_starts_and_gaussian_equal_nnunets_own_functions() -> None:
    sw = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    for image, patch in [((40, 33, 20), (16, 16, 8)), ((16, 20, 9), (16, 12, 8))]:
        assert Window(patch).starts(image) == sw.compute_steps_for_sliding_window(image, patch, 0.5)
    g = sw.compute_gaussian((16, 12, 8), 1 / 8, 10, dtype=torch.float64, device=torch.device("cpu"))
    torch.testing.assert_close(Window((16, 12, 8)).importance(F64), g.to(F64))


def test_gaussian_matches_the_reference_and_has_no_zero() -> None:
    g = Window((9, 8, 6)).importance(F64)
    torch.testing.assert_close(g, reference_gaussian((9, 8, 6)), rtol=1e-12, atol=0)
    assert float(g.min()) > 0 and float(g.max()) == pytest.approx(10.0)


def test_bad_windows_are_refused() -> None:
    with pytest.raises(StrokeLRPError, match="step"):
        Window((8, 8, 8), step=0)
    with pytest.raises(StrokeLRPError, match="mirror_axes"):
        Window((8, 8, 8), mirror_axes=(3,))
    with pytest.raises(StrokeLRPError, match="spatial axes"):
        window_logits(small_net(0), torch.zeros(2, 8, 8), Window((8, 8, 8)))


@pytest.mark.parametrize("mirror", [(), (0, 2)])
def test_logits_equal_the_independent_stitched_forward(mirror: tuple[int, ...]) -> None:
    nets = [small_net(0), small_net(1)]
    x = torch.randn(2, 13, 10, 6, dtype=F64)  # padded on the last axis, several tiles on others
    window = Window((8, 6, 8), mirror_axes=mirror)
    with torch.no_grad():
        want = stitched(nets, x, (8, 6, 8), mirror=mirror)
    torch.testing.assert_close(window_logits(nets, x, window), want, rtol=1e-10, atol=1e-12)


def test_float16_stitching_equals_nnunets_own_predictor_bit_for_bit() -> None:
    """nnU-Net 2.x stitches in float16 (importance map, sums, normaliser, fold sum): with
    ``stitch_dtype=torch.float16`` the logits equal its predictor's, two folds and mirroring."""
    predict = pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    a, b = small_net(0).float(), small_net(1).float()
    predictor = predict.nnUNetPredictor(
        use_mirroring=True,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        allow_tqdm=False,
    )
    predictor.network = small_net(2).float()  # nnU-Net loads each fold's weights into it
    predictor.configuration_manager = SimpleNamespace(patch_size=[8, 6, 8])
    predictor.label_manager = SimpleNamespace(num_segmentation_heads=2)
    predictor.allowed_mirroring_axes = (0, 2)
    predictor.list_of_parameters = [a.state_dict(), b.state_dict()]
    x = torch.randn(2, 21, 10, 6)  # three tiles, one axis padded
    want = predictor.predict_logits_from_preprocessed_data(x.clone())
    window = Window((8, 6, 8), mirror_axes=(0, 2))
    assert torch.equal(window_logits([a, b], x, window, stitch_dtype=torch.float16), want)


# -------------------------------------------------------------------------------- gradient


@pytest.mark.parametrize("mirror", [(), (1,)])
def test_gradient_equals_autograd_through_the_stitched_forward(mirror: tuple[int, ...]) -> None:
    nets = [small_net(0), small_net(1)]
    x = torch.randn(2, 14, 9, 6, dtype=F64)
    window = Window((8, 6, 8), mirror_axes=mirror)
    w = random_weights(x, 0)
    xg = x.clone().requires_grad_(True)
    (stitched(nets, xg, (8, 6, 8), mirror=mirror) * w).sum().backward()
    got = window_attribute(nets, x, window, "gradient", w)
    torch.testing.assert_close(got, xg.grad, rtol=1e-9, atol=1e-12)
    gxi = window_attribute(nets, x, window, "gradient_x_input", w)
    torch.testing.assert_close(gxi, x * xg.grad, rtol=1e-9, atol=1e-12)


def test_integrated_gradients_equal_the_path_integral_of_the_stitched_gradient() -> None:
    net = small_net(2)
    x = torch.randn(2, 12, 8, 8, dtype=F64)
    window = Window((8, 8, 8))
    w = random_weights(x, 6)
    ig = window_attribute(net, x, window, "integrated_gradients(steps=3, baseline=mean)", w)
    base = x.mean(dim=(1, 2, 3), keepdim=True)
    total = torch.zeros_like(x)
    for a in (1 / 6, 3 / 6, 5 / 6):
        xg = (base + a * (x - base)).requires_grad_(True)
        (stitched([net], xg, (8, 8, 8)) * w).sum().backward()
        total += xg.grad
    torch.testing.assert_close(ig, (x - base) * total / 3, rtol=1e-9, atol=1e-12)


def test_occlusion_equals_drops_of_the_stitched_score() -> None:
    net = small_net(3)
    x = torch.randn(2, 11, 8, 6, dtype=F64)
    window = Window((8, 8, 6))
    w = random_weights(x, 7)
    got = window_attribute(net, x, window, "occlusion(patch=4;4;6)", w)
    with torch.no_grad():
        s0 = (stitched([net], x, (8, 8, 6)) * w).sum()
        want = torch.zeros_like(x)
        for ch in range(2):
            for a, b in itertools.product(range(0, 11, 4), range(0, 8, 4)):
                box = (ch, slice(a, a + 4), slice(b, b + 4), slice(0, 6))
                xo = x.clone()
                xo[box] = 0
                drop = s0 - (stitched([net], xo, (8, 8, 6)) * w).sum()
                want[box] = drop / want[box].numel()
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------ one patch = engine


@pytest.mark.parametrize(
    "method",
    [
        "lrp:epsilon",
        "lrp:composite+pass:0,0.4",
        "lrp:paper+clamp:0,0.2",
        "gradient",
        "gradient_x_input",
        "gradcam",
        "occlusion(patch=2;4;4)",
        "integrated_gradients(steps=4)",
    ],
)
def test_a_volume_of_one_patch_gives_the_unpatched_map(method: str) -> None:
    net = small_net(4)
    x = torch.randn(2, 8, 8, 6, dtype=F64)
    window = Window((8, 8, 6))
    w = random_weights(x, 1)
    got = window_attribute(net, x, window, method, w)
    want = attribute(net, x, method, target=w[None])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_a_volume_of_one_patch_gives_every_filter_setting_of_the_engine() -> None:
    net = small_net(5)
    x = torch.randn(2, 8, 8, 6, dtype=F64)
    window = Window((8, 8, 6))
    w = random_weights(x, 2)
    settings = [None, PassFilter((0, 0.2)), PassFilter((0.4, 1)), ClampFilter((0, 0.1))]
    got = window_explain(net, x, window, w, "composite", settings)
    want = explain(
        net, x[None], target=lambda out: out * w[None], rules="composite", filters=settings
    )
    torch.testing.assert_close(got.relevance, want.relevance, rtol=1e-12, atol=0)
    torch.testing.assert_close(got.conservation.totals, want.conservation.totals)


# ---------------------------------------------------------------- LRP: Euler, conservation


@pytest.mark.parametrize("mirror", [(), (0, 1)])
def test_lrp0_on_a_bias_free_net_is_gradient_times_input_through_the_window(
    mirror: tuple[int, ...],
) -> None:
    nets = [small_net(6, bias=False), small_net(7, bias=False)]
    x = torch.randn(2, 14, 10, 6, dtype=F64)
    window = Window((8, 6, 6), mirror_axes=mirror)
    w = random_weights(x, 3)
    got = window_attribute(nets, x, window, "lrp:epsilon(epsilon=1e-30)", w)
    xg = x.clone().requires_grad_(True)
    (stitched(nets, xg, (8, 6, 6), mirror=mirror) * w).sum().backward()
    want = x * xg.grad
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9 * float(want.abs().max()))


def test_the_volume_relevance_sums_to_the_explained_scalar() -> None:
    nets = [small_net(8, bias=False)]
    x = torch.randn(2, 15, 9, 7, dtype=F64)
    window = Window((8, 8, 6), mirror_axes=(2,))
    w = random_weights(x, 4)
    result = window_explain(nets, x, window, w, LRP0)
    with torch.no_grad():
        score = float((window_logits(nets, x, window) * w).sum())
    assert result.score == pytest.approx(score, rel=1e-10)
    assert float(result.relevance.sum()) == pytest.approx(score, rel=1e-8)
    c = result.conservation
    assert float(c.totals[0, 0]) == pytest.approx(score, rel=1e-10)
    assert c.max_deviation() < 1e-8
    tiles = len(window.tiles(x.shape[1:]))
    assert result.patches <= tiles * 2 and result.patches > 1


def test_mirrorings_and_folds_average_linearly() -> None:
    a, b = small_net(9), small_net(10)
    x = torch.randn(2, 12, 12, 6, dtype=F64)  # symmetric tiles: starts 0, 4 of size 8
    # uniform weights: the Gaussian of an even patch is centred at patch // 2, not symmetric
    plain = Window((8, 8, 6), gaussian=False)
    mirrored = Window((8, 8, 6), mirror_axes=(1,), gaussian=False)
    w = random_weights(x, 5)
    both = window_explain([a, b], x, mirrored, w, "epsilon").relevance
    per_fold = [window_explain(n, x, mirrored, w, "epsilon").relevance for n in (a, b)]
    torch.testing.assert_close(both, (per_fold[0] + per_fold[1]) / 2, rtol=1e-10, atol=1e-14)
    # a mirroring: the explanation of the flipped volume with the flipped target, flipped back
    direct = window_explain(a, x, plain, w, "epsilon").relevance
    flip = torch.flip(
        window_explain(a, torch.flip(x, [2]), plain, torch.flip(w, [2]), "epsilon").relevance, [3]
    )
    torch.testing.assert_close(per_fold[0], (direct + flip) / 2, rtol=1e-10, atol=1e-14)


def test_gradcam_is_stitched_and_nonnegative() -> None:
    net = small_net(11)
    x = torch.randn(2, 14, 8, 6, dtype=F64)
    window = Window((8, 8, 6))
    w = random_weights(x, 8)
    cam = window_attribute(net, x, window, "gradcam", w)
    assert cam.shape == x.shape and float(cam.min()) >= 0
    torch.testing.assert_close(cam[0], cam[1])


def test_weights_of_the_wrong_shape_are_refused() -> None:
    net = small_net(0)
    x = torch.randn(2, 8, 8, 6, dtype=F64)
    with pytest.raises(StrokeLRPError, match="target weights"):
        window_attribute(net, x, Window((8, 8, 6)), "gradient", torch.zeros(2, 8, 8, 5))


def test_target_weights_come_from_the_stitched_logits() -> None:
    net = small_net(12)
    x = torch.randn(2, 12, 8, 6, dtype=F64)
    window = Window((8, 8, 6))
    logits = window_logits(net, x, window)
    want = target_weights("prediction", logits[None])[0][0]
    torch.testing.assert_close(window_weights(net, x, window), want)
