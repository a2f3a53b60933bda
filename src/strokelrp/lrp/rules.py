"""Relevance rules for (transposed) convolutions in 1-3 D and linear layers, max pooling, and
BatchNorm folding.

A convolution is seen as a linear map ``z = W a + b``. Every rule here has the same shape
(the paper's algorithm 1, generalised): the rule names *terms* ``(c_t, W_t)`` built from the
input activation ``a`` and the weight ``W``; then

    Z     = sum_t forward(c_t, W_t)  (+ b for the epsilon rule)
    S     = R / stab(Z),             stab(Z) = Z + eps * sign(Z), sign(0) = +1
    R_in  = sum_t c_t * gradprop(S, W_t)

where ``gradprop`` is the layer's transposed operation (``conv_transposeNd`` for ``ConvNd``,
``convNd`` for ``ConvTransposeNd``, ``s @ W`` for ``Linear``). The terms are stacked along
the input channels so that ``Z`` is one convolution and ``gradprop`` is one transposed
convolution. ``Z`` (and stab(Z))
is computed once with batch 1; the relevance ``R`` may carry a batch of K filter settings.

Shapes: activations ``(1, C_in, *S)``, relevance ``(K, C_out, *s)`` (S: 0-3 spatial dims).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from strokelrp.errors import StrokeLRPError

Ints = tuple[int, ...]
Bound = float | Sequence[float] | Tensor

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
LAYER_TYPES = (*CONV_TYPES, *TRANSPOSED_TYPES, nn.Linear)
"""The modules a rule applies to: (transposed) convolutions in 1-3 D and ``Linear``."""

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
T = TypeVar("T")
_MEMO: dict[int, tuple[weakref.ref[Tensor], dict[Hashable, tuple[Any, ...]]]] = {}


def _stamp(t: Tensor) -> tuple[Any, ...]:
    return (t._version, t.data_ptr(), t.dtype, t.device, tuple(t.shape))


def _memo(
    origin: tuple[Tensor, ...],
    key: Hashable,
    compute: Callable[[], T],
    sources: tuple[Tensor, ...] = (),
) -> T:
    """``compute()``, remembered under ``key`` for the parameters ``origin`` while none of
    them changes (in-place updates bump the version counter; a swapped ``.data``, dtype or
    device changes the storage), ``origin[1:]`` are the same tensors and the tensors
    ``compute`` reads (``sources``: e.g. a layer's weight, taken from ``origin`` earlier) have
    the same version, storage, dtype and device.

    Weights derived from a layer's parameters (W+, the stacked terms of a rule, a folded
    BatchNorm, the flipped kernel of the transposed step) are made once per model rather
    than at every ``explain``. The entry lives as long as the parameter ``origin[0]`` (a
    weak reference); ``origin`` empty or an unhashable ``key``: not remembered.
    """
    if not origin:
        return compute()
    try:
        hash(key)
    except TypeError:
        return compute()
    owner = origin[0]
    slot = _MEMO.get(id(owner))
    if slot is None or slot[0]() is not owner:
        key_id = id(owner)
        ref = weakref.ref(owner, lambda _r: _MEMO.pop(key_id, None))
        slot = _MEMO[key_id] = (ref, {})
    entries = slot[1]
    stamp = tuple(_stamp(t) for t in (*origin, *sources))
    hit = entries.get(key)
    others = origin[1:]
    if (
        hit is not None
        and hit[0] == stamp
        and len(hit[1]) == len(others)
        and all(a is b for a, b in zip(hit[1], others, strict=True))
    ):
        return hit[2]
    value = compute()
    entries[key] = (stamp, others, value)
    return value


def _ints(value: int | Sequence[int], n: int, what: str, module: nn.Module) -> Ints:
    if isinstance(value, str):
        raise StrokeLRPError(f"{module}: padding={value!r} is not supported (use integers)")
    out = tuple(value) if isinstance(value, Sequence) else (value,) * n
    if len(out) != n:
        raise StrokeLRPError(f"{module}: {what} must have {n} entries, got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvLayer:
    """A (transposed) convolution in 1-3 D or a ``Linear`` as a linear map: weight, bias, geometry.

    ``weight`` is laid out as the module's (``ConvNd``: (C_out, C_in, *k);
    ``ConvTransposeNd``: (C_in, C_out, *k); ``Linear``: (C_out, C_in)); ``in_dim`` is the
    weight's input-channel dim. A ``Linear`` has ``dims`` = 0 and acts on the last dimension.
    """

    transposed: bool
    weight: Tensor
    bias: Tensor | None
    stride: Ints
    padding: Ints
    dilation: Ints
    output_padding: Ints = ()
    linear: bool = False
    origin: tuple[Tensor, ...] = field(default=(), compare=False, repr=False)
    """The module's parameters (and a folded BatchNorm's) that ``weight`` and ``bias`` are
    computed from: what the derived weights of :func:`_memo` are remembered for."""

    @classmethod
    def from_module(cls, module: nn.Module) -> ConvLayer:
        """View a ``nn.ConvNd`` / ``nn.ConvTransposeNd`` (groups 1, zero padding) or a
        ``nn.Linear`` as a layer."""
        params = (module.weight, getattr(module, "bias", None))
        origin = tuple(p for p in params if isinstance(p, Tensor))
        if isinstance(module, nn.Linear):
            return cls(
                transposed=False,
                weight=module.weight.detach(),
                bias=None if module.bias is None else module.bias.detach(),
                stride=(),
                padding=(),
                dilation=(),
                linear=True,
                origin=origin,
            )
        if not isinstance(module, LAYER_TYPES):
            raise StrokeLRPError(f"no convolution rule for {type(module).__name__}")
        if module.groups != 1:
            raise StrokeLRPError(
                f"{module}: grouped convolutions (groups={module.groups}) are not supported; "
                "only groups=1"
            )
        if module.padding_mode != "zeros":
            raise StrokeLRPError(f"{module}: padding_mode={module.padding_mode!r} not supported")
        transposed = isinstance(module, TRANSPOSED_TYPES)
        n = module.weight.dim() - 2
        return cls(
            transposed=transposed,
            weight=module.weight.detach(),
            bias=None if module.bias is None else module.bias.detach(),
            stride=_ints(module.stride, n, "stride", module),
            padding=_ints(module.padding, n, "padding", module),
            dilation=_ints(module.dilation, n, "dilation", module),
            output_padding=_ints(module.output_padding, n, "output_padding", module)
            if transposed
            else (0,) * n,
            origin=origin,
        )

    @property
    def dims(self) -> int:
        """Number of spatial dimensions (0 for ``Linear``)."""
        return self.weight.dim() - 2

    @property
    def in_dim(self) -> int:
        """The weight dimension that indexes the layer's input channels."""
        return 0 if self.transposed else 1

    @property
    def out_dim(self) -> int:
        """The weight dimension that indexes the layer's output channels."""
        return 1 if self.transposed else 0

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """The layer's map with ``weight``: (B, C_in', *S) -> (B, C_out, *s)."""
        if self.linear:
            return F.linear(x, weight, bias)
        if self.transposed:
            return _conv_t(
                x, weight, bias, self.stride, self.padding, self.output_padding, self.dilation
            )
        return _conv(x, weight, bias, self.stride, self.padding, self.dilation)

    def gradprop(
        self, s: Tensor, weight: Tensor, in_shape: Sequence[int], memo: Hashable = None
    ) -> Tensor:
        """The transposed map: (K, C_out, *s) -> (K, C_in', *in_shape) (spatial shape).

        ``memo``: a key under which the flipped kernel made from ``weight`` may be remembered
        for the layer's parameters (:func:`_memo`; ``weight`` must then be a function of them
        and of the key alone); None: made anew."""
        if self.linear:
            return s.matmul(weight)
        if self.transposed:
            return _conv(s, weight, None, self.stride, self.padding, self.dilation)
        k = weight.shape[2:]
        ones = (1,) * self.dims
        if all(kk == 1 for kk in k) and self.stride == ones and not any(self.padding):
            # pointwise (a 1x1 head): one product over the channels for all settings, its
            # result channels-last (K, C_in', *S), the layout the next step works in
            return torch.matmul(s.movedim(1, -1), weight.flatten(1)).movedim(-1, 1)
        if (
            _onednn(s, weight)
            and self.stride == ones
            and self.dilation == ones
            and all(p <= kk - 1 for p, kk in zip(self.padding, k, strict=True))
        ):  # the transposed convolution as a convolution with the flipped, transposed kernel
            pad = [kk - 1 - p for p, kk in zip(self.padding, k, strict=True)]
            fmt = CHANNELS_LAST if s.is_contiguous(memory_format=CHANNELS_LAST) else None

            def flip() -> Tensor:
                return _dense(weight.transpose(0, 1).flip(*range(2, weight.dim())), fmt)

            origin = self.origin if memo is not None else ()
            flipped = _memo(origin, ("flipped", memo, fmt == CHANNELS_LAST), flip, (weight,))
            return torch.mkldnn_convolution(
                _dense(s, fmt), flipped, None, pad, list(ones), list(ones), 1
            )
        extra = tuple(
            n - ((m - 1) * st - 2 * p + dl * (kk - 1) + 1)
            for n, m, st, p, dl, kk in zip(
                in_shape, s.shape[2:], self.stride, self.padding, self.dilation, k, strict=True
            )
        )
        return _conv_t(s, weight, None, self.stride, self.padding, extra, self.dilation)


