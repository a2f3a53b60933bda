"""Whole-volume predictions and explanations through nnU-Net's sliding window.

nnU-Net predicts a volume larger than its patch by tiling it with overlapping patches (tile
starts from the step size, 0.5 of the patch by default), weighting each patch's logits by a
Gaussian importance map, summing, and dividing by the summed weights; the logits of every patch
are first averaged over the mirrorings of the input, and the stitched logits over the folds
(networks). The stitched logits L (K, *S) are therefore a sum of patch terms

    L = sum over folds f, patches p, mirrorings m of  w_p * flip_m(net_f(flip_m(x[p]))) / (M F)

with w_p = g / n restricted to patch p (g the Gaussian, n the summed Gaussians). The explained
scalar S = sum(W * L) for target weights W (K, *S) is the same sum of patch scalars
S_fpm = sum(W[p] * w_p / (M F) * flip_m(net_f(flip_m(x[p])))), so every method explains S by
explaining each patch scalar on its patch and adding the patch maps into the volume:

- LRP (:func:`window_explain`): each patch's walk starts from the patch's logits times the
  patch's share of W, so the volume's relevance sums to S as each walk conserves its share;
  filters act inside each patch's walk, with N (max |R| at a point) taken per patch walk
  (docs/method.md, "Whole volumes");
- gradient, gradient x input, integrated gradients: sums of the patches' input gradients,
  exactly the gradient of S (the weights w_p do not depend on x);
- occlusion: S(x) - S(x with a box zeroed), from the patches that overlap the box;
- Grad-CAM: one channel weighting per network from the gradients of S at every patch's
  feature map, each patch's CAM stitched with the logits' weights.

Memory is bounded by one patch (the volume-sized accumulators aside).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from strokelrp.attribution import (
    METHODS,
    baseline_of,
    input_gradients_only,
    layer_of,
    occlusion_grid,
    parse_method,
)
from strokelrp.config import LESION
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.engine import Conservation, explain, target_weights
from strokelrp.lrp.filters import Filter, filter_label, parse_filter
from strokelrp.lrp.presets import DEFAULT_PRESET, Preset, preset


@dataclass(frozen=True)
class Window:
    """nnU-Net's sliding window: ``patch_size`` (one int per spatial axis), ``step`` (fraction
    of the patch between tile starts, nnU-Net's ``tile_step_size``), ``mirror_axes`` (spatial
    axes, 0-based, whose flips are averaged: every non-empty combination plus the identity),
    ``gaussian`` (Gaussian importance weights; False: every patch voxel weighs 1)."""

    patch_size: tuple[int, ...]
    step: float = 0.5
    mirror_axes: tuple[int, ...] = ()
    gaussian: bool = True

    def __post_init__(self) -> None:
        size = tuple(int(p) for p in self.patch_size)
        if not size or min(size) < 1:
            raise StrokeLRPError(f"window patch_size must be positive ints, got {self.patch_size}")
        if not 0 < self.step <= 1:
            raise StrokeLRPError(f"window step must be in (0, 1], got {self.step}")
        axes = tuple(int(a) for a in self.mirror_axes)
        if any(not 0 <= a < len(size) for a in axes) or len(set(axes)) != len(axes):
            raise StrokeLRPError(
                f"window mirror_axes must be distinct axes in 0..{len(size) - 1}, "
                f"got {self.mirror_axes}"
            )
        object.__setattr__(self, "patch_size", size)
        object.__setattr__(self, "mirror_axes", axes)

    @property
    def mirrorings(self) -> list[tuple[int, ...]]:
        """The flips averaged (spatial axes; ``()`` the identity), in nnU-Net's order."""
        combos = [
            c
            for i in range(len(self.mirror_axes))
            for c in itertools.combinations(self.mirror_axes, i + 1)
        ]
        return [(), *combos]

    def padded_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The volume's shape after nnU-Net's padding to at least the patch size."""
        self._check(shape)
        return tuple(max(s, p) for s, p in zip(shape, self.patch_size, strict=True))

    def _check(self, shape: Sequence[int]) -> None:
        if len(shape) != len(self.patch_size):
            raise StrokeLRPError(
                f"volume of {len(shape)} spatial axes {tuple(shape)} for a window with patch "
                f"size {self.patch_size}"
            )

    def starts(self, shape: Sequence[int]) -> list[list[int]]:
        """Tile starts per axis of the (padded) volume, as nnU-Net computes them: ceil((S - P)
        / (step P)) + 1 tiles spread evenly from 0 to S - P, rounded."""
        padded = self.padded_shape(shape)
        out = []
        for s, p in zip(padded, self.patch_size, strict=True):
            n = math.ceil((s - p) / (p * self.step)) + 1
            actual = (s - p) / (n - 1) if n > 1 else 0.0
            out.append([int(np.round(actual * i)) for i in range(n)])
        return out

    def tiles(self, shape: Sequence[int]) -> list[tuple[slice, ...]]:
        """The patches' spatial slices of the padded volume, in nnU-Net's order."""
        return [
            tuple(slice(a, a + p) for a, p in zip(corner, self.patch_size, strict=True))
            for corner in itertools.product(*self.starts(shape))
        ]

    def importance(self, dtype: torch.dtype = torch.float32, device: Any = None) -> Tensor:
        """The patch's importance map (*patch_size): nnU-Net's Gaussian (sigma = patch / 8 per
        axis, centred at patch // 2, scaled to a maximum of 10, cast to ``dtype``, zeros raised to
        the smallest non-zero value), or ones."""
        if not self.gaussian:
            return torch.ones(self.patch_size, dtype=dtype, device=device)
        return _gaussian(self.patch_size, dtype).to(device)

    def normaliser(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """n (*padded shape): the summed importance of the patches covering each voxel."""
        g = self.importance(dtype)
        n = torch.zeros(self.padded_shape(shape), dtype=dtype)
        for sl in self.tiles(shape):
            n[sl] += g
        return n


def _gaussian(patch: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """nnU-Net's ``compute_gaussian(patch, 1 / 8, 10, dtype)``: computed in float64, cast to
    ``dtype``, then zeros (underflows of the cast included) raised to the smallest value."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(patch)
    tmp[tuple(p // 2 for p in patch)] = 1
    g = gaussian_filter(tmp, [p / 8 for p in patch], 0, mode="constant", cval=0)
    g = torch.from_numpy(g / (g.max() / 10)).to(dtype)
    zero = g == 0
    if bool(zero.any()):
        g[zero] = g[~zero].min()
    return g


# ----------------------------------------------------------------------------- the tiling


@dataclass
class _Patch:
    """One term of the stitched logits: network ``net`` on the (padded) volume's ``tile``
    after flipping ``flip`` (spatial axes), weighted by ``weight`` (*patch) = importance /
    normaliser / (M F) at the unflipped tile."""

    net: int
    tile: tuple[slice, ...]
    flip: tuple[int, ...]
    weight: Tensor


def _networks(networks: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    nets = [networks] if isinstance(networks, nn.Module) else list(networks)
    if not nets:
        raise StrokeLRPError("window: give at least one network (fold)")
    return nets


def _volume(x: Tensor | np.ndarray, window: Window, nets: list[nn.Module]) -> Tensor:
    """x (C, *S) (or (1, C, *S)) -> (1, C, *S) on the first network's device and dtype."""
    t = torch.as_tensor(x)
    if t.dim() == len(window.patch_size) + 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != len(window.patch_size) + 1:
        raise StrokeLRPError(
            f"x must be (C, *S) with {len(window.patch_size)} spatial axes for patch size "
            f"{window.patch_size}, got {tuple(t.shape)}"
        )
    param = next(nets[0].parameters(), None)
    if param is not None:
        t = t.to(device=param.device, dtype=param.dtype)
    elif not t.is_floating_point():
        t = t.float()
    return t[None].detach()


def _pad(x: Tensor, window: Window) -> tuple[Tensor, tuple[slice, ...]]:
    """Zero-pad x (1, C, *S) to at least the patch (split evenly, as nnU-Net's pad_nd_image);
    the padded volume and the slices of the original voxels in it."""
    shape = x.shape[2:]
    padded = window.padded_shape(shape)
    if tuple(padded) == tuple(shape):
        return x, tuple(slice(0, s) for s in shape)
    before = [(p - s) // 2 for s, p in zip(shape, padded, strict=True)]
    pads: list[int] = []
    for s, p, b in reversed(list(zip(shape, padded, before, strict=True))):
        pads += [b, p - s - b]
    inner = tuple(slice(b, b + s) for b, s in zip(before, shape, strict=True))
    return F.pad(x, pads), inner


def _patches(
    window: Window, shape: Sequence[int], n_nets: int, dtype: torch.dtype, device: Any
) -> Iterator[_Patch]:
    g = window.importance(dtype)
    norm = window.normaliser(shape, dtype)
    flips = window.mirrorings
    scale = 1.0 / (len(flips) * n_nets)
    for f in range(n_nets):
        for tile in window.tiles(shape):
            weight = (g / norm[tile] * scale).to(device)
            for flip in flips:
                yield _Patch(f, tile, flip, weight)


def _dims(flip: tuple[int, ...]) -> list[int]:
    return [a + 2 for a in flip]


def _flipped(t: Tensor, flip: tuple[int, ...]) -> Tensor:
    return torch.flip(t, _dims(flip)) if flip else t


def _eval(nets: list[nn.Module]) -> Callable[[], None]:
    modes = [n.training for n in nets]
    for n in nets:
        n.eval()

    def restore() -> None:
        for n, m in zip(nets, modes, strict=True):
            n.train(m)

    return restore


def _out(y: Any) -> Tensor:
    """A network's logits: the tensor, or the first of a list/tuple (deep supervision)."""
    if isinstance(y, list | tuple):
        y = y[0]
    if not isinstance(y, Tensor):
        raise StrokeLRPError(f"the network returned {type(y).__name__}, not a tensor of logits")
    return y


# ----------------------------------------------------------------------------- prediction


def window_logits(
    networks: nn.Module | Sequence[nn.Module],
    x: Tensor | np.ndarray,
    window: Window,
    stitch_dtype: torch.dtype | None = None,
) -> Tensor:
    """nnU-Net's stitched logits (K, *S) of x (C, *S): Gaussian-weighted patches divided by
    the summed weights, averaged over the mirrorings and the networks (folds).

    ``stitch_dtype``: None stitches exactly (in the networks' dtype): the logits every
    explanation here explains. ``torch.float16`` reproduces nnU-Net 2.x's own arithmetic
    (importance map, sums, normaliser and the fold sum held in float16, the mirror average in
    the networks' dtype), to compare with ``nnUNetv2_predict`` (about 1e-3 relative apart).
    """
    nets = _networks(networks)
    return window_logits_batch(nets, _volume(x, window, nets), window, stitch_dtype)[0]


def window_logits_batch(
    networks: nn.Module | Sequence[nn.Module],
    xs: Tensor,
    window: Window,
    stitch_dtype: torch.dtype | None = None,
) -> Tensor:
    """:func:`window_logits` of B volumes of one shape at once: xs (B, C, *S) -> (B, K, *S);
    each patch position runs the B volumes' patches as one batch (memory: B patches)."""
    nets = _networks(networks)
    if xs.dim() != len(window.patch_size) + 2:
        raise StrokeLRPError(
            f"volumes must be (B, C, *S) with {len(window.patch_size)} spatial axes, "
            f"got {tuple(xs.shape)}"
        )
    param = next(nets[0].parameters(), None)
    xv = xs.detach() if param is None else xs.detach().to(device=param.device, dtype=param.dtype)
    xp, inner = _pad(xv, window)
    acc = stitch_dtype or xv.dtype
    g = window.importance(acc, xv.device)
    flips = window.mirrorings
    total: Tensor | None = None
    restore = _eval(nets)
    try:
        with torch.no_grad():
            for net in nets:
                logits: Tensor | None = None
                norm = torch.zeros(xp.shape[2:], dtype=acc, device=xv.device)
                for tile in window.tiles(xv.shape[2:]):
                    piece = xp[(slice(None), slice(None), *tile)]
                    y = sum(_flipped(_out(net(_flipped(piece, f))), f) for f in flips)
                    assert isinstance(y, Tensor)
                    y = y / len(flips)
                    if logits is None:
                        logits = torch.zeros(
                            xv.shape[0], y.shape[1], *xp.shape[2:], dtype=acc, device=xv.device
                        )
                    logits[(slice(None), slice(None), *tile)] += y * g
                    norm[tile] += g
                assert logits is not None
                torch.div(logits, norm, out=logits)
                total = logits if total is None else total.add_(logits)
    finally:
        restore()
    assert total is not None
    if len(nets) > 1:
        total /= len(nets)
    return total[(slice(None), slice(None), *inner)]


def window_weights(
    networks: nn.Module | Sequence[nn.Module],
    x: Tensor | np.ndarray,
    window: Window,
    target: str = "prediction",
    label: Any = None,
    class_index: int = LESION,
) -> Tensor:
    """Target weights W (K, *S) of a named target (``prediction``, ``ground_truth`` with
    ``label`` (*S), ``contrastive``, ``authors``) on the stitched logits; ``class_index``: the
    class of a multi-class plan."""
    logits = window_logits(networks, x, window)
    return target_weights(target, logits[None], label, class_index)[0][0]


def _check_weights(weights: Tensor, logits_shape: Sequence[int], x: Tensor) -> Tensor:
    w = torch.as_tensor(weights)
    if w.dim() == len(logits_shape) + 1 and w.shape[0] == 1:
        w = w[0]
    if tuple(w.shape[1:]) != tuple(x.shape[2:]):
        raise StrokeLRPError(
            f"target weights must be (K, *S) with the volume's shape {tuple(x.shape[2:])}, "
            f"got {tuple(w.shape)}"
        )
    return w.to(x)


def _padded_weights(w: Tensor, xp: Tensor, inner: tuple[slice, ...]) -> Tensor:
    """W (K, *S) placed into the padded grid (zero on the padding: nnU-Net crops it away)."""
    if tuple(w.shape[1:]) == tuple(xp.shape[2:]):
        return w
    out = w.new_zeros(w.shape[0], *xp.shape[2:])
    out[(slice(None), *inner)] = w
    return out


# ----------------------------------------------------------------------------------- LRP


@dataclass
class WindowExplanation:
    """Result of :func:`window_explain`: ``relevance`` (K_settings, C, *S) summed over the
    patch walks; ``score`` the explained scalar sum(W * stitched logits); ``conservation``:
    the engine's table with every patch walk's sums and totals added (a cut through every
    walk at once, so a conservative rule keeps each row at the output's); ``filters`` the
    settings; ``patches`` the number of walks (tiles x mirrorings x networks); ``notes``."""

    relevance: Tensor
    score: float
    conservation: Conservation
    filters: list[Filter | None]
    patches: int
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [filter_label(f) for f in self.filters]


def window_explain(
    networks: nn.Module | Sequence[nn.Module],
    x: Tensor | np.ndarray,
    window: Window,
    weights: Tensor,
    rules: str | Preset = DEFAULT_PRESET,
    filters: Sequence[Filter | None] | None = None,
    filter_at: str | Sequence[str] = "all",
    memory_budget: str | int | float | None = None,
) -> WindowExplanation:
    """LRP of S = sum(W * stitched logits) for x (C, *S) and W (K, *S), K filter settings at
    once: one engine walk per patch, mirroring and network, starting from the patch's logits
    times W restricted to the patch and weighted as nnU-Net weights the patch; the walks'
    maps (flipped back) are summed into the volume. Filters act inside each walk with N taken
    per walk (docs/method.md, "Whole volumes"); a volume that fits in one patch without
    mirroring gives the engine's map exactly."""
    nets = _networks(networks)
    xv = _volume(x, window, nets)
    w = _check_weights(weights, (0, *xv.shape[2:]), xv)
    xp, inner = _pad(xv, window)
    wp = _padded_weights(w, xp, inner)
    settings: list[Filter | None] = [None] if filters is None else list(filters)
    relevance = xp.new_zeros(len(settings), *xp.shape[1:])
    conservation: Conservation | None = None
    score = 0.0
    walks = 0
    notes: list[str] = []
    for p in _patches(window, xv.shape[2:], len(nets), xv.dtype, xv.device):
        share = wp[(slice(None), *p.tile)] * p.weight
        if not bool(share.any()):
            continue  # this patch's scalar is 0 for every setting: its maps are zero
        start = _flipped(share[None], p.flip)
        xt = _flipped(xp[(slice(None), slice(None), *p.tile)], p.flip)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "target .* selects nothing", RuntimeWarning)
            result = explain(
                nets[p.net],
                xt.contiguous(),
                target=_times(start),
                rules=rules,
                filters=settings,
                filter_at=filter_at,
                memory_budget=memory_budget,
            )
        walks += 1
        score += float((result.output.double() * start.double()).sum())
        relevance[(slice(None), slice(None), *p.tile)] += _flipped(result.relevance, p.flip)
        for note in result.notes:
            if note not in notes:
                notes.append(note)
        c = result.conservation
        if conservation is None:
            conservation = Conservation(list(c.points), c.sums.clone(), c.totals.clone())
        elif conservation.points == c.points:
            conservation.sums += c.sums
            conservation.totals += c.totals
        else:  # folds of different architectures: the volume's cut is output and input only
            conservation = _ends(conservation) if len(conservation.points) > 2 else conservation
            ends = _ends(c)
            conservation.sums += ends.sums
            conservation.totals += ends.totals
    if conservation is None:
        k = len(settings)
        zero = torch.zeros(2, k, dtype=torch.float64)
        conservation = Conservation(["output", "input"], zero, zero.clone())
        notes.append("the target weights are zero on every patch: every relevance map is zero")
    return WindowExplanation(
        relevance=relevance[(slice(None), slice(None), *inner)].contiguous(),
        score=score,
        conservation=conservation,
        filters=settings,
        patches=walks,
        notes=notes,
    )


def _ends(c: Conservation) -> Conservation:
    keep = [0, len(c.points) - 1]
    return Conservation([c.points[0], c.points[-1]], c.sums[keep].clone(), c.totals[keep].clone())


def _times(start: Tensor) -> Callable[[Tensor], Tensor]:
    def begin(out: Tensor) -> Tensor:
        if tuple(out.shape) != tuple(start.shape):
            raise StrokeLRPError(
                f"the network's patch logits {tuple(out.shape)} do not match the target "
                f"weights' patch {tuple(start.shape)}"
            )
        return out * start

    return begin


# ----------------------------------------------------------------- gradient-based methods


def _patch_grad(net: nn.Module, xt: Tensor, start: Tensor) -> Tensor:
    """d sum(start * net(xt)) / d xt for a batch xt (B, C, *P) (start broadcast)."""
    xg = xt.detach().requires_grad_(True)
    with input_gradients_only(net):
        (g,) = torch.autograd.grad((_out(net(xg)) * start).sum(), xg)
    return g


def _window_grad(
    nets: list[nn.Module], xs: Tensor, window: Window, wp: Tensor, shape: Sequence[int]
) -> Tensor:
    """sum over the batch of dS/dx at each padded volume in xs (B, C, *P): the gradients of
    each batch element's own S, summed -> (C, *P)."""
    grad = torch.zeros_like(xs[0])
    for p in _patches(window, shape, len(nets), xs.dtype, xs.device):
        share = wp[(slice(None), *p.tile)] * p.weight
        if not bool(share.any()):
            continue
        xt = _flipped(xs[(slice(None), slice(None), *p.tile)], p.flip)
        g = _patch_grad(nets[p.net], xt, _flipped(share[None], p.flip))
        grad[(slice(None), *p.tile)] += _flipped(g, p.flip).sum(0)
    return grad


def _gradient(
    nets: list[nn.Module],
    xv: Tensor,
    xp: Tensor,
    inner: tuple[slice, ...],
    window: Window,
    wp: Tensor,
) -> Tensor:
    return _window_grad(nets, xp, window, wp, xv.shape[2:])[(slice(None), *inner)]


def window_gradient(
    networks: nn.Module | Sequence[nn.Module],
    x: Tensor | np.ndarray,
    window: Window,
    weights: Tensor,
) -> Tensor:
    """dS/dx (C, *S) of S = sum(W * stitched logits), patch by patch."""
    return window_attribute(networks, x, window, "gradient", weights)


def _integrated(
    nets: list[nn.Module],
    xv: Tensor,
    xp: Tensor,
    inner: tuple[slice, ...],
    window: Window,
    wp: Tensor,
    steps: int = 32,
    baseline: str | float | Tensor = "zero",
    batch: int = 8,
) -> Tensor:
    if steps < 1 or batch < 1:
        raise StrokeLRPError(f"steps and batch must be >= 1, got {steps} and {batch}")
    b = baseline_of(xv, baseline)
    bp, _ = _pad(b, window)
    total = torch.zeros_like(xp[0])
    alphas = (torch.arange(steps, dtype=xp.dtype, device=xp.device) + 0.5) / steps
    for chunk in alphas.split(batch):
        path = bp + chunk.view(-1, *([1] * (xp.dim() - 1))) * (xp - bp)
        total += _window_grad(nets, path, window, wp, xv.shape[2:])
    return ((xp - bp)[0] * total / steps)[(slice(None), *inner)]


def _occlusion(
    nets: list[nn.Module],
    xv: Tensor,
    xp: Tensor,
    inner: tuple[slice, ...],
    window: Window,
    wp: Tensor,
    patch: tuple[int, ...] | int = (4, 8, 8),
    batch: int = 16,
) -> Tensor:
    spatial = tuple(xv.shape[2:])
    sizes, corner_list = occlusion_grid(spatial, patch, batch)
    # boxes on the original grid (as the unpatched method), shifted into the padded grid
    offset = [s.start for s in inner]
    boxes = [
        (
            ch,
            tuple(
                slice(o + c, o + min(c + p, n))
                for o, c, p, n in zip(offset, corner, sizes, spatial, strict=True)
            ),
        )
        for ch in range(xv.shape[1])
        for corner in corner_list
    ]
    boxes = [(ch, b) for ch, b in boxes if bool(xp[(0, ch, *b)].any())]
    drops = torch.zeros(len(boxes), dtype=torch.float64)
    with torch.no_grad():
        for p in _patches(window, spatial, len(nets), xp.dtype, xp.device):
            share = wp[(slice(None), *p.tile)] * p.weight
            if not bool(share.any()):
                continue
            start = _flipped(share[None], p.flip)
            net = nets[p.net]
            xt = xp[(slice(None), slice(None), *p.tile)]
            s0 = (_out(net(_flipped(xt, p.flip))) * start).sum().double()
            inside = []
            for i, (ch, b) in enumerate(boxes):
                local = tuple(
                    slice(max(s.start, t.start) - t.start, min(s.stop, t.stop) - t.start)
                    for s, t in zip(b, p.tile, strict=True)
                )
                if all(sl.stop > sl.start for sl in local) and bool(xt[(0, ch, *local)].any()):
                    inside.append((i, ch, local))
            for first in range(0, len(inside), batch):
                part = inside[first : first + batch]
                xb = xt.repeat(len(part), *([1] * (xt.dim() - 1)))
                for n, (_i, ch, local) in enumerate(part):
                    xb[(n, ch, *local)] = 0
                s = (_out(net(_flipped(xb, p.flip))) * start).flatten(1).sum(1).double()
                for n, (i, _ch, _local) in enumerate(part):
                    drops[i] += s0 - s[n]
    out = torch.zeros_like(xp[0])
    for (ch, b), d in zip(boxes, drops.tolist(), strict=True):
        view = out[(ch, *b)]
        view += d / view.numel()
    return out[(slice(None), *inner)]


def _gradcam(
    nets: list[nn.Module],
    xv: Tensor,
    xp: Tensor,
    inner: tuple[slice, ...],
    window: Window,
    wp: Tensor,
    layer: str | None = None,
) -> Tensor:
    """Grad-CAM of S: per network, channel weights alpha = the mean over every patch's (and
    mirroring's) feature voxels of dS/dA; each patch's relu(sum_k alpha_k A_k), upsampled to
    the patch and flipped back, stitched with the logits' weights; shared over channels."""
    spatial = tuple(xv.shape[2:])
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
    grads: dict[int, Tensor] = {}
    counts: dict[int, int] = {}
    patches = list(_patches(window, spatial, len(nets), xp.dtype, xp.device))
    for p in patches:  # pass 1: the channel weights
        share = wp[(slice(None), *p.tile)] * p.weight
        if not bool(share.any()):
            continue
        xt = _flipped(xp[(slice(None), slice(None), *p.tile)], p.flip)
        act, s = _features(nets[p.net], xt, _flipped(share[None], p.flip), layer)
        (g,) = torch.autograd.grad(s, act)
        dims = tuple(range(2, g.dim()))
        grads[p.net] = grads.get(p.net, 0) + g.sum(dims)[0]
        counts[p.net] = counts.get(p.net, 0) + math.prod(g.shape[2:])
    cam = torch.zeros(xp.shape[2:], dtype=xp.dtype, device=xp.device)
    for p in patches:  # pass 2: the patch CAMs, stitched
        if p.net not in grads:
            continue
        xt = _flipped(xp[(slice(None), slice(None), *p.tile)], p.flip)
        with torch.no_grad():
            act, _ = _features(nets[p.net], xt, None, layer)
        alpha = (grads[p.net] / counts[p.net]).view(1, -1, *([1] * len(spatial)))
        c = torch.relu((alpha * act).sum(1, keepdim=True))
        c = F.interpolate(c, size=xt.shape[2:], mode=mode, align_corners=False)
        cam[p.tile] += _flipped(c, p.flip)[0, 0] * p.weight
    c_in = xv.shape[1]
    return (cam[inner] / c_in).expand(c_in, *spatial).contiguous()


def _features(
    net: nn.Module, xt: Tensor, start: Tensor | None, layer: str | None
) -> tuple[Tensor, Tensor]:
    """The feature map A (the output of ``layer``, or the input of the last convolution the
    forward calls) and the patch scalar sum(start * logits) (0 when start is None)."""
    seen: list[Tensor] = []
    if layer is None:
        convs = [m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
        if not convs:
            raise StrokeLRPError("gradcam: the model has no convolution; name a layer= to use")
        handles = [
            m.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for m in convs
        ]
    else:
        module = layer_of(net, layer)
        handles = [module.register_forward_hook(lambda _m, _i, out: seen.append(out))]
    try:
        grad = start is not None
        with torch.enable_grad() if grad else torch.no_grad():
            y = _out(net(xt.detach().requires_grad_(grad)))
            s = (y * start).sum() if start is not None else y.new_zeros(())
    finally:
        for h in handles:
            h.remove()
    if not seen:
        what = "no convolution" if layer is None else f"not the layer {layer!r}"
        raise StrokeLRPError(f"gradcam: the model's forward calls {what}")
    return seen[-1], s


# ----------------------------------------------------------------------------- attribute

_WINDOW_METHODS: dict[str, Callable[..., Tensor]] = {
    "gradient": _gradient,
    "integrated_gradients": _integrated,
    "occlusion": _occlusion,
    "gradcam": _gradcam,
}


def window_attribute(
    networks: nn.Module | Sequence[nn.Module],
    x: Tensor | np.ndarray,
    window: Window,
    method: str,
    weights: Tensor,
    **options: Any,
) -> Tensor:
    """The whole-volume map (C, *S) of ``method`` (any name of
    :func:`strokelrp.attribution.method_names`, options in brackets, an LRP filter after
    ``+``) for S = sum(W * stitched logits), x (C, *S), W (K, *S). ``options`` are added to
    the name's (``memory_budget`` and preset fields for LRP)."""
    name, opts, filt = parse_method(method)
    opts.update(options)
    nets = _networks(networks)
    xv = _volume(x, window, nets)
    w = _check_weights(weights, (0, *xv.shape[2:]), xv)
    if name.startswith("lrp:"):
        budget = opts.pop("memory_budget", None)
        filter_at = opts.pop("filter_at", "all")
        rules = preset(name[4:], **opts)
        filters = None if filt is None else [parse_filter(filt)]
        return window_explain(nets, xv[0], window, w, rules, filters, filter_at, budget).relevance[
            0
        ]
    if name == "locality_prior":
        return METHODS[name](None, xv, w[None], **opts)
    xp, inner = _pad(xv, window)
    wp = _padded_weights(w, xp, inner)
    restore = _eval(nets)
    try:
        if name == "gradient_x_input":
            if opts:
                raise StrokeLRPError(f"method {method!r}: bad options {sorted(opts)}")
            return (xv[0] * _gradient(nets, xv, xp, inner, window, wp)).detach()
        fn = _WINDOW_METHODS[name]
        try:
            return fn(nets, xv, xp, inner, window, wp, **opts).detach()
        except TypeError as err:
            raise StrokeLRPError(f"method {method!r}: bad options {sorted(opts)} ({err})") from err
    finally:
        restore()
