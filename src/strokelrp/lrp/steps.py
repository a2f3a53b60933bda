"""The registry from operation to relevance step: how relevance crosses each kind of node.

A *step* takes the relevance at a node's output, ``r`` (K, *out_shape[1:]) (the batch
dimension of the forward value, 1, replaced by the K filter settings) and returns one tensor
(K, *in_shape[1:]) or None per recorded input. Convolutions and linear layers are not here:
their rules come from the composite (``strokelrp.lrp.composites``). Built-in steps:

- :data:`PASS`: relevance passes unchanged (activations, norms, dropout, ``Identity``, dtype
  and memory-layout changes, multiplication or division by a constant, negation);
- :class:`Adjoint`: relevance is *moved* by the operation's adjoint (autograd's vector-Jacobian
  product), conservative for selections and copies: slicing/cropping, padding (constant: what
  falls on the padding is dropped; replicate: it returns to the edge), reshape/flatten/permute,
  ``torch.stack``, nearest interpolation, functional max pooling;
- :class:`ZRule`: R_in = a * J^T (R / stab(z)) for linear maps with non-negative weights whose
  output is a weighted mix of inputs (linear interpolation, average pooling): LRP-0 on that map;
- :data:`CAT`: concatenation, relevance cut into the inputs' parts;
- :data:`MAXPOOL`: max-pooling modules, relevance to each window's winner;
- :data:`ADD`: addition/subtraction (residual connections): relevance split in proportion to
  the summands' contributions c_i, R_i = c_i / stab(sum c + constant) * R.

Extend with :func:`register_module_step` / :func:`register_function_step`::

    from strokelrp.lrp import PASS, register_module_step
    register_module_step(MyScaledActivation, PASS)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.graph import Node, Ref
from strokelrp.lrp.rules import maxpool_forward, maxpool_relevance, stabilize


class Context(Protocol):
    """What a step may ask of the walk: ``epsilon`` the stabiliser of the structural steps,
    ``sum_epsilon`` that of additions of network values (the composite's ``sums``)."""

    epsilon: float
    sum_epsilon: float

    def value(self, name: str) -> Tensor:
        """The forward value ``name`` (1, ...) (only values the step's ``keeps`` asked for)."""
        ...


class Step:
    """Base of the relevance steps (see the module docstring)."""

    def keeps(self, node: Node) -> tuple[bool, bool]:
        """Whether the walk needs the node's (input values, output value)."""
        return False, False

    def save(self, node: Node, inputs: list[Tensor], output: Tensor) -> Any:
        """Called once at capture time with the node's recorded inputs and output."""
        return None

    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        """(K, *out_shape[1:]) -> one (K, *in_shape[1:]) (or None) per recorded input."""
        raise NotImplementedError


def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``t`` (K, ...) over the dimensions broadcasting expanded from ``shape`` (1, ...)."""
    target = (t.shape[0], *shape[1:])
    if tuple(t.shape) == target:
        return t
    lead = t.dim() - len(target)
    if lead:
        t = t.sum(dim=tuple(range(1, 1 + lead)))
    dims = tuple(i for i in range(1, t.dim()) if target[i] == 1 and t.shape[i] != 1)
    return t.sum(dim=dims, keepdim=True) if dims else t


class _Pass(Step):
    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        out: list[Tensor | None] = [None] * len(node.inputs)
        first = _first_ref(node)
        out[first] = _sum_to(r, node.in_shapes[first])
        return out


def _first_ref(node: Node) -> int:
    """Index (among the recorded inputs) of the first argument: ``self`` / ``input``."""
    for a in (*node.args, *node.kwargs.values()):
        if isinstance(a, Ref):
            return a.index
    return 0


PASS = _Pass()
"""Relevance passes unchanged to the first input."""


def _vjp(node: Node, primals: list[Tensor], cot: Tensor) -> list[Tensor]:
    """J^T cot for each primal; ``cot`` (K, *out[1:]), the primals (1, ...)."""
    _, fn = torch.func.vjp(lambda *ts: node.call(list(ts)), *primals)
    try:
        outs = torch.func.vmap(fn)(cot.unsqueeze(1))
        return [o.squeeze(1) for o in outs]
    except RuntimeError:  # an op without a batching rule: one setting at a time
        per = [fn(cot[k : k + 1]) for k in range(cot.shape[0])]
        return [torch.cat([p[i] for p in per]) for i in range(len(primals))]


@dataclass(frozen=True)
class Adjoint(Step):
    """Relevance moved by the adjoint of the operation. ``linear``: the op is linear, so its
    adjoint needs only the inputs' shapes (no forward values kept)."""

    linear: bool = True

    def keeps(self, node: Node) -> tuple[bool, bool]:
        return not self.linear, False

    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        if self.linear:
            primals = [r.new_zeros(s) for s in node.in_shapes]
        else:
            primals = [ctx.value(n) for n in node.inputs]
        return list(_vjp(node, primals, r))


@dataclass(frozen=True)
class ZRule(Step):
    """LRP-0 (epsilon-stabilised) on a linear map with one recorded input:
    R_in = a * J^T (R / stab(z))."""

    def keeps(self, node: Node) -> tuple[bool, bool]:
        return True, True

    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        if len(node.inputs) != 1:
            raise StrokeLRPError(f"node {node.name!r} ({node.kind}): expects one network input")
        a = ctx.value(node.inputs[0])
        z = ctx.value(node.output or "")
        (g,) = _vjp(node, [a], r / stabilize(z, ctx.epsilon))
        return [g.mul_(a)]


class _Cat(Step):
    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        seq = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(seq, list | tuple) or not all(isinstance(t, Ref) for t in seq):
            return Adjoint().relevance(node, r, ctx)
        sizes = [node.in_shapes[t.index][dim] for t in seq]
        out: list[Tensor | None] = [None] * len(node.inputs)
        for ref, part in zip(seq, r.split(sizes, dim=dim), strict=True):
            out[ref.index] = part if out[ref.index] is None else out[ref.index] + part
        return out


CAT = _Cat()
"""Concatenation: the relevance is cut along the concatenated dimension."""


class _GetItem(Step):
    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        index = node.args[1] if len(node.args) > 1 else None
        if not isinstance(index, tuple):
            index = (index,)
        simple = all(i is Ellipsis or isinstance(i, slice | int) for i in index) and (
            index[0] is Ellipsis or index[0] == slice(None)
        )
        if len(node.inputs) != 1 or not simple:
            return Adjoint().relevance(node, r, ctx)
        shape = (r.shape[0], *node.in_shapes[0][1:])
        # zero-filled in r's layout: a channels-last batch copied across layouts is slow
        out = torch.empty(shape, dtype=r.dtype, device=r.device, memory_format=layout_of(r))
        out.zero_()[index] = r
        return [out]


class _Pad(Step):
    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        if len(node.inputs) == 1 and isinstance(pad, list | tuple) and not any(pad):
            return [r]  # padding by nothing (MONAI's UpCat pads to match sizes): as is
        return Adjoint().relevance(node, r, ctx)


PAD = _Pad()
"""Padding: what falls on the padding is dropped (constant) or returns to the edge
(replicate, reflect: the adjoint); a padding of zero passes the relevance as it is."""


def layout_of(t: Tensor) -> torch.memory_format:
    """``t``'s memory format: channels-last 3-D when channels vary fastest (views included)."""
    if t.dim() == 5 and t.shape[1] > 1 and t.stride(1) == 1:
        return torch.channels_last_3d
    return torch.contiguous_format


GETITEM = _GetItem()
"""Slicing / cropping: relevance back to the selected elements, zero elsewhere."""


class _MaxPool(Step):
    def save(self, node: Node, inputs: list[Tensor], output: Tensor) -> Any:
        return maxpool_forward(node.target, inputs[0])[1]  # type: ignore[arg-type]

    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        return [maxpool_relevance(r, node.saved)]


MAXPOOL = _MaxPool()
"""Max-pooling modules: relevance to the window's winner (windows sharing a winner add)."""


_SUB = {torch.sub, torch.subtract, Tensor.sub, Tensor.sub_, Tensor.__sub__, Tensor.__isub__}
_RSUB = {Tensor.__rsub__, torch.rsub}


class _Add(Step):
    """c_i = the op with only input i (others zero) minus the op with all inputs zero."""

    def save(self, node: Node, inputs: list[Tensor], output: Tensor) -> Any:
        plain = (
            node.target in _PLAIN_ADD
            and not node.kwargs
            and len(node.args) == 2
            and all(isinstance(a, Ref) for a in node.args)
            and all(s == output.shape for s in node.in_shapes)
        )
        if plain:  # a + b: the contributions are the summands
            return list(inputs), None
        zeros = [torch.zeros_like(t) for t in inputs]
        base = node.call([z.clone() for z in zeros])
        contribs = []
        for i, t in enumerate(inputs):
            args = [z.clone() for z in zeros]
            args[i] = t.clone()
            contribs.append(node.call(args) - base)
        return contribs, (base if bool(base.any()) else None)

    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        contribs, constant = node.saved
        z = contribs[0] if len(contribs) == 1 else torch.stack(contribs).sum(0)
        if constant is not None:
            z = z + constant
        s = r / stabilize(z, ctx.sum_epsilon)
        return [_sum_to(s * c, shape) for c, shape in zip(contribs, node.in_shapes, strict=True)]


_PLAIN_ADD = {torch.add, Tensor.add, Tensor.add_, Tensor.__add__, Tensor.__radd__, Tensor.__iadd__}
ADD = _Add()
"""Addition / subtraction: relevance split in proportion to the summands' contributions."""


class _Scale(Step):
    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        if len(node.inputs) != 1 or (
            node.target in _DIVIDE and not (node.args and isinstance(node.args[0], Ref))
        ):
            raise StrokeLRPError(
                f"node {node.name!r} ({node.kind}) in module {node.path or 'the model itself'!r} "
                "multiplies or divides network values by each other (gating, attention): "
                "there is no relevance step for that; register one with "
                "strokelrp.lrp.register_function_step"
            )
        return [_sum_to(r, node.in_shapes[0])]


_DIVIDE = {torch.div, torch.true_divide, Tensor.div, Tensor.div_, Tensor.__truediv__}
_DIVIDE |= {Tensor.__itruediv__}
SCALE = _Scale()
"""Multiplication or division by a constant, negation: relevance passes (R = c x / (c x))."""


class _Interpolate(Step):
    """Nearest: relevance moved (:class:`Adjoint`); linear modes: :class:`ZRule`."""

    def _mode(self, node: Node) -> str:
        if isinstance(node.target, nn.Upsample):
            return node.target.mode
        if len(node.args) > 3:
            return str(node.args[3])
        return str(node.kwargs.get("mode", "nearest"))

    def _inner(self, node: Node) -> Step:
        return Adjoint() if self._mode(node).startswith("nearest") else ZRule()

    def keeps(self, node: Node) -> tuple[bool, bool]:
        return self._inner(node).keeps(node)

    def relevance(self, node: Node, r: Tensor, ctx: Context) -> list[Tensor | None]:
        return self._inner(node).relevance(node, r, ctx)


INTERPOLATE = _Interpolate()


# --------------------------------------------------------------------------- the registry

MODULE_STEPS: dict[type[nn.Module], Step] = {}
"""Module type -> step (looked up along the type's MRO, so subclasses inherit)."""
FUNCTION_STEPS: dict[Callable[..., Any], Step] = {}
"""Function or tensor method -> step."""


def register_module_step(types: type[nn.Module] | Iterable[type[nn.Module]], step: Step) -> None:
    """Record modules of ``types`` (and subclasses) as single nodes crossed by ``step``."""
    for t in [types] if isinstance(types, type) else types:
        MODULE_STEPS[t] = step


def register_function_step(funcs: Callable[..., Any] | Iterable[Callable[..., Any]], step: Step):
    """Cross calls of ``funcs`` (``torch.mul``, ``torch.Tensor.__mul__`` ...) with ``step``."""
    for f in [funcs] if callable(funcs) else funcs:
        FUNCTION_STEPS[f] = step


def module_step(module: nn.Module) -> Step | None:
    """The registered step of ``module``'s type or nearest base type, or None."""
    for t in type(module).__mro__:
        if t in MODULE_STEPS:
            return MODULE_STEPS[t]
    return None


def function_step(func: Callable[..., Any]) -> Step | None:
    """The registered step of a function or tensor method, or None."""
    try:
        return FUNCTION_STEPS.get(func)
    except TypeError:  # unhashable
        return None


_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
)
_NORMS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
register_module_step((*_ACTIVATIONS, *_NORMS, *_DROPOUT, nn.Identity), PASS)
register_module_step((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), MAXPOOL)
register_module_step(
    (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d), Adjoint(linear=False)
)
register_module_step(
    (
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool3d,
    ),
    ZRule(),
)
register_module_step((nn.Flatten, nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle), Adjoint())
register_module_step(nn.Upsample, INTERPOLATE)

