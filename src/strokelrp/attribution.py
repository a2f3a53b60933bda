"""Attribution methods behind one interface: every LRP preset and the usual baselines.

``attribute(model, x, method, target=...)`` gives a map (C, D, H, W) for the same scalar:
``sum(W * logits)`` with W the target weights of :func:`strokelrp.lrp.engine.target_weights`
(by default the lesion logit summed over the voxels predicted as lesion), so that every
method explains the same number. Method names (:data:`METHODS`, :func:`method_names`):

- ``lrp:<preset>[+<filter>]``: :func:`strokelrp.lrp.engine.explain` with that preset (and one
  filter setting applied at every point), e.g. ``lrp:paper+pass:0,0.4``; preset fields may
  be overridden in brackets: ``lrp:epsilon(epsilon=0.01,batchnorm=pass)``;
- ``gradient``: dS/dx; ``gradient_x_input``: x * dS/dx;
- ``integrated_gradients``: (x - b) * mean_k dS/dx(b + a_k (x - b)) over ``steps`` midpoints
  a_k, batched (options ``steps``, ``baseline`` = ``zero`` | ``mean`` | a tensor, ``batch``);
- ``occlusion``: the drop of S when a patch of one channel is set to zero, shared over the
  patch's voxels (options ``patch`` (d, h, w), ``batch``); batched, own implementation;
- ``gradcam``: Grad-CAM at a layer (option ``layer``; default: the input of the model's last
  convolution, ``dec1.act2``'s output in UNet3D), upsampled trilinearly and shared evenly
  over the channels (it has no channel resolution). Own code:
  MONAI's ``GradCAM`` scores ``logits[:, class].sum()`` over *all* voxels, not our target;
- ``locality_prior``: the model-free reference |x| exp(-d / ``scale``), d the distance in
  voxels to the nearest target voxel (option ``scale``, default 4).

Options go in brackets too: ``integrated_gradients(steps=16)``, ``gradcam(layer=dec2.act2)``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import itertools
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from strokelrp.device import batched_layout
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.engine import explain, target_weights
from strokelrp.lrp.filters import filter_label, parse_filter
from strokelrp.lrp.graph import Node
from strokelrp.lrp.presets import PRESETS, preset
from strokelrp.lrp.rules import stabilize
from strokelrp.lrp.steps import Context, Step, register_module_step
from strokelrp.reference import reference_tensor

Method = Callable[..., Tensor]

_SPEC = re.compile(r"^\s*([A-Za-z_:0-9.\-]+?)\s*(?:\((.*?)\))?\s*(?:\+\s*(\S+))?\s*$")


def _value(text: str) -> Any:
    """'0.25' -> 0.25, '16' -> 16, '2,4,4' -> (2, 4, 4), 'pass' -> 'pass'."""
    text = text.strip()
    if "," in text or ";" in text:
        return tuple(_value(t) for t in re.split(r"[,;]", text) if t.strip())
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_method(spec: str) -> tuple[str, dict[str, Any], str | None]:
    """``"lrp:paper(epsilon=0.1)+pass:0,0.4"`` -> ("lrp:paper", {"epsilon": 0.1}, "pass:0,0.4").

    Options are ``key=value`` separated by ``;`` or ``,`` (a value with commas, such as a patch
    ``2;4;4``, uses ``;``). The filter part is only valid for LRP methods.
    """
    m = _SPEC.match(spec)
    if m is None:
        raise StrokeLRPError(f"cannot read method {spec!r}: use NAME, NAME(k=v, ...), lrp:P+FILTER")
    name, opts, filt = m.group(1), m.group(2), m.group(3)
    options: dict[str, Any] = {}
    if opts:
        for part in re.split(r",(?=\s*[A-Za-z_]+\s*=)", opts):
            if "=" not in part:
                raise StrokeLRPError(f"method {spec!r}: option {part!r} is not key=value")
            key, value = part.split("=", 1)
            options[key.strip()] = _value(value)
    if name.startswith("lrp:"):
        if name[4:] not in PRESETS:
            hint = difflib.get_close_matches(name[4:], list(PRESETS), n=1)
            extra = f" (did you mean 'lrp:{hint[0]}'?)" if hint else ""
            raise StrokeLRPError(
                f"unknown LRP preset in method {spec!r}{extra}; known: {', '.join(PRESETS)}"
            )
    elif name not in METHODS:
        hint = difflib.get_close_matches(name, method_names(), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise StrokeLRPError(f"unknown method {spec!r}{extra}; known: {', '.join(method_names())}")
    if filt is not None and not name.startswith("lrp:"):
        raise StrokeLRPError(f"method {spec!r}: filters (+...) apply to LRP methods only")
    if filt is not None:
        parse_filter(filt)  # validated here, with the filter parser's own message
    return name, options, filt


def method_names() -> list[str]:
    """Every method name: ``lrp:<preset>`` for each preset, then the baselines."""
    return [f"lrp:{p}" for p in PRESETS] + list(METHODS)


# ------------------------------------------------------------------------------ the target


def score(model: nn.Module, x: Tensor, weights: Tensor) -> Tensor:
    """The explained scalar per sample: sum(W * model(x)) -> (B,) for x (B, C, D, H, W)."""
    out = model(x)
    return (out * weights).flatten(1).sum(1)


def spatial_rank(model: nn.Module) -> int:
    """The number of spatial axes the model convolves: its first convolution's (2 for a 2-D
    U-Net, 3 for a 3-D one); 3 for a model without convolutions."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return len(module.kernel_size)
    return 3