CHANNELS_LAST = torch.channels_last_3d


def _onednn(x: Tensor, weight: Tensor) -> bool:
    """Whether to call oneDNN directly: a 3-D convolution in float32 on the CPU, a kernel
    wider than 1.

    PyTorch sends a batch-1 CPU convolution to oneDNN only when ``N * C * D * H`` exceeds
    20480; below that its im2col path is several times slower here (see
    ``strokelrp.model.conv``, which does the same for training). Results agree to rounding.
    """
    return (
        x.device.type == "cpu"
        and x.dim() == 5
        and weight.dim() == 5
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and any(k > 1 for k in weight.shape[2:])
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def batch_layout(a: Tensor) -> Tensor:
    """An activation (1, C, D, H, W) laid out as the prepared rules use it (channels-last on
    the CPU in float32), so that neither preparing nor calling them copies it; other tensors
    are returned as they are."""
    if a.dim() == 5 and a.device.type == "cpu" and _onednn(a, a.new_empty(1, 1, 2, 2, 2)):
        return a.contiguous(memory_format=CHANNELS_LAST)
    return a


def _dense(t: Tensor, fmt: torch.memory_format | None) -> Tensor:
    """``t`` contiguous, channels-last when ``fmt`` says so."""
    return t.contiguous(memory_format=fmt) if fmt is not None else t.contiguous()


def _conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Ints,
    padding: Ints,
    dilation: Ints,
) -> Tensor:
    """``F.convNd`` (groups 1); 3-D float32 on the CPU through oneDNN."""
    if _onednn(x, weight):
        fmt = CHANNELS_LAST if x.is_contiguous(memory_format=CHANNELS_LAST) else None
        return torch.mkldnn_convolution(
            _dense(x, fmt), _dense(weight, fmt), bias, padding, stride, dilation, 1
        )
    return _CONV[weight.dim() - 2](x, weight, bias, stride, padding, dilation)


