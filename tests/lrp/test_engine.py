"""The relevance engine on tiny U-Nets: references, conservation, batching, targets, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numerics import assert_relative_l2
from torch import nn

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.engine import explain
from strokelrp.lrp.filters import PAPER_GRID, ClampFilter, PassFilter
from strokelrp.lrp.presets import preset
from strokelrp.model import UNet3D

F64 = torch.float64


def trained_looking(width: int, seed: int, dtype=F64) -> UNet3D:
    """A U-Net with random weights, biases and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = UNet3D(width=width)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d | nn.ConvTranspose3d) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.to(dtype).eval()


def bias_free(model: UNet3D, bn_shift: bool) -> UNet3D:
    """Zero every convolution bias; BatchNorm keeps a scale, and a shift only if ``bn_shift``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d | nn.ConvTranspose3d) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.BatchNorm3d) and not bn_shift:
                m.running_mean.zero_()
                m.bias.zero_()
    return model


def lesion_target(model: UNet3D, x: torch.Tensor) -> torch.Tensor:
    """Starting relevance of varied amplitude and both signs on random voxels (a tensor)."""
    with torch.no_grad():
        out = model(x)
    gen = torch.Generator().manual_seed(5)
    mask = torch.rand(out.shape[2:], generator=gen) < 0.3
    start = torch.zeros_like(out)
    start[:, 1] = torch.randn(out.shape[2:], generator=gen, dtype=out.dtype) * mask
    return start


# --------------------------------------------------------------- whole-network references


def test_epsilon_equals_gradient_times_input_on_a_bias_free_network() -> None:
    """LRP-epsilon with eps -> 0 on a bias-free piecewise-linear net is x * d(out . m)/dx."""
    model = bias_free(trained_looking(3, 0), bn_shift=False)
    x = torch.rand(1, 6, 7, 12, 12, dtype=F64)
    start = lesion_target(model, x)
    got = explain(model, x, target=start, rules=preset("epsilon", epsilon=1e-14)).relevance
    with torch.no_grad():
        weight = start / model(x)  # start = out * weight, fixed
    xg = x.clone().requires_grad_(True)
    (model(xg) * weight).sum().backward()
    want = x * xg.grad
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-9 * float(want.abs().max()))


def dense_matrix(module: nn.Module, a: np.ndarray) -> np.ndarray:
    """The convolution's linear part as M (n_out, n_in), from unit basis vectors."""
    n = a.size
    basis = torch.eye(n, dtype=F64).view(n, *a.shape[1:])
    with torch.no_grad():
        out = module(basis) - module(torch.zeros_like(basis[:1]))
    return out.reshape(n, -1).T.numpy()


def dense_rule(rule: str, module: nn.Module, a: np.ndarray, r: np.ndarray, eps: float):
    """Textbook rule on the dense matrix: R_i = sum_j z_ji / stab(sum_i z_ji) R_j."""
    m = dense_matrix(module, a)
    av, mp, mn = a.reshape(-1), np.maximum(m, 0), np.minimum(m, 0)
    low, high = 0.0, 1.0  # the paper's z^B bounds
    z = m * av - mp * low - mn * high if rule == "zB" else mp * av
    zs = z.sum(1)
    s = r.reshape(-1) / (zs + eps * np.where(zs >= 0, 1, -1))
    return (z * s[:, None]).sum(0).reshape(a.shape)