class SelectedOutput(nn.Module):
    """``model`` whose forward returns only its ``output``-th tensor (in the order of the
    tensors of its return value: dict values, tuple items; as ``explain``'s ``output``)."""

    def __init__(self, model: nn.Module, output: int = 0) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, x: Tensor) -> Tensor:
        from torch.utils import _pytree as pytree

        result = self.model(x)
        tensors = [t for t in pytree.tree_leaves(result) if isinstance(t, Tensor)]
        if not -len(tensors) <= self.output < len(tensors):
            raise StrokeLRPError(
                f"output={self.output} but the model returns {len(tensors)} tensor(s)"
            )
        return tensors[self.output]


def attribution_input(model: nn.Module, x: Tensor | np.ndarray) -> Tensor:
    """x (C, *S) or (1, C, *S) -> (1, C, *S) on the model's device and dtype; S the model's
    spatial axes ((D, H, W) for a 3-D network, (H, W) for a 2-D one: :func:`spatial_rank`)."""
    t = torch.as_tensor(x)
    rank = spatial_rank(model)
    if t.dim() == rank + 1:
        t = t[None]
    if t.dim() != rank + 2 or t.shape[0] != 1:
        axes = "D, H, W" if rank == 3 else ", ".join("SHW"[3 - rank :])
        raise StrokeLRPError(
            f"x must be (C, {axes}) or (1, C, {axes}) for this {rank}-D network, "
            f"got {tuple(t.shape)}"
        )
    param = next(model.parameters(), None)
    if param is not None:
        t = t.to(device=param.device, dtype=param.dtype)
    return t.detach()


def weights_for(
    model: nn.Module, x: Tensor, target: str | Tensor = "prediction", label: Any = None
) -> Tensor:
    """Target weights W (1, num_classes, D, H, W) for x (1, C, D, H, W): a named target
    (:data:`strokelrp.lrp.presets.TARGETS`) evaluated on the model's logits, or W itself."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        model.train(was)
    return weights_of(logits, target, label)


def weights_of(logits: Tensor, target: str | Tensor = "prediction", label: Any = None) -> Tensor:
    """Target weights W of the shape of ``logits`` (1, num_classes, D, H, W), as
    :func:`weights_for` on logits already computed."""
    if isinstance(target, Tensor):
        if tuple(target.shape) != tuple(logits.shape):
            raise StrokeLRPError(
                f"target weights must have the output's shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return target.to(logits)
    return target_weights(target, logits, label)[0]


# ------------------------------------------------------------------------------- methods


@contextlib.contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[None]:
    """Within the block, the model's parameters do not require a gradient (restored on exit,
    also on error), so a backward pass computes input gradients only. Autograd leaves weight
    gradients out of a backward by itself for PyTorch's own convolutions, but not for a custom
    autograd function such as :class:`strokelrp.model.conv.Conv3d`'s batch-1 CPU path, which
    decides from its inputs' ``requires_grad`` alone. Not for a model that another thread
    trains at the same time."""
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _grad(model: nn.Module, x: Tensor, weights: Tensor) -> Tensor:
    """dS/dx (B, C, D, H, W) for a batch x, each sample's own scalar (no weight gradients)."""
    xg = x.detach().requires_grad_(True)
    with input_gradients_only(model):
        (g,) = torch.autograd.grad(score(model, xg, weights).sum(), xg)
    return g