def _conv_t(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Ints,
    padding: Ints,
    output_padding: Ints,
    dilation: Ints,
) -> Tensor:
    """``F.conv_transposeNd`` (groups 1); at batch 1 on the CPU in float32, a kernel that
    tiles the output (kernel = stride, no padding, dilation 1: U-Net up-sampling, 1x1 heads)
    as one matrix product.

    Each input voxel then writes its own block of the output: y[:, o, s*i + j] =
    sum_c x[:, c, i] W[c, o, j], one (C_out * prod(k), C_in) x (C_in, voxels) product and a
    reordering copy. PyTorch's batch-1 CPU path for it was 2.5x slower here (im2col, or
    oneDNN and a copy out of channels-last); results agree to rounding.
    """
    k = tuple(weight.shape[2:])
    n = len(k)
    if not (
        x.shape[0] == 1  # a batch of settings (channels-last): PyTorch's path
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and tuple(stride) == k
        and not any(padding)
        and not any(output_padding)
        and all(d == 1 for d in dilation)
    ):
        return _CONV_T[n](x, weight, bias, stride, padding, output_padding, 1, dilation)
    b, c_in, *space = x.shape
    c_out = weight.shape[1]
    y = torch.matmul(weight.reshape(c_in, -1).t(), x.reshape(b, c_in, -1))
    if math.prod(k) > 1:  # (B, C_out, *k, *S) -> (B, C_out, S_0, k_0, S_1, k_1, ...)
        order = [0, 1, *(i for d in range(n) for i in (2 + n + d, 2 + d))]
        y = y.view(b, c_out, *k, *space).permute(order)
    y = y.reshape(b, c_out, *(s * kk for s, kk in zip(space, k, strict=True)))
    if bias is not None:
        y = y.add_(bias.view(1, -1, *([1] * n)))
    return y