def pool_back(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Winner-take-all over 2x2x2 ceil-mode windows, by loops."""
    out = np.zeros_like(a)
    dd, hh, ww = a.shape[2:]
    for c in range(a.shape[1]):
        for od, oh, ow in np.ndindex(*r.shape[2:]):
            window = [
                (d, h, w)
                for d in range(2 * od, min(2 * od + 2, dd))
                for h in range(2 * oh, min(2 * oh + 2, hh))
                for w in range(2 * ow, min(2 * ow + 2, ww))
            ]
            d, h, w = max(window, key=lambda p, c=c: a[0, c, p[0], p[1], p[2]])
            out[0, c, d, h, w] += r[0, c, od, oh, ow]
    return out


def reference_paper(model: UNet3D, x: torch.Tensor, start: torch.Tensor) -> np.ndarray:
    """The paper preset written out by hand for the U-Net (not using the engine's capture)."""
    eps = 1e-9
    acts: dict[str, np.ndarray] = {}

    def block(prefix: str, h: torch.Tensor) -> torch.Tensor:
        blk = getattr(model, prefix)
        acts[f"{prefix}.conv1"] = h.numpy()
        h = blk.act1(blk.bn1(blk.conv1(h)))
        acts[f"{prefix}.conv2"] = h.numpy()
        return blk.act2(blk.bn2(blk.conv2(h)))

    with torch.no_grad():
        e1 = block("enc1", x)
        e2 = block("enc2", model.pool1(e1))
        e3 = block("enc3", model.pool2(e2))
        e4 = block("enc4", model.pool3(e3))
        skips, h = {1: e1, 2: e2, 3: e3}, e4
        for level in (3, 2, 1):
            acts[f"up{level}"] = h.numpy()
            up = getattr(model, f"up{level}")(h)
            d, hh, w = skips[level].shape[2:]
            h = block(f"dec{level}", torch.cat([skips[level], up[..., :d, :hh, :w]], 1))
        acts["head"] = h.numpy()

    def conv_back(name: str, r: np.ndarray) -> np.ndarray:
        rule = "zB" if name == "enc1.conv1" else "w+"
        return dense_rule(rule, model.get_submodule(name), acts[name], r, eps)

    def block_back(prefix: str, r: np.ndarray) -> np.ndarray:
        return conv_back(f"{prefix}.conv1", conv_back(f"{prefix}.conv2", r))

    r = conv_back("head", start.numpy())
    skip_r = {}
    for level in (1, 2, 3):
        r = block_back(f"dec{level}", r)
        c = skips[level].shape[1]
        skip_r[level], r_up = r[:, :c], r[:, c:]
        full = np.zeros((1, r_up.shape[1], *[2 * n for n in acts[f"up{level}"].shape[2:]]))
        full[:, :, : r_up.shape[2], : r_up.shape[3], : r_up.shape[4]] = r_up
        r = conv_back(f"up{level}", full)
    r = block_back("enc4", r)
    for level in (3, 2, 1):
        r = pool_back(skips[level].numpy(), r) + skip_r[level]
        r = block_back(f"enc{level}", r)
    return r


def test_paper_preset_matches_a_hand_written_dense_reference() -> None:
    """z^B first, w+ elsewhere, BatchNorm passing, biases and BN shifts present, odd sizes."""
    model = trained_looking(1, 3)
    x = torch.rand(1, 6, 5, 6, 7, dtype=F64)
    start = lesion_target(model, x)
    got = explain(model, x, target=start, rules="paper").relevance
    want = reference_paper(model, x, start)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-8, atol=1e-10 * np.abs(want).max())


# ---------------------------------------------------------------------------- conservation


@pytest.mark.parametrize("bn", ["pass", "fold"])
def test_epsilon_conserves_on_a_bias_free_network(bn: str) -> None:
    """Per-point in-flight totals equal the output's sum to 1e-5 (float64, small eps).

    Bias-free: no convolution bias and no BatchNorm shift (folded, the shift would become a
    bias; passing, it makes tiny denominators next to large contributions, whose huge
    cancelling relevances lose the sum to rounding).
    """
    model = bias_free(trained_looking(3, 1), bn_shift=False)
    x = torch.rand(1, 6, 7, 12, 12, dtype=F64)
    exp = explain(
        model,
        x,
        target="authors",
        rules=preset("epsilon", epsilon=1e-12, batchnorm=bn),
        filters=[None, None],
    )
    cons = exp.conservation
    assert cons.points[0] == "output" and cons.points[-1] == "input"
    assert len(cons.points) == 20  # output, 18 convolutions, input
    assert cons.max_deviation() < 1e-5
    torch.testing.assert_close(exp.relevance.sum((1, 2, 3, 4)), cons.sums[0], rtol=1e-5, atol=0)
    # the points' own sums are not conserved (skips carry the rest): the report tells them apart
    assert not torch.allclose(cons.sums[1:-1], cons.sums[:1].expand(18, -1), rtol=1e-3)
    assert "| enc1.conv1 |" in cons.table(exp.labels)


@pytest.mark.parametrize("name", ["paper", "wplus", "zplus", "recommended"])
def test_positive_rules_conserve_where_denominators_live(name: str) -> None:
    """z^B, w+ and z+ conserve by construction (no bias), up to relevance on Z = 0 outputs."""
    model = trained_looking(3, 2)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    rules = preset(name, epsilon=1e-12)
    if name == "recommended":  # the epsilon head absorbs its bias: start below the head
        rules = preset(name, head="z+", epsilon=1e-12)
    exp = explain(model, x, target="authors", rules=rules)
    assert exp.conservation.max_deviation() < 1e-6


def test_epsilon_with_biases_reports_what_the_biases_absorb() -> None:
    model = trained_looking(3, 2)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    exp = explain(model, x, target="authors", rules="epsilon")
    assert exp.conservation.max_deviation() > 1e-3


# -------------------------------------------------------------------------------- batching


@pytest.mark.parametrize(("rules", "shape"), [("paper", (5, 8, 8)), ("recommended", (7, 12, 12))])
def test_batched_settings_equal_one_by_one(rules: str, shape: tuple[int, int, int]) -> None:
    model = trained_looking(2, 4)
    x = torch.rand(1, 6, *shape, dtype=F64)
    settings = [
        *(PAPER_GRID if rules == "paper" else PAPER_GRID[::5]),
        PassFilter((0.1, 0.6), scope="channel"),
        ClampFilter((0.05, 0.3), scope="channel"),
    ]
    start = lesion_target(model, x)
    both = explain(model, x, target=start, rules=rules, filters=settings)
    assert both.relevance.shape == (len(settings), 6, *shape)
    assert not both.empty_target
    for k, f in enumerate(settings):
        one = explain(model, x, target=start, rules=rules, filters=[f]).relevance[0]
        torch.testing.assert_close(
            both.relevance[k], one, rtol=1e-5, atol=1e-5 * float(one.abs().max())
        )
    # filtering inside the walk changes the maps
    assert not torch.allclose(both.relevance[0], both.relevance[4])


def test_float32_batch_equals_one_by_one() -> None:
    """float32 on the CPU runs a batch of settings channels-last through oneDNN; the maps still
    equal the ones computed alone (clamp filters: continuous, so rounding cannot flip them)."""
    model = trained_looking(3, 4, dtype=torch.float32)
    x = torch.rand(1, 6, 7, 12, 12)
    start = lesion_target(model, x)
    settings = [None, ClampFilter(0.2), ClampFilter((0.05, 0.5), scope="channel"), None]
    for rules in ("paper", "recommended", "wplus"):
        both = explain(model, x, target=start, rules=rules, filters=settings).relevance
        for k, f in enumerate(settings):
            one = explain(model, x, target=start, rules=rules, filters=[f]).relevance[0]
            torch.testing.assert_close(both[k], one, rtol=1e-4, atol=1e-4 * float(one.abs().max()))
        assert both.is_contiguous()


def test_filters_inside_the_walk_differ_from_filtering_the_output_only() -> None:
    model = trained_looking(2, 4)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    f, t = [PassFilter(0.4)], lesion_target(model, x)
    inside = explain(model, x, target=t, filters=f, filter_at="all", keep_layers=True)
    at_out = explain(model, x, target=t, filters=f, filter_at="output", keep_layers=True)
    some = explain(model, x, target=t, filters=f, filter_at=["output", "head", "up1"])
    raw = explain(model, x, target=t, keep_layers=True)
    assert inside.points[0] == "output" and len(inside.points) == 19
    assert at_out.points == ["output"] and some.points == ["output", "up1", "head"]
    assert raw.points == []
    assert not torch.allclose(inside.relevance, at_out.relevance)
    assert not torch.allclose(at_out.relevance, raw.relevance)
    # kept layers: output start and every convolution's input relevance
    assert set(inside.layers) == {"output", *(n for n in inside.conservation.points[1:-1])}
    assert inside.layers["enc1.conv2"].shape == (1, 2, 5, 8, 8)
    assert inside.layers["up1"].shape == (1, 4 * 2, 3, 4, 4)


# ------------------------------------------------------------------------------- targets


def test_prediction_and_ground_truth_targets() -> None:
    model = trained_looking(2, 5)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    exp = explain(model, x, target="prediction", keep_layers=True)
    logits = exp.output
    pred = logits.argmax(1) == 1
    assert pred.any() and not pred.all()
    start = exp.layers["output"][0]
    assert torch.equal(start[0], torch.zeros_like(start[0]))
    torch.testing.assert_close(start[1], logits[0, 1] * pred[0])
    label = np.zeros((5, 8, 8), dtype=np.uint8)
    label[2, 3:5, 3:6] = 1
    gt = explain(model, x, target="ground_truth", label=label, keep_layers=True)
    torch.testing.assert_close(gt.layers["output"][0, 1], logits[0, 1] * torch.from_numpy(label))
    authors = explain(model, x, target="authors", keep_layers=True)
    torch.testing.assert_close(authors.layers["output"][0], logits[0])
    assert exp.target == "prediction" and gt.target == "ground_truth"


def test_empty_target_gives_zero_maps_and_says_so() -> None:
    model = trained_looking(2, 5)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    label = np.zeros((5, 8, 8), dtype=np.uint8)
    with pytest.warns(RuntimeWarning, match="selects nothing"):
        exp = explain(model, x, target="ground_truth", label=label, filters=PAPER_GRID[:3])
    assert exp.empty_target and "selects nothing" in exp.notes[0]
    assert torch.equal(exp.relevance, torch.zeros_like(exp.relevance))
    assert not torch.isnan(exp.relevance).any()


def test_model_mode_and_state_are_restored() -> None:
    model = trained_looking(2, 6).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    exp = explain(model, x, rules="recommended")
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        torch.testing.assert_close(exp.output, model.eval()(x))


@pytest.mark.parametrize(
    ("rules", "bound"),
    [
        # z+ rules: every denominator is a sum of non-negative terms (measured relative L2
        # errors 1e-7 .. 4e-7 over seeds).
        ("recommended", 1e-5),
        ("zplus", 1e-5),
        # z^B first layer and LRP-epsilon with eps 1e-9: denominators are differences of
        # terms that can nearly cancel, so float32 rounding is amplified by |terms| / |z|
        # (measured 4e-5 .. 9e-4 over seeds, on AVX-512); the bound checks the map, not
        # the few elements behind a near-zero denominator.
        ("paper", 1e-2),
        ("epsilon", 1e-2),
    ],
)
def test_float32_runs_and_matches_float64(rules: str, bound: float) -> None:
    """The float64 prediction target, cast, in both precisions: only the propagation is
    compared (a mask recomputed in float32 could flip a voxel whose two logits tie)."""
    model = trained_looking(2, 7)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    with torch.no_grad():
        out = model(x)
    start = torch.zeros_like(out)
    start[:, 1] = out[:, 1] * (out.argmax(1) == 1)
    assert start.any()
    r64 = explain(model, x, target=start, rules=rules).relevance
    r32 = explain(model.float(), x.float(), target=start.float(), rules=rules).relevance
    assert r32.dtype == torch.float32
    assert_relative_l2(r32, r64, bound)


# -------------------------------------------------------------------------------- errors


class _WithSoftmax(UNet3D):
    def forward(self, x):
        return torch.softmax(super().forward(x), dim=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "lesion"}, "unknown target 'lesion'"),
        ({"target": "ground_truth"}, "needs label="),
        ({"target": "ground_truth", "label": np.zeros((4, 8, 8))}, "spatial shape"),
        ({"target": torch.zeros(1, 2, 5, 8, 7)}, "output's shape"),
        ({"filters": [None], "filter_at": ["enc1.conv9"]}, "enc1.conv1, enc1.conv2"),
        ({"filters": []}, "at least one setting"),
        ({"rules": "papr"}, "did you mean 'paper'"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    model = trained_looking(2, 8, dtype=torch.float32)
    x = torch.rand(1, 6, 5, 8, 8)
    if "filter_at" in kwargs:
        kwargs["filters"] = [PassFilter(0.4)]
    with pytest.raises(StrokeLRPError, match=message):
        explain(model, x, **kwargs)


def test_bad_inputs_and_unknown_modules() -> None:
    model = trained_looking(2, 8, dtype=torch.float32)
    with pytest.raises(StrokeLRPError, match=r"\(1, C, D, H, W\)"):
        explain(model, torch.rand(2, 6, 5, 8, 8))
    with pytest.raises(StrokeLRPError, match="expects 6"):
        explain(model, torch.rand(1, 5, 5, 8, 8))
    with pytest.raises(StrokeLRPError, match=r"float64 on cpu but the model is torch\.float32"):
        explain(model, torch.rand(1, 6, 5, 8, 8, dtype=F64))
    with pytest.raises(StrokeLRPError, match="unknown filter point"):  # checked without filters
        explain(model, torch.rand(1, 6, 5, 8, 8), filter_at="output_layer")
    odd = _WithSoftmax(width=2)
    with pytest.raises(StrokeLRPError, match=r"node 'softmax' \(softmax\) in module 'the model"):
        explain(odd, torch.rand(1, 6, 5, 8, 8))


# ------------------------------------------------------------------- positions and targets


def test_composite_assigns_rules_by_position() -> None:
    """z^B on the first convolution, gamma in the encoder, epsilon in the decoder and head."""
    from strokelrp.lrp.composites import as_composite
    from strokelrp.lrp.rules import LAYER_TYPES, Epsilon, Gamma, ZBox

    model = trained_looking(2, 0)
    comp = as_composite("composite")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
    kinds = {
        n: type(comp.rule_for(n, m, i == 0, i == len(layers) - 1))
        for i, (n, m) in enumerate(layers)
    }
    assert kinds["enc1.conv1"] is ZBox
    assert {kinds[n] for n in kinds if n.startswith("enc") and n != "enc1.conv1"} == {Gamma}
    assert {kinds[n] for n in kinds if n.startswith(("up", "dec"))} == {Epsilon}
    assert kinds["head"] is Epsilon
    assert comp.batchnorm == "fold"


def test_contrastive_start_is_lesion_minus_background_on_predicted_voxels() -> None:
    model = trained_looking(2, 3)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    with torch.no_grad():  # shift the lesion bias so that about half the voxels are lesion
        out = model(x)
        model.head.bias[1] -= (out[:, 1] - out[:, 0]).median()
        out = model(x)
    mask = (out.argmax(1) == 1).to(F64)
    assert 0 < float(mask.sum()) < mask.numel()  # the check below means something
    lesion, background = torch.zeros_like(out), torch.zeros_like(out)
    lesion[:, 1] = out[:, 1] * mask
    background[:, 0] = out[:, 0] * mask
    for rules in ("paper", "composite"):
        got = explain(model, x, target="contrastive", rules=rules)
        assert got.target == "contrastive"
        r_les = explain(model, x, target=lesion, rules=rules).relevance
        r_bg = explain(model, x, target=background, rules=rules).relevance
        want = r_les - r_bg  # every rule is linear in the relevance it redistributes
        err = float((got.relevance - want).norm() / want.norm())
        assert err < 1e-10


@pytest.mark.parametrize("rules", ["paper", "epsilon", "zplus"])
def test_remembered_weights_follow_the_parameters(rules: str) -> None:
    """The rules' derived weights (W+, folded BatchNorm, flipped kernels) are made once per
    model (strokelrp.lrp.rules._memo): after an in-place change of a weight or a BatchNorm
    statistic, or a swapped parameter, the maps are those of a freshly built copy of the
    model, in float32 (oneDNN path, flipped kernels) as in float64, one map as a batch."""
    from strokelrp.lrp import rules as rules_module

    for dtype in (torch.float32, F64):
        model = trained_looking(2, 3, dtype)
        x = torch.rand(1, 6, 5, 8, 8, dtype=dtype)

        def maps(m: nn.Module, x: torch.Tensor = x) -> torch.Tensor:
            filters = [None, PassFilter(0.4)]
            return explain(m, x, target="authors", rules=rules, filters=filters).relevance

        first = maps(model)
        assert torch.equal(maps(model), first)  # remembered: the same values
        with torch.no_grad():
            model.enc1.conv1.weight.mul_(-1.5)
            model.dec1.bn1.running_var.mul_(3.0)
        model.enc2.conv2.weight = nn.Parameter(model.enc2.conv2.weight.detach() * 0.5)
        changed = maps(model)
        fresh = trained_looking(2, 3, dtype)
        fresh.load_state_dict(model.state_dict())
        assert not torch.equal(changed, first)
        assert torch.equal(changed, maps(fresh))
        owners = {id(p) for m in (model, fresh) for p in m.parameters()}
        assert owners & set(rules_module._MEMO)
        del model, fresh
        import gc

        gc.collect()
        assert not owners & set(rules_module._MEMO)  # entries live as long as their parameters