def gradient(model: nn.Module, x: Tensor, weights: Tensor) -> Tensor:
    """dS/dx -> (C, D, H, W)."""
    return _grad(model, x, weights)[0]


def gradient_x_input(model: nn.Module, x: Tensor, weights: Tensor, reference: Any = None) -> Tensor:
    """(x - b) * dS/dx -> (C, D, H, W); b the ``reference`` (:mod:`strokelrp.reference`;
    None: 0, the plain gradient x input)."""
    g = _grad(model, x, weights)
    if reference is None:
        return (x * g)[0]
    return ((x - reference_tensor(x, reference, weights)) * g)[0]


def baseline_of(x: Tensor, baseline: Any, weights: Tensor | None = None) -> Tensor:
    """A number, a tensor broadcast to x, or a reference of :mod:`strokelrp.reference`
    (``healthy``, ``mirror``, ``mean``, ``zero``, an array or a file; the target from
    ``weights``) -> (1, C, *S)."""
    if isinstance(baseline, Tensor) and baseline.shape != x.shape:
        return baseline.to(x).expand_as(x)
    if isinstance(baseline, int | float):
        return torch.full_like(x, float(baseline))
    return reference_tensor(x, baseline, weights)


def integrated_gradients(
    model: nn.Module,
    x: Tensor,
    weights: Tensor,
    steps: int = 32,
    baseline: Any = "zero",
    batch: int = 8,
    reference: Any = None,
) -> Tensor:
    """(x - b) * mean over k of dS/dx at b + a_k (x - b), a_k = (k + 1/2) / steps -> (C, ...).

    b: ``reference`` when given, else ``baseline`` (:func:`baseline_of`).

    The path points go through the model ``batch`` at a time, in :func:`batched_layout`.
    Completeness: sum = S(x) - S(b) up to the midpoint rule's error (tested).
    """
    if steps < 1 or batch < 1:
        raise StrokeLRPError(f"steps and batch must be >= 1, got {steps} and {batch}")
    b = baseline_of(x, baseline if reference is None else reference, weights)
    total = torch.zeros_like(x[0])
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    for chunk in alphas.split(batch):
        path = batched_layout(b + chunk.view(-1, *([1] * (x.dim() - 1))) * (x - b))
        total += _grad(model, path, weights).sum(0)
    return (x - b)[0] * total / steps


def occlusion(
    model: nn.Module,
    x: Tensor,
    weights: Tensor,
    patch: tuple[int, ...] | int = (4, 8, 8),
    batch: int = 16,
    reference: Any = None,
) -> Tensor:
    """Per channel and patch (stride = patch): S(x) - S(x with the patch of that channel set to
    the reference, default zero), divided evenly over the patch's voxels -> (C, *S)."""
    return occlusion_maps(model, x, [weights], patch, batch, reference)[0]


def occlusion_grid(
    spatial: tuple[int, ...], patch: int | Sequence[int], batch: int = 1
) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Occlusion's box sizes (one per axis of ``spatial``; a (d, h, w) patch on a 2-D grid
    uses (h, w)) and the boxes' corners tiling the grid; one clear error for bad sizes."""
    sizes = (patch,) * len(spatial) if isinstance(patch, int) else tuple(int(p) for p in patch)
    if len(sizes) == 3 and len(spatial) == 2:
        sizes = sizes[1:]
    if len(sizes) != len(spatial) or min(sizes) < 1 or batch < 1:
        raise StrokeLRPError(
            f"occlusion patch sizes (one per axis of {spatial}) and batch must be >= 1, "
            f"got {patch!r} and {batch}"
        )
    corners = list(
        itertools.product(*(range(0, n, p) for n, p in zip(spatial, sizes, strict=True)))
    )
    return sizes, corners


