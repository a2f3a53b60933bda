"""One interface for every attribution method: hand-computed toy models and identities."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from strokelrp.attribution import (
    attribute,
    label_of,
    method_names,
    parse_method,
    reinitialised,
    score,
)
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.engine import explain
from strokelrp.model import UNet3D

F64 = torch.float64


class Toy(nn.Module):
    """x (1, 3, D, H, W) -> body (1x1 conv, 2 ch) -> LeakyReLU -> head (1x1 conv, 2 logits)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Conv3d(3, 2, 1)
        self.act = nn.LeakyReLU(0.2)
        self.head = nn.Conv3d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.body(x)))


class Linear(nn.Module):
    """Logits: background 0, lesion sum_c w_c x_c + b (a 1x1 convolution)."""

    def __init__(self, w: list[float], b: float = 0.3) -> None:
        super().__init__()
        self.conv = nn.Conv3d(len(w), 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, :, 0, 0, 0] = torch.tensor(w)
            self.conv.bias[1] = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def tiny_unet(seed: int = 0) -> tuple[UNet3D, torch.Tensor]:
    """A width-2 U-Net (float64) whose lesion bias puts about half the voxels in the lesion."""
    torch.manual_seed(seed)
    model = UNet3D(width=2).double().eval()
    x = torch.rand(6, 4, 8, 8, dtype=F64)
    with torch.no_grad():
        out = model(x[None])
        model.head.bias[1] -= (out[:, 1] - out[:, 0]).median()
    return model, x


def all_ones_target(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x[None])
    w = torch.zeros_like(out)
    w[:, 1] = 1.0
    return w


def test_every_method_gives_a_map_of_the_input_shape() -> None:
    model, x = tiny_unet()
    names = method_names()
    assert "lrp:paper" in names and "locality_prior" in names and "occlusion" in names
    for name in names:
        r = attribute(model, x, name)
        assert r.shape == x.shape and r.dtype == F64 and torch.isfinite(r).all(), name


def test_lrp_methods_equal_explain_with_the_same_target_and_filter() -> None:
    model, x = tiny_unet(1)
    for target in ("prediction", "contrastive"):
        got = attribute(model, x, "lrp:composite+pass:0,0.4", target=target)
        from strokelrp.lrp.filters import parse_filter

        want = explain(
            model, x[None], target=target, rules="composite", filters=[parse_filter("pass:0,0.4")]
        ).relevance[0]
        torch.testing.assert_close(got, want)


def test_gradient_is_the_finite_difference_of_the_target() -> None:
    model, x = tiny_unet(2)
    w = all_ones_target(model, x)
    g = attribute(model, x, "gradient", target=w)
    for index in [(0, 1, 2, 3), (5, 3, 7, 0), (2, 0, 0, 5)]:
        h = 1e-6
        up, down = x.clone(), x.clone()
        up[index] += h
        down[index] -= h
        with torch.no_grad():
            fd = (score(model, up[None], w) - score(model, down[None], w)) / (2 * h)
        assert math.isclose(float(g[index]), float(fd[0]), rel_tol=1e-5, abs_tol=1e-9)
    gxi = attribute(model, x, "gradient_x_input", target=w)
    torch.testing.assert_close(gxi, g * x)


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_integrated_gradients_complete_the_difference_to_the_baseline(baseline: str) -> None:
    """sum IG = S(x) - S(b) up to the midpoint rule (piecewise linear net: small error)."""
    model, x = tiny_unet(3)
    w = all_ones_target(model, x)
    ig = attribute(model, x, f"integrated_gradients(steps=64,batch=16,baseline={baseline})", w)
    b = torch.zeros_like(x) if baseline == "zero" else x.mean((1, 2, 3), keepdim=True).expand_as(x)
    with torch.no_grad():
        want = float(score(model, x[None], w)[0] - score(model, b[None].contiguous(), w)[0])
    assert abs(float(ig.sum()) - want) < 2e-2 * abs(want)