def _tuple(value: int | Sequence[int], n: int) -> Ints:
    return tuple(value) if isinstance(value, Sequence) else (value,) * n


def _forward_conv(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Tensor:
    """``F.conv3d`` as the rules compute it (:func:`_conv`: oneDNN for float32 on the CPU)."""
    if groups != 1 or isinstance(padding, str) or not _onednn(input, weight):
        return F.conv3d(input, weight, bias, stride, padding, dilation, groups)
    return _conv(input, weight, bias, _tuple(stride, 3), _tuple(padding, 3), _tuple(dilation, 3))


def _forward_conv_t(n: int) -> Callable[..., Tensor]:
    def conv_t(
        input: Tensor,
        weight: Tensor,
        bias: Tensor | None = None,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        dilation: int | Sequence[int] = 1,
    ) -> Tensor:
        """``F.conv_transpose{n}d`` as the rules compute it (:func:`_conv_t`)."""
        if groups != 1 or input.dim() != n + 2:
            return _CONV_T[n](
                input, weight, bias, stride, padding, output_padding, groups, dilation
            )
        return _conv_t(
            input,
            weight,
            bias,
            _tuple(stride, n),
            _tuple(padding, n),
            _tuple(output_padding, n),
            _tuple(dilation, n),
        )

    return conv_t


FORWARD_KERNELS: dict[Callable[..., Tensor], Callable[..., Tensor]] = {
    F.conv3d: _forward_conv,
    **{_CONV_T[n]: _forward_conv_t(n) for n in (1, 2, 3)},
}
"""The convolutions a layer module calls, computed as the rules compute them: the graph
capture runs a network's (transposed) convolution layers through these (for float32 on the
CPU: oneDNN for batch-1 3-D convolutions, which PyTorch sends to its much slower im2col path
below a size threshold, and one matrix product for kernels that tile the output), so that the
recorded forward pass costs what a gradient pass's forward costs; the values agree with the
module's own forward to float32 rounding (float64 and GPU run PyTorch's own path)."""


def fold_batchnorm(layer: ConvLayer, bn: nn.Module) -> ConvLayer:
    """The layer followed by an eval-mode ``BatchNorm3d`` as one layer (a canonizer).

    BN(z) = gamma * (z - mean) / sqrt(var + eps) + beta = s * z + t, so W' = s W (per output
    channel) and b' = s b + t.
    """
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise StrokeLRPError(f"cannot fold {type(bn).__name__} into a convolution")
    if bn.running_mean is None or bn.running_var is None:
        raise StrokeLRPError(f"{bn}: folding needs running statistics (track_running_stats)")
    stats = (bn.running_mean, bn.running_var)
    affine = tuple(t for t in (bn.weight, bn.bias) if t is not None)
    origin = (*layer.origin, *stats, *affine) if layer.origin else ()
    key = ("fold", bn.eps, bn.weight is None, bn.bias is None)
    sources = (layer.weight,) if layer.bias is None else (layer.weight, layer.bias)
    weight, bias = _memo(origin, key, lambda: _fold(layer, bn), sources)
    return replace(layer, weight=weight, bias=bias, origin=origin)


def fold_instancenorm(layer: ConvLayer, norm: nn.Module, z: Tensor) -> ConvLayer:
    """The layer followed by an ``InstanceNormNd`` as one layer, given the instance: ``z``
    (1, C, *S) the layer's output that the norm reads.

    With batch 1 and the statistics of this input held fixed, IN(z) = gamma * (z - mean_c) /
    sqrt(var_c + eps) + beta = s z + t per channel c (mean and biased variance over the
    spatial axes of z; a norm with running statistics in eval mode uses those), so W' = s W
    and b' = s b + t exactly as for BatchNorm. Not remembered across calls: the statistics
    belong to the input.
    """
    if not isinstance(norm, nn.modules.instancenorm._InstanceNorm):
        raise StrokeLRPError(f"cannot fold {type(norm).__name__} as an instance norm")
    if norm.track_running_stats and not norm.training:
        assert norm.running_mean is not None and norm.running_var is not None
        mean, var = norm.running_mean.detach(), norm.running_var.detach()
    else:
        dims = tuple(range(2, z.dim()))
        var, mean = torch.var_mean(z.detach(), dim=dims, correction=0)
        mean, var = mean[0], var[0]
    scale = torch.rsqrt(var + norm.eps)
    shift = -mean * scale
    if norm.affine:
        scale = scale * norm.weight.detach()
        shift = shift * norm.weight.detach() + norm.bias.detach()
    shape = [1] * layer.weight.dim()
    shape[layer.out_dim] = -1
    bias = shift if layer.bias is None else layer.bias * scale + shift
    return replace(layer, weight=layer.weight * scale.view(shape), bias=bias, origin=())


def _fold(layer: ConvLayer, bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """(W', b') of :func:`fold_batchnorm`."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    shape = [1] * layer.weight.dim()
    shape[layer.out_dim] = -1
    bias = shift if layer.bias is None else layer.bias * scale + shift
    return layer.weight * scale.view(shape), bias


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """``z + epsilon * sign(z)`` with sign(0) = +1 (a new tensor).

    The sign is read from the sign bit, so -0.0 counts as negative. A sum of terms is -0.0
    only when every term is zero, where the stabiliser's sign cannot change the relevance.
    """
    return torch.copysign(z.new_tensor(epsilon), z).add_(z)


@dataclass
class PreparedRule:
    """A rule bound to one layer and its input: call it on relevance (K, C_out, ...).

    ``inputs`` (1, J * C_in, D, H, W) are the stacked terms c_t, ``weight`` the stacked W_t,
    ``z_stab`` = stab(Z) (1, C_out, d, h, w), shared by all K settings.
    """

    layer: ConvLayer
    inputs: Tensor
    weight: Tensor
    z_stab: Tensor
    terms: int
    memo: Hashable = None  # the rule, when ``weight`` is remembered for the layer (_memo)

    def batched(self) -> PreparedRule:
        """This rule with its shared tensors laid out once for batches of settings
        (channels-last on the CPU in float32), so that calls on batches need not convert them
        each time (what a cache across chunks of settings wants); same results."""
        if not _onednn(self.z_stab, self.weight):
            return self
        return replace(
            self,
            inputs=self.inputs.contiguous(memory_format=CHANNELS_LAST),
            z_stab=self.z_stab.contiguous(memory_format=CHANNELS_LAST),
        )

    def layout(self, relevance: Tensor) -> Tensor:
        """``relevance`` (K, C_out, ...) in the layout the call works in (channels-last on the
        CPU in float32, one setting or a batch); converting before the call lets the caller
        drop the other layout first."""
        if _onednn(relevance, self.weight):
            return relevance.contiguous(memory_format=CHANNELS_LAST)
        return relevance

    def __call__(self, relevance: Tensor, inplace: bool = False) -> Tensor:
        """(K, C_out, d, h, w) -> (K, C_in, D, H, W); ``inplace`` may overwrite ``relevance``.

        On the CPU in float32 the step runs channels-last (oneDNN's transposed step on a
        batch is 1.5-2.5x faster so, and on one setting at full resolution 15-20 %); the
        result may come back channels-last.
        """
        z_stab, inputs = self.z_stab, self.inputs
        if _onednn(relevance, self.weight):
            if not relevance.is_contiguous(memory_format=CHANNELS_LAST):
                relevance, inplace = relevance.contiguous(memory_format=CHANNELS_LAST), True
            z_stab = z_stab.contiguous(memory_format=CHANNELS_LAST)
            inputs = inputs.contiguous(memory_format=CHANNELS_LAST)
        s = relevance.div_(z_stab) if inplace else relevance / z_stab
        g = self.layer.gradprop(s, self.weight, inputs.shape[2:], self.memo)
        del s
        g.mul_(inputs)
        if self.terms == 1:
            return g
        return g.unflatten(1, (self.terms, -1)).sum(1)


@dataclass(frozen=True)
class Rule:
    """Base of the rules: subclasses say which terms (c_t, W_t) make up Z."""

    epsilon: float = 1e-9
    name: ClassVar[str] = ""
    uses_bias: ClassVar[bool] = False
    reuses_output: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.epsilon > 0:
            raise StrokeLRPError(f"{self.name}: epsilon must be > 0, got {self.epsilon!r}")

    def terms(self, a: Tensor, weight: Tensor, layer: ConvLayer) -> list[tuple[Tensor, Tensor]]:
        """The pairs (c_t (1, C_in, ...), W_t) whose contributions sum to Z.

        A rule defines this, or :meth:`inputs` and :meth:`weights` (the built-in rules: their
        W_t depend on the weight alone, so they are made once per model, see :func:`_memo`).
        """
        return list(zip(self.inputs(a, layer), self.weights(weight, layer), strict=True))

    def inputs(self, a: Tensor, layer: ConvLayer) -> list[Tensor]:
        """The c_t (1, C_in, ...) of the terms, in the order of :meth:`weights`."""
        raise NotImplementedError(f"{type(self).__name__} defines neither terms() nor inputs()")

    def weights(self, weight: Tensor, layer: ConvLayer) -> list[Tensor]:
        """The W_t of the terms, from the layer's weight alone."""
        raise NotImplementedError(f"{type(self).__name__} defines neither terms() nor weights()")

    def prepare(self, layer: ConvLayer, a: Tensor, z: Tensor | None = None) -> PreparedRule:
        """Bind to ``layer`` and its input ``a`` (1, C_in, D, H, W).

        ``z``, when given, is the layer's own output W a + b, reused by rules whose Z equals it.
        """
        memo: Hashable = None
        if type(self).terms is Rule.terms:  # the stacked W_t remembered for the parameters
            cs = self.inputs(a, layer)
            memo = self

            def stack() -> Tensor:
                ws = self.weights(layer.weight, layer)
                return ws[0] if len(ws) == 1 else torch.cat(ws, dim=layer.in_dim)

            weight = _memo(layer.origin, ("weights", memo), stack, (layer.weight,))
        else:
            pairs = self.terms(a, layer.weight, layer)
            cs = [c for c, _ in pairs]
            weight = (
                pairs[0][1]
                if len(pairs) == 1
                else torch.cat([w for _, w in pairs], dim=layer.in_dim)
            )
        inputs = cs[0] if len(cs) == 1 else torch.cat(cs, dim=1)
        if z is None:
            z = layer.forward(inputs, weight, layer.bias if self.uses_bias else None)
        z_stab = stabilize(z, self.epsilon)
        return PreparedRule(layer, inputs, weight, z_stab, len(cs), memo)

    def relevance(self, layer: ConvLayer, a: Tensor, relevance: Tensor) -> Tensor:
        """R_in (K, C_in, D, H, W) for input ``a`` (1, C_in, ...) and R (K, C_out, ...)."""
        return self.prepare(layer, a)(relevance)


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-epsilon: Z = W a + b (the layer's own output); R_in = a * gradprop(R / stab(Z))."""

    name: ClassVar[str] = "epsilon"
    uses_bias: ClassVar[bool] = True
    reuses_output: ClassVar[bool] = True

    def inputs(self, a: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [a]

    def weights(self, weight: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [weight]


@dataclass(frozen=True)
class WPlus(Rule):
    """The paper's eq. (1): Z = W+ a (no bias), R_in = a * gradprop+(R / stab(Z))."""

    name: ClassVar[str] = "w+"

    def inputs(self, a: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [a]

    def weights(self, weight: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [weight.clamp(min=0)]


@dataclass(frozen=True)
class ZPlus(Rule):
    """z+ for signed inputs: Z = W+ a+ + W- a-; R_in = a+ gp+(S) + a- gp-(S) (no bias)."""

    name: ClassVar[str] = "z+"

    def inputs(self, a: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [a.clamp(min=0), a.clamp(max=0)]

    def weights(self, weight: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [weight.clamp(min=0), weight.clamp(max=0)]


def _bound(value: Bound, a: Tensor) -> Tensor:
    """A scalar or per-channel bound broadcast to the full shape of ``a`` (1, C, D, H, W)."""
    t = torch.as_tensor(value, dtype=a.dtype, device=a.device)
    if t.dim() == 0:
        return t.expand_as(a)
    if t.dim() != 1 or t.numel() != a.shape[1]:
        raise StrokeLRPError(
            f"z^B bound must be a scalar or one value per input channel ({a.shape[1]}), "
            f"got shape {tuple(t.shape)}"
        )
    return t.view(1, -1, *([1] * (a.dim() - 2))).expand_as(a)


@dataclass(frozen=True)
class ZBox(Rule):
    """z^B for inputs bounded in [low, high]: Z = W a - W+ L - W- H (no bias);
    R_in = a gp(S, W) - L gp(S, W+) - H gp(S, W-). Bounds are scalars or per channel."""

    low: Bound = 0.0
    high: Bound = 1.0
    name: ClassVar[str] = "zB"

    def _used(self) -> list[bool]:
        """Which of the terms (a, W), (-L, W+), (-H, W-) are kept: zero bounds are skipped."""
        return [True, *(bool(torch.as_tensor(b).any()) for b in (self.low, self.high))]

    def inputs(self, a: Tensor, layer: ConvLayer) -> list[Tensor]:
        low, high = _bound(self.low, a), _bound(self.high, a)
        return [c for c, use in zip((a, -low, -high), self._used(), strict=True) if use]

    def weights(self, weight: Tensor, layer: ConvLayer) -> list[Tensor]:
        ws = (lambda: weight, lambda: weight.clamp(min=0), lambda: weight.clamp(max=0))
        return [w() for w, use in zip(ws, self._used(), strict=True) if use]


@dataclass(frozen=True)
class Gamma(Rule):
    """LRP-gamma, sign-aware: z_ij = a_i w_ij + gamma (a_i w_ij)+ (no bias), i.e.
    Z = W a + gamma (W+ a+ + W- a-); R_in = a gp(S, W) + gamma (a+ gp(S, W+) + a- gp(S, W-)).

    For a >= 0 this is the textbook rule (Montavon et al. 2019), weights W + gamma W+: positive
    contributions are favoured; gamma -> infinity tends to z+, gamma = 0 is epsilon without bias.
    """

    gamma: float = 0.25
    name: ClassVar[str] = "gamma"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gamma >= 0:
            raise StrokeLRPError(f"gamma: gamma must be >= 0, got {self.gamma!r}")

    def inputs(self, a: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [a, a.clamp(min=0), a.clamp(max=0)]

    def weights(self, weight: Tensor, layer: ConvLayer) -> list[Tensor]:
        g = self.gamma
        return [
            weight,
            g * weight.clamp(min=0),
            g * weight.clamp(max=0),
        ]


@dataclass(frozen=True)
class Flat(Rule):
    """The flat rule (first layer): z_ij = 1 for every connection, so each output's relevance
    is spread evenly over the inputs in its receptive field (the input values play no part)."""

    name: ClassVar[str] = "flat"

    def inputs(self, a: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [torch.ones_like(a)]

    def weights(self, weight: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [torch.ones_like(weight)]


@dataclass(frozen=True)
class WSquare(Rule):
    """The w^2 rule (first layer): z_ij = w_ij^2, relevance spread by squared weights; the
    input values play no part (Montavon et al. 2017)."""

    name: ClassVar[str] = "w2"

    def inputs(self, a: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [torch.ones_like(a)]

    def weights(self, weight: Tensor, layer: ConvLayer) -> list[Tensor]:
        return [weight * weight]


RULES: dict[str, type[Rule]] = {
    r.name: r for r in (Epsilon, WPlus, ZPlus, ZBox, Gamma, Flat, WSquare)
}
"""Rule classes by name (``epsilon``, ``w+``, ``z+``, ``zB``, ``gamma``, ``flat``, ``w2``)."""


def make_rule(
    name: str, epsilon: float, low: Bound = 0.0, high: Bound = 1.0, gamma: float = 0.25
) -> Rule:
    """The rule called ``name`` with stabiliser ``epsilon`` (bounds for ``zB``, ``gamma``)."""
    if name not in RULES:
        raise StrokeLRPError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}")
    if name == "zB":
        return ZBox(epsilon=epsilon, low=low, high=high)
    if name == "gamma":
        return Gamma(epsilon=epsilon, gamma=gamma)
    return RULES[name](epsilon=epsilon)


@dataclass
class PoolState:
    """What a max pool's relevance step needs: winner indices (1, C, d, h, w), input shape."""

    indices: Tensor
    in_shape: tuple[int, ...] = field(default=())


MAXPOOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def maxpool_forward(module: nn.Module, a: Tensor) -> tuple[Tensor, PoolState]:
    """The module's output (same values) and the winners' flat indices for the relevance step."""
    if not isinstance(module, MAXPOOL_TYPES):
        raise StrokeLRPError(f"no pooling rule for {type(module).__name__}")
    out, idx = _MAXPOOL[a.dim() - 2](
        a,
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        ceil_mode=module.ceil_mode,
        return_indices=True,
    )
    return out, PoolState(idx, tuple(a.shape[2:]))


def maxpool_relevance(relevance: Tensor, state: PoolState) -> Tensor:
    """Winner-take-all: (K, C, *s) -> (K, C, *S); windows that share a winner add.

    Relevance that is channels-last (channels vary fastest) is scattered and returned in
    that layout, so that neither it nor the result is copied across layouts."""
    k, c = relevance.shape[:2]
    n = math.prod(state.in_shape)
    if relevance.dim() > 3 and c > 1 and relevance.movedim(1, -1).is_contiguous():
        out = relevance.new_zeros(k, n, c)
        index = state.indices.movedim(1, -1).reshape(1, -1, c).expand(k, -1, -1)
        out.scatter_add_(1, index, relevance.movedim(1, -1).reshape(k, -1, c))
        return out.view(k, *state.in_shape, c).movedim(-1, 1)
    out = relevance.new_zeros(k, c, n)
    out.scatter_add_(2, state.indices.flatten(2).expand(k, -1, -1), relevance.flatten(2))
    return out.view(k, c, *state.in_shape)