def occlusion_maps(
    model: nn.Module,
    x: Tensor,
    weights: Sequence[Tensor],
    patch: tuple[int, ...] | int = (4, 8, 8),
    batch: int = 16,
    reference: Any = None,
) -> list[Tensor]:
    """:func:`occlusion` for several targets W (each (1, K, *S)) from the same perturbed
    forwards (the occluded inputs do not depend on the target) -> one (C, *S) per W.

    x (1, C, *S) with 2 or 3 spatial axes S; ``patch``: one size per axis, or one int for all;
    a (d, h, w) patch on a 2-D input uses its in-plane sizes (h, w). The patch is filled with
    the ``reference`` (:mod:`strokelrp.reference`, its target from the first W; None: zero).
    A patch that already equals the fill leaves the input unchanged: its drop is 0 exactly
    and it costs no forward. x and the occluded batches go through the model in
    :func:`batched_layout`.
    """
    spatial = tuple(x.shape[2:])
    sizes, corners = occlusion_grid(spatial, patch, batch)
    boxes = [
        (ch, *(slice(i, i + p) for i, p in zip(corner, sizes, strict=True)))
        for ch in range(x.shape[1])
        for corner in corners
    ]
    fill = (
        torch.zeros_like(x[0])
        if reference is None
        else reference_tensor(x, reference, weights[0] if weights else None)[0]
    )
    boxes = [b for b in boxes if not torch.equal(x[0][b], fill[b])]
    outs = [torch.zeros_like(x[0]) for _ in weights]
    with torch.no_grad():
        logits0 = model(batched_layout(x))
        s0 = [(logits0 * wt).flatten(1).sum(1)[0] for wt in weights]
        for start in range(0, len(boxes), batch):
            part = boxes[start : start + batch]
            xb = x.repeat(len(part), *([1] * (x.dim() - 1)))
            for n, box in enumerate(part):
                xb[n][box] = fill[box]
            logits = model(batched_layout(xb))
            for out, wt, s in zip(outs, weights, s0, strict=True):
                drops = s - (logits * wt).flatten(1).sum(1)
                for n, box in enumerate(part):
                    view = out[box]
                    view += drops[n] / view.numel()
    return outs


def _hook_conv_inputs(model: nn.Module, seen: list[Tensor]) -> list[RemovableHandle]:
    """Hooks that append the input of every convolution to ``seen`` as the next forward calls
    them; their handles."""
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        raise StrokeLRPError("gradcam: the model has no convolution; name a layer= to use")
    return [m.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for m in convs]


def layer_of(model: nn.Module, layer: str) -> nn.Module:
    """The module named ``layer`` in ``model``, or one error naming the closest name."""
    if isinstance(model, SelectedOutput):  # the user's names, not the wrapper's
        model = model.model
    try:
        return model.get_submodule(layer)
    except AttributeError as err:
        names = [n for n, _ in model.named_modules() if n]
        hint = difflib.get_close_matches(layer, names, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise StrokeLRPError(f"gradcam: the model has no layer {layer!r}{extra}") from err


def gradcam(model: nn.Module, x: Tensor, weights: Tensor, layer: str | None = None) -> Tensor:
    """Grad-CAM: relu(sum_k mean(dS/dA_k) A_k) of a feature map A, upsampled (trilinearly, or
    bilinearly for a 2-D network) to the input grid and shared evenly over the C channels ->
    (C, *S). A: the output of module ``layer``, or by default the input of the last
    convolution the forward calls (the features the output layer reads: for
    :class:`~strokelrp.model.UNet3D` the output of ``dec1.act2``, for MONAI's U-Nets that of
    their last decoder block)."""
    seen: list[Tensor] = []
    if layer is None:
        handles = _hook_conv_inputs(model, seen)
    else:
        module = layer_of(model, layer)
        handles = [module.register_forward_hook(lambda _m, _i, out: seen.append(out))]
    try:  # x requires a gradient, so A does even when the model's parameters do not
        s = score(model, x.detach().requires_grad_(True), weights)
    finally:
        for handle in handles:
            handle.remove()
    if not seen:
        what = "no convolution" if layer is None else f"not the layer {layer!r}"
        raise StrokeLRPError(f"gradcam: the model's forward calls {what}")
    act = seen[-1]
    (g,) = torch.autograd.grad(s.sum(), act)
    alpha = g.mean(dim=tuple(range(2, g.dim())), keepdim=True)
    cam = torch.relu((alpha * act).sum(1, keepdim=True)).detach()
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.dim() - 2]
    cam = F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)
    return cam[0].expand(x.shape[1], *x.shape[2:]) / x.shape[1]


