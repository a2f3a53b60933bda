"""The engine on networks it was not written for: MONAI BasicUNet, a residual UNet, DynUNet,
2-D networks, plain ``nn.Sequential`` classifiers; errors for what it cannot explain.

The reference is Euler's identity, independent of the engine: on a bias-free, piecewise-linear
network (BatchNorm with zero running mean and zero shift is a per-channel scale) the output is
positively homogeneous, so LRP-0 (the epsilon preset with a tiny epsilon) must equal
gradient x input computed by autograd.
"""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet, DynUNet, UNet
from torch import nn

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp import Composite, explain, preset
from strokelrp.lrp.filters import ClampFilter, PassFilter
from strokelrp.lrp.rules import Epsilon, WPlus, ZBox

F64 = torch.float64
LRP0 = preset("epsilon", epsilon=1e-14)


def piecewise_linear(model: nn.Module, seed: int) -> nn.Module:
    """Zero every bias and BatchNorm mean/shift; random BN scales and PReLU slopes; float64."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None and isinstance(m.bias, torch.Tensor):
                m.bias.zero_()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    return model.to(F64).eval()


def gradient_x_input(model: nn.Module, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """x * d(out . w)/dx with w = start / out fixed, by autograd."""
    with torch.no_grad():
        weight = start / model(x)
    xg = x.clone().requires_grad_(True)
    (model(xg) * weight).sum().backward()
    assert xg.grad is not None
    return x * xg.grad


def random_start(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(out.shape, generator=gen) < 0.4
    return out * mask


NETWORKS = {
    "basicunet-3d-deconv": (
        lambda: BasicUNet(3, 2, 2, features=(2, 3, 3, 4, 4, 2), norm="batch", bias=False),
        (1, 2, 16, 16, 16),
    ),
    "basicunet-3d-odd-linear-upsampling": (
        lambda: BasicUNet(
            3, 2, 2, features=(2, 2, 3, 3, 4, 2), norm="batch", upsample="nontrainable"
        ),
        (1, 2, 16, 18, 17),  # odd sizes: UpCat pads (replicate) after comparing shapes
    ),
    "unet-residual-prelu": (
        lambda: UNet(3, 2, 2, channels=(2, 4, 4), strides=(2, 2), num_res_units=2, norm="batch"),
        (1, 2, 8, 8, 8),
    ),
    "dynunet-residual": (
        lambda: DynUNet(
            3,
            2,
            2,
            kernel_size=[3, 3, 3],
            strides=[1, 2, 2],
            upsample_kernel_size=[2, 2],
            filters=[2, 3, 4],
            norm_name="batch",
            res_block=True,
        ),
        (1, 2, 8, 8, 8),
    ),
    "basicunet-2d": (
        lambda: BasicUNet(2, 3, 2, features=(2, 2, 3, 3, 4, 2), norm="batch"),
        (1, 3, 16, 32),
    ),
    "unet-2d-sigmoid-head": (
        lambda: UNet(2, 1, 1, channels=(3, 4), strides=(2,), num_res_units=1, norm="batch"),
        (1, 1, 9, 10),
    ),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_lrp0_equals_gradient_times_input(name: str) -> None:
    factory, shape = NETWORKS[name]
    model = piecewise_linear(factory(), seed=1)
    x = torch.randn(*shape, dtype=F64)
    start = random_start(model, x)
    got = explain(model, x, target=start, rules=LRP0).relevance[0]
    want = gradient_x_input(model, x, start)[0]
    err = float((got - want).norm() / want.norm())
    assert err < 1e-6, err


@pytest.mark.parametrize("name", ["unet-residual-prelu", "dynunet-residual", "basicunet-2d"])
def test_lrp0_conserves_at_every_layer_of_bias_free_networks(name: str) -> None:
    """Everything in flight after each layer (the cut through the network) sums to the start."""
    factory, shape = NETWORKS[name]
    model = piecewise_linear(factory(), seed=2)
    x = torch.randn(*shape, dtype=F64)
    exp = explain(model, x, target="authors", rules=LRP0, filters=[None, None])
    cons = exp.conservation
    n_layers = sum(
        isinstance(m, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d)
        for m in model.modules()
    )
    assert len(cons.points) == n_layers + 2
    assert cons.max_deviation() < 1e-6


def test_filter_points_are_module_paths_and_batched_settings_agree() -> None:
    factory, shape = NETWORKS["basicunet-3d-deconv"]
    model = piecewise_linear(factory(), seed=4)
    x = torch.rand(*shape, dtype=F64)
    start = random_start(model, x)
    settings = [None, PassFilter(0.4), PassFilter((0.1, 0.7), scope="channel")]
    both = explain(model, x, target=start, rules="zplus", filters=settings, keep_layers=True)
    assert both.points[:3] == ["output", "conv_0.conv_0.conv", "conv_0.conv_1.conv"]
    assert both.points[-1] == "final_conv"
    for k, f in enumerate(settings):
        one = explain(model, x, target=start, rules="zplus", filters=[f]).relevance[0]
        torch.testing.assert_close(both.relevance[k], one, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["basicunet-3d-deconv", "basicunet-3d-odd-linear-upsampling"])
def test_float32_batch_of_settings_matches_float64(name: str) -> None:
    """float32 on the CPU walks a batch of settings channels-last (max pooling scattered in
    that layout, the 1x1 head as a product, MONAI's zero padding passed as is): each map
    equals the float64 walk's to float32 rounding. z+ and clamp filters (0, a): no near-zero
    denominator and no threshold that rounding could flip (a lower bound is one: it
    raises a tiny value to +-a1 N by its sign)."""
    factory, shape = NETWORKS[name]
    model = piecewise_linear(factory(), seed=5)
    x = torch.rand(*shape, dtype=F64)
    start = random_start(model, x)
    settings = [None, ClampFilter(0.3), None, ClampFilter(0.6)]
    r64 = explain(model, x, target=start, rules="zplus", filters=settings).relevance
    r32 = explain(
        model.float(), x.float(), target=start.float(), rules="zplus", filters=settings
    ).relevance
    assert r32.dtype == torch.float32
    for k in range(len(settings)):
        err = float((r32[k].double() - r64[k]).norm() / r64[k].norm())
        assert err < 1e-5, (k, err)
    assert not torch.allclose(r64[0], r64[1])  # the filter acted


class _Classifier(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(2, 3, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(3, 4, 3, stride=2, bias=False),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 1 * 2, 3, bias=False),
            nn.Identity(),
        )


def test_sequential_classifier_with_pooling_flatten_and_linear() -> None:
    torch.manual_seed(5)
    model = _Classifier().to(F64).eval()
    x = torch.rand(1, 2, 8, 11, dtype=F64)
    start = torch.tensor([[0.0, 1.0, 0.0]], dtype=F64) * model(x).detach()
    got = explain(model, x, target=start, rules=LRP0).relevance[0]
    torch.testing.assert_close(got, gradient_x_input(model, x, start)[0], rtol=1e-8, atol=1e-12)
    predicted = int(model(x).argmax())
    exp = explain(model, x, target="prediction", rules="wplus", class_index=predicted)
    assert not exp.empty_target
    assert exp.conservation.points == ["output", "6", "3", "0", "input"]  # walk order


def test_composite_rules_by_type_and_path_and_last_means_last_layer() -> None:
    """An Identity after the last layer does not move the head rule (it did by position)."""
    torch.manual_seed(6)
    model = _Classifier().to(F64).eval()
    x = torch.rand(1, 2, 8, 11, dtype=F64)
    start = model(x).detach()
    comp = Composite.of({"first": ZBox(low=0.0, high=1.0), "last": "epsilon", nn.Conv2d: "w+"})
    by_hand = explain(model, x, target=start, rules=comp, keep_layers=True)
    same = Composite.of({"0": ZBox(), "6": Epsilon(), "3": WPlus()})
    torch.testing.assert_close(
        explain(model, x, target=start, rules=same).relevance, by_hand.relevance
    )
    as_preset = explain(model, x, target=start, rules=preset("paper", head="epsilon"))
    torch.testing.assert_close(as_preset.relevance, by_hand.relevance)
    other = Composite.of({"first": ZBox(), nn.Linear: "epsilon", "*": Epsilon()})
    assert not torch.allclose(
        explain(model, x, target=start, rules=other).relevance, by_hand.relevance
    )
    with pytest.raises(StrokeLRPError, match=r"no rule for layer '3' \(Conv2d\)"):
        explain(model, x, target=start, rules=Composite.of({"first": "zB", "last": "w+"}))


def test_sigmoid_output_prediction_target() -> None:
    factory, shape = NETWORKS["unet-2d-sigmoid-head"]
    model = piecewise_linear(factory(), seed=7)
    x = torch.randn(*shape, dtype=F64)
    exp = explain(model, x, rules=LRP0, keep_layers=True)
    logit = exp.output[0, 0]
    assert (logit > 0).any() and (logit <= 0).any()
    torch.testing.assert_close(exp.layers["output"][0, 0], logit * (logit > 0))
    seen = explain(model, x, rules=LRP0, target=lambda out: out.clamp(min=0)).relevance
    torch.testing.assert_close(seen, exp.relevance)


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv3d(2, 2, 3, padding=1)
        self.attention = nn.Sequential(nn.Conv3d(2, 2, 1))
        self.head = nn.Conv3d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h * torch.sigmoid(self.attention(h)))


class _Softmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(2, 2, 3, padding=1), nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_unsupported_operations_name_the_node_module_and_extension_point() -> None:
    x = torch.rand(1, 2, 4, 4, 4)
    with pytest.raises(
        StrokeLRPError,
        match=r"node 'body.1.softmax' \(softmax\) in module 'body.1' \(Softmax\).*register_",
    ):
        explain(_Softmax(), x)
    with pytest.raises(
        StrokeLRPError, match=r"node 'mul' \(mul\) in module 'the model itself'.*each other"
    ):
        explain(_Gated(), x)
    with pytest.raises(StrokeLRPError, match="groups=2"):
        explain(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), torch.rand(1, 2, 5, 5))
    with pytest.raises(StrokeLRPError, match="batch size 1"):
        explain(nn.Sequential(nn.Conv2d(2, 2, 3)), torch.rand(2, 2, 5, 5))


def test_registering_a_step_extends_the_engine() -> None:
    from strokelrp.lrp import PASS, register_module_step
    from strokelrp.lrp.steps import MODULE_STEPS

    class Scaled(nn.Module):  # a user's own activation: 2 * relu(x)
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x).mul(2.0).clamp(max=1e9)

    model = nn.Sequential(nn.Conv2d(2, 2, 3, bias=False), Scaled(), nn.Conv2d(2, 1, 1, bias=False))
    model = model.to(F64)
    x = torch.rand(1, 2, 6, 6, dtype=F64)
    with pytest.raises(StrokeLRPError, match=r"node '1.clamp' \(clamp\) in module '1' \(Scaled\)"):
        explain(model, x, rules=LRP0, target="authors")
    register_module_step(Scaled, PASS)
    try:
        got = explain(model, x, rules=LRP0, target="authors").relevance[0]
    finally:
        del MODULE_STEPS[Scaled]
    start = model(x).detach()
    torch.testing.assert_close(got, gradient_x_input(model, x, start)[0], rtol=1e-8, atol=1e-12)


class _TwoHeads(nn.Module):
    """Deep supervision: a full-resolution head and a pooled auxiliary head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.head = nn.Conv2d(3, 2, 1, bias=False)
        self.aux = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(3, 2, 1, bias=False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.body(x))
        return self.head(h), self.aux(h)


def test_several_outputs_explain_the_first_unless_told() -> None:
    torch.manual_seed(8)
    model = _TwoHeads().to(F64).eval()
    x = torch.rand(1, 2, 6, 6, dtype=F64)
    main, aux = model(x)
    first = explain(model, x, target="authors", rules=LRP0)
    assert first.output.shape == main.shape
    assert first.conservation.points == ["output", "head", "body", "input"]  # aux not walked
    second = explain(model, x, target="authors", rules=LRP0, output=1)
    assert second.output.shape == aux.shape
    assert second.conservation.points == ["output", "aux.1", "body", "input"]

    xg = x.clone().requires_grad_(True)
    (model(xg)[1] * 1.0).sum().backward()
    torch.testing.assert_close(second.relevance[0], (x * xg.grad)[0], rtol=1e-8, atol=1e-12)
    with pytest.raises(StrokeLRPError, match="returns 2 tensor"):
        explain(model, x, output=2)


def test_a_step_returning_one_tensor_for_two_inputs_is_not_overwritten() -> None:
    """The walk sums and divides relevance in place; a step may hand the same tensor to two
    inputs. Reference: Euler's identity on a linear network whose two branches are equal (so
    the step's half/half split is LRP-0's proportional one)."""
    from strokelrp.lrp import Step, register_module_step
    from strokelrp.lrp.steps import MODULE_STEPS

    class Join(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    class Halves(Step):
        def relevance(self, node, r, ctx):  # type: ignore[no-untyped-def]
            half = r / 2
            return [half, half]  # one tensor for both inputs

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c0 = nn.Conv2d(2, 3, 3, padding=1, bias=False)
            self.c1 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
            self.c2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
            self.join = Join()
            self.c3 = nn.Conv2d(3, 1, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.c0(x)
            return self.c3(self.join(self.c1(h), self.c2(h)))

    torch.manual_seed(3)
    model = Net().to(F64)
    model.c2.load_state_dict(model.c1.state_dict())  # equal branches
    x = torch.rand(1, 2, 6, 6, dtype=F64)
    register_module_step(Join, Halves())
    try:
        got = explain(model, x, rules=LRP0, target="authors", filters=[None, None]).relevance
    finally:
        del MODULE_STEPS[Join]
    want = gradient_x_input(model, x, model(x).detach())[0]
    for k in range(2):
        torch.testing.assert_close(got[k], want, rtol=1e-8, atol=1e-12)


class _Attending(nn.Module):
    """1x1 convolution, self-attention over the voxels, 1x1 convolution (no biases)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 1, bias=False)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Conv3d(4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        seq = h.flatten(2).transpose(1, 2)  # (1, voxels, 4)
        out, _ = self.attn(seq, seq, seq)
        return self.head(out.transpose(1, 2).reshape(h.shape))


def test_a_module_returning_several_tensors_is_named_and_a_step_for_it_works() -> None:
    """nn.MultiheadAttention returns (output, weights): without a step the error names the op,
    its module and register_module_step; with PASS registered the walk crosses it, checked
    against LRP-0 written out by hand (head, PASS, the reshapes, the first convolution)."""
    from strokelrp.lrp import PASS, register_module_step
    from strokelrp.lrp.steps import MODULE_STEPS

    torch.manual_seed(0)
    model = _Attending().to(F64).eval()
    x = torch.rand(1, 2, 2, 3, 3, dtype=F64) + 0.1
    with pytest.raises(
        StrokeLRPError,
        match=r"multi_head_attention_forward.*module 'attn' \(MultiheadAttention\).*"
        r"register_module_step\(MultiheadAttention",
    ):
        explain(model, x, rules=LRP0, target="authors")
    register_module_step(nn.MultiheadAttention, PASS)
    try:
        got = explain(model, x, rules=LRP0, target="authors").relevance[0]
    finally:
        del MODULE_STEPS[nn.MultiheadAttention]
    with torch.no_grad():  # by hand: R = a * W^T (R_out / z) per 1x1 convolution
        w1 = model.conv.weight[:, :, 0, 0, 0]  # (4, 2)
        w2 = model.head.weight[:, :, 0, 0, 0]  # (2, 4)
        h = torch.einsum("oc,cdhw->odhw", w1, x[0])
        seq = h.flatten(1).T[None]
        out = model.attn(seq, seq, seq)[0][0].T.reshape(h.shape)  # (4, D, H, W)
        z = torch.einsum("oc,cdhw->odhw", w2, out)  # the logits; R_start = z (authors)
        r_out = out * torch.einsum("oc,odhw->cdhw", w2, z / z)
        want = x[0] * torch.einsum("oc,odhw->cdhw", w1, r_out / h)  # PASS: R_h = R_out
    torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


def test_the_error_names_the_function_object_that_registers() -> None:
    """x.clamp(min=0) is recorded as the tensor method: the error says
    register_function_step(torch.Tensor.clamp, ...), and registering exactly that works."""
    from strokelrp.lrp import PASS, register_function_step
    from strokelrp.lrp.steps import FUNCTION_STEPS

    class Clamped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x.clamp(min=0))

    model = Clamped().to(F64)
    x = torch.rand(1, 2, 4, 4, dtype=F64)
    with pytest.raises(StrokeLRPError, match=r"register_function_step\(torch\.Tensor\.clamp, "):
        explain(model, x, rules=LRP0, target="authors")
    register_function_step(torch.Tensor.clamp, PASS)
    try:
        got = explain(model, x, rules=LRP0, target="authors").relevance[0]
    finally:
        del FUNCTION_STEPS[torch.Tensor.clamp]
    with torch.no_grad():  # x >= 0: LRP-0 of one bias-free linear layer is x * w
        want = x[0] * model.conv.weight[0, :, 0, 0][:, None, None]
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)