def test_integrated_gradients_is_the_mean_of_the_path_gradients() -> None:
    """IG against a loop: one gradient per midpoint b + (k + 1/2)/n (x - b), each taken alone
    on a plain (NCDHW) batch of one; the batched channels-last path must give the same map."""
    model, x = tiny_unet(5)
    w = all_ones_target(model, x)
    steps, b = 5, torch.full_like(x, 0.25)
    want = torch.zeros_like(x)
    for k in range(steps):
        point = (b + (k + 0.5) / steps * (x - b))[None].requires_grad_(True)
        (model(point) * w).sum().backward()
        want += point.grad[0]
    want = (x - b) * want / steps
    got = attribute(model, x, f"integrated_gradients(steps={steps},batch=2,baseline=0.25)", w)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_occlusion_of_single_elements_is_each_contribution_on_a_linear_model() -> None:
    """On S = sum_v (sum_c w_c x_cv + b), zeroing x_cv drops S by w_c x_cv: exactly x * grad."""
    model = Linear([0.5, -2.0, 1.5]).double()
    x = torch.rand(3, 2, 3, 4, dtype=F64)
    w = all_ones_target(model, x)
    occ = attribute(model, x, "occlusion(patch=1,batch=7)", target=w)
    want = torch.tensor([0.5, -2.0, 1.5], dtype=F64).view(3, 1, 1, 1) * x
    torch.testing.assert_close(occ, want)
    # a patch shares its drop evenly over its voxels
    occ2 = attribute(model, x, "occlusion(patch=2;3;4)", target=w)
    torch.testing.assert_close(occ2[1], want[1].mean().expand(2, 3, 4))


def test_occlusion_on_a_2d_linear_model_is_each_contribution() -> None:
    """The 2-D case of the linear-model identity: zeroing x_cv drops S by w_c x_cv; a
    (d, h, w) patch on a 2-D input uses (h, w); a patch of the wrong length is refused."""
    conv = nn.Conv2d(2, 2, 1).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[1, :, 0, 0] = torch.tensor([0.5, -2.0])
    x = torch.rand(2, 3, 4, dtype=F64)
    w = torch.zeros(1, 2, 3, 4, dtype=F64)
    w[:, 1] = 1.0
    occ = attribute(conv, x, "occlusion(patch=1)", target=w)
    torch.testing.assert_close(occ, torch.tensor([0.5, -2.0], dtype=F64).view(2, 1, 1) * x)
    both = attribute(conv, x, "occlusion(patch=9;3;2)", target=w)  # (h, w) = (3, 2)
    want = (torch.tensor([0.5, -2.0], dtype=F64).view(2, 1, 1) * x).reshape(2, 3, 2, 2)
    blocks = want.mean(dim=(1, 3), keepdim=True).expand(2, 3, 2, 2).reshape(2, 3, 4)
    torch.testing.assert_close(both, blocks)
    with pytest.raises(StrokeLRPError, match="one per axis"):
        attribute(conv, x, "occlusion(patch=3;2;1;1)", target=w)


def test_occlusion_of_several_targets_shares_the_forwards_and_skips_zero_patches() -> None:
    """Two targets from one pass equal two separate maps; an all-zero patch costs no forward."""
    from strokelrp.attribution import occlusion, occlusion_maps

    model, x = tiny_unet(4)
    x[:, :2] = 0  # the first two slices are empty: their patches are skipped
    xb = x[None]
    lesion = all_ones_target(model, x)
    background = lesion.flip(1)
    calls: list[int] = []
    handle = model.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    both = occlusion_maps(model, xb, [lesion, background], patch=2, batch=5)
    handle.remove()
    assert sum(calls) == 1 + 6 * 1 * 4 * 4  # x itself, then only the 6 x 16 non-empty patches
    for got, w in zip(both, (lesion, background), strict=True):
        torch.testing.assert_close(got, occlusion(model, xb, w, patch=2, batch=3))
    assert bool((both[0][:, :2] == 0).all())