def locality_prior(
    model: nn.Module | None, x: Tensor, weights: Tensor, scale: float = 4.0
) -> Tensor:
    """The model-free map |x| exp(-d / scale), d (voxels) the Euclidean distance to the nearest
    target voxel (where W is non-zero in any class) -> (C, D, H, W); zero without a target."""
    from scipy.ndimage import distance_transform_edt

    if not scale > 0:
        raise StrokeLRPError(f"locality_prior: scale must be > 0, got {scale!r}")
    target = (weights[0] != 0).any(0).cpu().numpy()
    if not target.any():
        return torch.zeros_like(x[0])
    dist = torch.from_numpy(distance_transform_edt(~target)).to(x)
    return x[0].abs() * torch.exp(-dist / scale)


def weighted_start(weights: Tensor) -> Callable[[Tensor], Tensor]:
    """The start ``logits -> W * logits`` (W checked against the output's shape): the target
    of a walk that explains S = sum(W * logits) (a tensor target would be the start itself)."""

    def start(out: Tensor) -> Tensor:
        if tuple(weights.shape) != tuple(out.shape):
            raise StrokeLRPError(
                f"target weights must have the output's shape {tuple(out.shape)}, "
                f"got {tuple(weights.shape)}"
            )
        return out * weights.to(out)

    return start


class ShiftAdd(nn.Module):
    """h -> h + shift for a fixed ``shift`` (1, C, *S): the reference's part of the first
    layer's pre-activation y = h + shift. The relevance walk crosses it with
    :class:`_ShiftAddStep`, so that the layer's rule below divides by the stabilised full
    pre-activation (the shift then keeps its share as a bias would) and a zero shift changes
    nothing."""

    def __init__(self, shift: Tensor) -> None:
        super().__init__()
        self.register_buffer("shift", shift)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.shift


class _ShiftAddStep(Step):
    """R_h = R_y * stab(h) / stab(y), stab(z) = z + eps sign(z): the rule of the layer below
    divides R_h by stab(h), so together R_i = d_i w_ij R_y / stab(y) under LRP-epsilon, the
    reference's part acting as a bias (tests/test_reference.py); R_h = R_y when shift = 0."""

    def save(self, node: Node, inputs: list[Tensor], output: Tensor) -> Any:
        return inputs[0], output

    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        h, y = node.saved
        return [r * (stabilize(h, ctx.epsilon) / stabilize(y, ctx.epsilon))]


register_module_step(ShiftAdd, _ShiftAddStep())


class ReferenceShift(nn.Module):
    """A convolution that reads d = x - b instead of x, with the reference's contribution as a
    fixed shift: norm(conv(d)) + shift, shift = norm(conv(b)) - norm(conv(0)) (``norm``: the
    eval-mode BatchNorm that alone read the convolution's output, or None). The same function
    of x as the original layer(s); the relevance walk sees a convolution (with its norm
    folded, as before) and a :class:`ShiftAdd`."""

    def __init__(self, conv: nn.Module, norm: nn.Module | None, shift: Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.add = ShiftAdd(shift)

    def forward(self, d: Tensor) -> Tensor:
        h = self.conv(d)
        if self.norm is not None:
            h = self.norm(h)
        return self.add(h)


def shifted_model(model: nn.Module, x: Tensor, b: Tensor) -> nn.Module:
    """A copy of ``model`` (eval mode) that reads d = x - b: every convolution that reads the
    input x itself becomes a :class:`ReferenceShift` (with the BatchNorm that the forward calls
    next on its output, which is then an identity). One error when something other than a
    convolution reads the input (the reference could not be moved into a layer)."""
    calls: list[tuple[str, nn.Module, Any, Any]] = []

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, out: Any) -> None:
            calls.append((name, module, args[0] if args else None, out))

        return record

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in model.named_modules()
        if n and not any(True for _ in m.children())
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()

    def same(a: Any, t: Tensor) -> bool:
        return isinstance(a, Tensor) and a.data_ptr() == t.data_ptr() and a.shape == t.shape

    readers = [i for i, (_, _, a, _) in enumerate(calls) if same(a, x)]
    if not readers or any(not isinstance(calls[i][1], nn.modules.conv._ConvNd) for i in readers):
        names = [calls[i][0] for i in readers] or ["nothing traced"]
        raise StrokeLRPError(
            "LRP with a reference needs the input to be read by convolutions only; "
            f"here it is read by {', '.join(names)}"
        )
    clone = copy.deepcopy(model).eval()
    for i in readers:
        name, _, _, out = calls[i]
        norm_name = None
        if i + 1 < len(calls):
            nxt_name, nxt, arg, _ = calls[i + 1]
            if isinstance(nxt, nn.modules.batchnorm._BatchNorm) and same(arg, out):
                norm_name = nxt_name
        new_conv = clone.get_submodule(name)
        new_norm = clone.get_submodule(norm_name) if norm_name else None
        with torch.no_grad():

            def through(v: Tensor, c: nn.Module = new_conv, n: Any = new_norm) -> Tensor:
                h = c(v)
                return n(h) if n is not None else h

            shift = through(b) - through(torch.zeros_like(b))
        parent, _, leaf = name.rpartition(".")
        setattr(clone.get_submodule(parent), leaf, ReferenceShift(new_conv, new_norm, shift))
        if norm_name:
            parent, _, leaf = norm_name.rpartition(".")
            setattr(clone.get_submodule(parent), leaf, nn.Identity())
    return clone