register_function_step(
    (
        F.relu,
        F.relu_,
        torch.relu,
        torch.relu_,
        Tensor.relu,
        F.leaky_relu,
        F.prelu,
        F.elu,
        F.selu,
        F.gelu,
        F.silu,
        F.mish,
        F.softplus,
        F.hardtanh,
        F.relu6,
        torch.sigmoid,
        Tensor.sigmoid,
        F.sigmoid,
        torch.tanh,
        Tensor.tanh,
        F.tanh,
        F.dropout,
        F.dropout1d,
        F.dropout2d,
        F.dropout3d,
        F.batch_norm,
        F.instance_norm,
        F.group_norm,
        F.layer_norm,
        Tensor.contiguous,
        Tensor.clone,
        torch.clone,
        Tensor.float,
        Tensor.double,
        Tensor.to,
        Tensor.type_as,
        Tensor.detach,
    ),
    PASS,
)
register_function_step(
    (
        torch.mul,
        Tensor.mul,
        Tensor.__mul__,
        Tensor.__rmul__,
        Tensor.__imul__,
        *_DIVIDE,
        torch.neg,
        Tensor.neg,
        Tensor.__neg__,
    ),
    SCALE,
)
register_function_step((*_PLAIN_ADD, *_SUB, *_RSUB), ADD)
register_function_step((torch.cat, torch.concat, torch.concatenate), CAT)
register_function_step(Tensor.__getitem__, GETITEM)
register_function_step(F.pad, PAD)
register_function_step(
    (
        torch.stack,
        torch.reshape,
        Tensor.reshape,
        Tensor.view,
        Tensor.view_as,
        Tensor.reshape_as,
        torch.flatten,
        Tensor.flatten,
        Tensor.unflatten,
        torch.permute,
        Tensor.permute,
        torch.transpose,
        Tensor.transpose,
        torch.movedim,
        Tensor.movedim,
        torch.squeeze,
        Tensor.squeeze,
        torch.unsqueeze,
        Tensor.unsqueeze,
        Tensor.expand,
        Tensor.expand_as,
        Tensor.repeat,
        torch.narrow,
        Tensor.narrow,
        torch.roll,
        torch.flip,
        Tensor.flip,
        F.pixel_shuffle,
        F.pixel_unshuffle,
    ),
    Adjoint(),
)
register_function_step(
    (F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d),
    Adjoint(linear=False),
)
register_function_step(
    (
        F.avg_pool1d,
        F.avg_pool2d,
        F.avg_pool3d,
        F.adaptive_avg_pool1d,
        F.adaptive_avg_pool2d,
        F.adaptive_avg_pool3d,
    ),
    ZRule(),
)
register_function_step((F.interpolate, F.upsample), INTERPOLATE)