def test_gradcam_is_the_weighted_relu_of_the_layer() -> None:
    """S = sum_v W_v (h . A_v + c): dS/dA_k = h_k W_v, alpha_k = h_k mean(W)."""
    model = Toy().double().eval()
    x = torch.rand(3, 2, 3, 4, dtype=F64)
    with torch.no_grad():
        a = model.act(model.body(x[None]))
        w = all_ones_target(model, x)
        w[..., 0] = 0  # a target on part of the volume
        h = model.head.weight[1, :, 0, 0, 0]
        alpha = h * w[:, 1].mean()
        cam = torch.relu((alpha.view(1, -1, 1, 1, 1) * a).sum(1))[0]
    got = attribute(model, x, "gradcam(layer=act)", target=w)
    torch.testing.assert_close(got, cam.expand(3, -1, -1, -1) / 3)
    with pytest.raises(StrokeLRPError, match="did you mean 'head'"):
        attribute(model, x, "gradcam(layer=haed)", target=w)


def test_gradcam_defaults_to_the_input_of_the_last_convolution() -> None:
    """UNet3D: the head's input is dec1.act2's output; MONAI's BasicUNet: final_conv reads
    upcat_1's output. The default equals naming that layer, also with frozen parameters; a
    model without convolutions is one clear error."""
    from strokelrp.model.architectures import build_network

    model, x = tiny_unet(8)
    w = all_ones_target(model, x)
    want = attribute(model, x, "gradcam(layer=dec1.act2)", target=w)
    assert float(want.abs().sum()) > 0
    torch.testing.assert_close(attribute(model, x, "gradcam", target=w), want, rtol=0, atol=0)
    torch.manual_seed(1)
    monai = build_network("monai-basicunet", 6, 2, 2).double().eval()
    xm = torch.rand(6, 16, 16, 32, dtype=F64)
    wm = all_ones_target(monai, xm)
    for p in monai.parameters():
        p.requires_grad_(False)
    want = attribute(monai, xm, "gradcam(layer=upcat_1)", target=wm)
    assert float(want.abs().sum()) > 0
    torch.testing.assert_close(attribute(monai, xm, "gradcam", target=wm), want, rtol=0, atol=0)
    with pytest.raises(StrokeLRPError, match="no convolution"):
        attribute(nn.Identity(), x, "gradcam", target=torch.ones_like(x[None]))


def test_locality_prior_by_hand() -> None:
    """One target voxel; |x| exp(-d / 4) with d the Euclidean distance in voxels."""
    x = -torch.ones(2, 1, 3, 5, dtype=F64)
    w = torch.zeros(1, 2, 1, 3, 5, dtype=F64)
    w[0, 1, 0, 1, 1] = 1.0
    r = attribute(Linear([1.0, 1.0]).double(), x, "locality_prior", target=w)
    assert float(r[0, 0, 1, 1]) == 1.0
    assert math.isclose(float(r[1, 0, 0, 3]), math.exp(-math.sqrt(5) / 4))
    r8 = attribute(Linear([1.0, 1.0]).double(), x, "locality_prior(scale=8)", target=w)
    assert math.isclose(float(r8[0, 0, 1, 4]), math.exp(-3 / 8))


def test_method_names_parse_with_options_and_clear_errors() -> None:
    assert parse_method("lrp:epsilon(epsilon=0.01,batchnorm=pass)+pass:0,0.4") == (
        "lrp:epsilon",
        {"epsilon": 0.01, "batchnorm": "pass"},
        "pass:0,0.4",
    )
    assert parse_method("occlusion(patch=2;4;4)") == ("occlusion", {"patch": (2, 4, 4)}, None)
    assert label_of("lrp:paper+pass:0,0.4") == "lrp:paper+pass(0,0.4)"
    with pytest.raises(StrokeLRPError, match="did you mean 'lrp:paper'"):
        parse_method("lrp:papr")
    with pytest.raises(StrokeLRPError, match="did you mean 'gradient'"):
        parse_method("gradiant")
    with pytest.raises(StrokeLRPError, match="LRP methods only"):
        parse_method("gradient+pass:0,0.4")
    model, x = tiny_unet()
    with pytest.raises(StrokeLRPError, match="bad options"):
        attribute(model, x, "gradient(steps=3)")