def relative_to(
    model: nn.Module, x: Tensor, reference: Any, weights: Tensor
) -> tuple[nn.Module, Tensor]:
    """(``model`` rewritten to read d = x - b (:func:`shifted_model`), d) for x (1, C, *S) and
    b the ``reference`` (:func:`strokelrp.reference.reference_tensor`, its target the voxels
    where W (1, K, *S) is non-zero): what an LRP walk relative to b walks, from
    :func:`weighted_start` of W."""
    b = reference_tensor(x, reference, weights)
    return shifted_model(model, x, b), x - b


def lrp(
    model: nn.Module,
    x: Tensor,
    weights: Tensor | str,
    rules: str = "paper",
    filter: str | None = None,
    filter_at: str = "all",
    label: Any = None,
    memory_budget: str | int | float | None = None,
    reference: Any = None,
    output: int = 0,
    **overrides: Any,
) -> Tensor:
    """LRP with preset ``rules`` (fields overridden by ``overrides``), starting from
    W * logits, optionally one filter setting (``pass:0,0.4``) -> (C, D, H, W).

    ``reference`` (:mod:`strokelrp.reference`; needs W as a tensor): LRP of the difference
    d = x - b. The network is rewritten to read d (:func:`shifted_model`: the reference's
    contribution becomes a fixed shift after the first convolution), and the walk explains
    the same S through d: the relevance of a channel x voxel is its difference from the
    reference's share (docs/assess.md, "References").

    ``weights``: W (1, num_classes, D, H, W) or a named target (W is then computed from the
    walk's own forward pass: one forward in all). ``memory_budget``: as for
    :func:`strokelrp.lrp.engine.explain`.
    """
    chosen = preset(rules, **overrides)
    start: str | Callable[[Tensor], Tensor] = (
        weights if isinstance(weights, str) else weighted_start(weights)
    )
    filters = None if filter is None else [parse_filter(filter)]
    if reference is not None:
        if isinstance(weights, str):
            raise StrokeLRPError("lrp with a reference needs the target weights W, not a name")
        model, x = relative_to(model, x, reference, weights)
    with warnings.catch_warnings():  # an empty target gives a zero map; assess reports it
        warnings.filterwarnings("ignore", "target .* selects nothing", RuntimeWarning)
        result = explain(
            model,
            x,
            target=start,
            label=label,
            rules=chosen,
            filters=filters,
            filter_at=filter_at,
            memory_budget=memory_budget,
            output=output,
        )
    return result.relevance[0]


METHODS: dict[str, Method] = {
    "gradient": gradient,
    "gradient_x_input": gradient_x_input,
    "integrated_gradients": integrated_gradients,
    "occlusion": occlusion,
    "gradcam": gradcam,
    "locality_prior": locality_prior,
}
"""The non-LRP methods by name; LRP methods are ``lrp:<preset>`` (see :func:`method_names`)."""


REFERENCE_METHODS: tuple[str, ...] = (
    "lrp:<preset>",
    "gradient_x_input",
    "integrated_gradients",
    "occlusion",
)
"""The methods that explain relative to a reference input (option ``reference``)."""


def check_reference(name: str) -> None:
    """One error when method ``name`` takes no reference (gradient, Grad-CAM, the prior)."""
    if not name.startswith("lrp:") and name not in REFERENCE_METHODS:
        raise StrokeLRPError(
            f"method {name!r} takes no reference; these do: {', '.join(REFERENCE_METHODS)}"
        )


def attribute(
    model: nn.Module,
    x: Tensor | np.ndarray,
    method: str,
    target: str | Tensor = "prediction",
    label: Any = None,
    reference: Any = None,
    output: int = 0,
    **options: Any,
) -> Tensor:
    """The map (C, D, H, W) of ``method`` for input ``x`` (C, D, H, W) or (1, C, D, H, W);
    for a 2-D network (:func:`spatial_rank`) x (C, H, W) or (1, C, H, W) and a (C, H, W) map.
    ``output``: which tensor of a model returning several (a dict, a tuple) is explained
    (default the first, as :func:`strokelrp.lrp.engine.explain`).

    ``method``: a name of :func:`method_names`, with options in brackets and, for LRP, a
    filter after ``+`` (``lrp:paper+pass:0,0.4``). ``target``: a named target
    (``prediction``, ``ground_truth`` with ``label`` (D, H, W), ``authors``,
    ``contrastive``) or the weights W (1, num_classes, D, H, W) of the scalar sum(W * logits).
    ``reference``: explain relative to a reference input b (:data:`REFERENCE_METHODS`):
    ``healthy``, ``mirror``, ``mean``, ``zero``, an array (C, D, H, W) or a .npy / NIfTI
    file (:mod:`strokelrp.reference`); the map is then evidence for the target relative to b.
    ``options`` are added to those of the name. The model is used in eval mode (restored
    afterwards); the map is detached, on x's device, in the model's dtype.

    Example::

        model, config = strokelrp.load_run("runs/A")
        x, y = strokelrp.prepare_case(strokelrp.load_case("data", "4"), config)
        r = strokelrp.attribute(model, x, "lrp:composite")          # (6, D, H, W)
        ig = strokelrp.attribute(model, x, "integrated_gradients(steps=16)")
    """
    name, opts, filt = parse_method(method)
    opts.update(options)
    if reference is not None:
        opts["reference"] = reference
    if "reference" in opts:
        check_reference(name)
    xt = attribution_input(model, x)
    was = model.training
    model.eval()
    try:
        if name.startswith("lrp:") and "reference" not in opts:  # W from the walk's forward
            return lrp(
                model, xt, target, rules=name[4:], filter=filt, label=label, output=output, **opts
            ).detach()
        with torch.no_grad():
            logits = model(xt)
        if not isinstance(logits, Tensor):  # a dict or tuple: the chosen tensor, as explain
            model = SelectedOutput(model, output)
            with torch.no_grad():
                logits = model(xt)
        weights = weights_of(logits, target, label)
        if name.startswith("lrp:"):
            return lrp(model, xt, weights, rules=name[4:], filter=filt, **opts).detach()
        fn = METHODS[name]
        try:
            return fn(model, xt, weights, **opts).detach()
        except TypeError as err:
            raise StrokeLRPError(f"method {method!r}: bad options {sorted(opts)} ({err})") from err
    finally:
        model.train(was)


def label_of(method: str) -> str:
    """A canonical label of a method spec (filter written as its label, e.g. pass(0,0.4))."""
    name, opts, filt = parse_method(method)
    body = name
    if opts:
        body += "(" + ",".join(f"{k}={v}" for k, v in opts.items()) + ")"
    if filt is not None:
        body += "+" + filter_label(parse_filter(filt))
    return body


def reinitialised(model: nn.Module, seed: int, modules: list[str] | None = None) -> nn.Module:
    """A copy of ``model`` with every parameterised module (or only those named in
    ``modules``) re-initialised by its own ``reset_parameters`` under ``seed``; BatchNorm
    running statistics are reset too. The original is untouched."""
    clone = copy.deepcopy(model)
    chosen = set(modules) if modules is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in clone.named_modules():
            if chosen is not None and name not in chosen:
                continue
            if hasattr(module, "reset_parameters") and any(
                True for _ in module.parameters(recurse=False)
            ):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    return clone