def test_reinitialised_changes_every_weight_and_leaves_the_model() -> None:
    model, _ = tiny_unet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = reinitialised(model, 1)
    again = reinitialised(model, 1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
        if key.endswith("weight") and "bn" not in key:
            assert not torch.equal(fresh.state_dict()[key], value), key
        torch.testing.assert_close(fresh.state_dict()[key], again.state_dict()[key])
    only_head = reinitialised(model, 2, ["head"])
    assert torch.equal(only_head.enc1.conv1.weight, model.enc1.conv1.weight)
    assert not torch.equal(only_head.head.weight, model.head.weight)


def test_gradients_leave_the_weight_gradients_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the batch-1 CPU path of the U-Net's convolutions (a custom autograd function), a
    gradient map runs one oneDNN convolution per layer forward and one backward (the input
    gradient), not a second one for the weight gradient; the parameters' requires_grad is as
    before afterwards, also when the model raises."""
    from strokelrp import attribution
    from strokelrp.model import conv

    torch.manual_seed(0)
    model = UNet3D(width=2).eval()
    model.head.bias.requires_grad_(False)  # a frozen parameter stays frozen
    x = torch.rand(6, 4, 8, 8)
    w = all_ones_target(model, x)
    layers = sum(1 for m in model.modules() if isinstance(m, conv.Conv3d) and m.kernel_size[0] > 1)
    calls: list[int] = []
    real = conv._onednn_conv
    monkeypatch.setattr(conv, "_onednn_conv", lambda *a: calls.append(1) or real(*a))
    g = attribute(model, x, "gradient", target=w)
    assert len(calls) == 2 * layers
    want = [p.requires_grad for p in model.parameters()]
    assert want.count(False) == 1
    xg = x[None].clone().requires_grad_(True)
    (model(xg) * w).sum().backward()  # the reference: everything requires a gradient
    assert len(calls) == 2 * layers + 3 * layers
    torch.testing.assert_close(g, xg.grad[0], rtol=1e-5, atol=1e-7)
    monkeypatch.setattr(model, "forward", lambda _x: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        attribution._grad(model, x[None], w)
    assert [p.requires_grad for p in model.parameters()] == want


# ------------------------------------------------- defects a new user hit (issue 21, point 5)


class _Dict(nn.Module):
    """A 1x1 convolution whose logits come back in a dict (as many segmentation libraries)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.conv(x), "aux": x.mean()}


@pytest.mark.parametrize("method", ["gradient_x_input", "lrp:epsilon", "gradcam"])
def test_attribute_selects_the_tensor_of_a_dict_output(method: str) -> None:
    """A model returning {"logits": ..., "aux": ...}: attribute explains the first tensor, the
    same map as for the model returning that tensor alone."""
    torch.manual_seed(0)
    model = _Dict().to(F64).eval()
    plain = nn.Sequential(model.conv).eval()  # the same weights, the logits alone
    x = torch.rand(2, 3, 4, 4, dtype=F64)
    got = attribute(model, x, method, target="authors")
    want = attribute(plain, x, method, target="authors")
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if method == "gradient_x_input":  # a linear map: x * sum over classes of the weights
        w = model.conv.weight[:, :, 0, 0, 0].sum(0)
        torch.testing.assert_close(got, x * w[:, None, None, None], rtol=1e-10, atol=1e-12)


def test_prepare_case_takes_a_series_name(tmp_path: Path) -> None:
    import numpy as np

    import strokelrp
    from strokelrp.config import SERIES
    from strokelrp.data.synth import synthesize_isles2017

    data = synthesize_isles2017(tmp_path / "d", 1, shape=(20, 20, 5), seed=0)
    case = strokelrp.load_case(data, "1")
    x, y = strokelrp.prepare_case(case, "A")
    assert x.shape == (6, *SERIES["A"]) and y is not None and y.shape == SERIES["A"]
    x2, _ = strokelrp.prepare_case(case, SERIES["A"])
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(StrokeLRPError, match=r"TrainConfig.*series name"):
        strokelrp.prepare_case(case, 3)  # type: ignore[arg-type]


def test_the_readme_own_network_example_runs() -> None:
    """The README's 'Any PyTorch network' block builds everything it uses."""
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    head = readme.index("Any PyTorch network")
    block = re.search(r"```python\n(.*?)```", readme[head:], re.S)
    assert block is not None
    scope: dict[str, object] = {}
    torch.manual_seed(0)
    exec(compile(block.group(1), "README.md", "exec"), scope)
    assert tuple(scope["exp"].relevance.shape) == (1, 6, 16, 32, 32)  # type: ignore[attr-defined]
