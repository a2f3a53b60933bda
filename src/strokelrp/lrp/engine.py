"""The relevance engine: one forward pass, then a backward walk over the model's graph.

The walk follows ``model.graph()`` (the nodes ``forward`` evaluates) in reverse:

- ``Conv3d`` / ``ConvTranspose3d``: the preset's rule (first / body / head position); the
  relevance at the layer's input is a *point* named after the layer, where filters may act;
- ``BatchNorm3d`` and activations (``LeakyReLU``, ``ReLU``, ``Identity``): relevance passes
  through unchanged (or, with ``batchnorm="fold"``, BatchNorm is folded into the convolution
  before it, whose rule then sees the folded weights);
- ``MaxPool3d``: relevance goes to the window's winner;
- ``Concat``: the relevance is cut along channels into the inputs' parts, in input order;
- ``CropLike``: undone by zero padding back to the uncropped shape (the shape reference
  gets nothing);
- a value read by several nodes receives the sum of their relevances;
- anything else is an error naming the node and its module.

Relevance carries a batch of K filter settings, ``(K, C, d, h, w)``; activations and the rules'
denominators are computed once with batch 1 and shared. When K settings at once would exceed
the memory budget, the walk runs over chunks of settings (:mod:`strokelrp.lrp.budget`); the
forward pass is still run once, and the denominators are computed once and cached across
chunks when the budget leaves room for them (else recomputed per chunk).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.budget import MemoryPlan, format_bytes, plan, resolve_budget
from strokelrp.lrp.filters import Filter, FilterBank, filter_label
from strokelrp.lrp.presets import DEFAULT_PRESET, TARGETS, Preset, resolve
from strokelrp.lrp.rules import (
    ConvLayer,
    PreparedRule,
    Rule,
    fold_batchnorm,
    maxpool_forward,
    maxpool_relevance,
)
from strokelrp.model.graph import INPUT, Concat, CropLike, Node, apply_node

OUTPUT = "output"
"""Name of the point holding the starting relevance (the network output)."""

LESION = 1
"""Index of the lesion class in the logits."""

PASS_THROUGH = (nn.modules.batchnorm._BatchNorm, nn.LeakyReLU, nn.ReLU, nn.Identity)
"""Modules whose relevance passes unchanged (the paper's "not applicable" layers)."""

BACKGROUND = 0
"""Index of the background class in the logits."""

Target = Literal["prediction", "ground_truth", "authors", "contrastive"] | Tensor


@dataclass
class Conservation:
    """Relevance sums along the walk, per filter setting.

    ``points``: ``output``, then every convolution in walk order, then ``input``.
    ``sums`` (P, K) float64: the relevance at each point (after its filter).
    ``totals`` (P, K) float64: all relevance in flight just after the point (the point's
    relevance plus what waits on the skip connections): a cut through the network, so for a
    conservative rule every row equals the output's row.
    """

    points: list[str]
    sums: Tensor
    totals: Tensor

    @property
    def ratios(self) -> Tensor:
        """``totals / totals[output]`` (P, K); NaN where the output's sum is 0."""
        ref = self.totals[0]
        return self.totals / torch.where(ref != 0, ref, torch.full_like(ref, float("nan")))

    def max_deviation(self) -> float:
        """max |ratio - 1| over points and settings (NaN if the output's sum is 0)."""
        return float((self.ratios - 1).abs().max())

    def table(self, labels: Sequence[str] | None = None) -> str:
        """A markdown table: one row per point, relevance sum and in-flight ratio per setting."""
        k = self.sums.shape[1]
        labels = list(labels) if labels is not None else [str(i) for i in range(k)]
        head = "| point | " + " | ".join(f"sum {lab} | ratio {lab}" for lab in labels) + " |"
        rows = [head, "|---" * (1 + 2 * k) + "|"]
        ratios = self.ratios
        for i, name in enumerate(self.points):
            cells = [f"{float(self.sums[i, j]):.6g} | {float(ratios[i, j]):.6f}" for j in range(k)]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


@dataclass
class Explanation:
    """Result of :func:`explain`.

    ``relevance`` (K, C_in, D, H, W): input relevance per filter setting (K = len(filters), or
    1). ``output`` (1, num_classes, D, H, W): logits. ``layers``: {point: (K, C, d, h, w)}
    relevance at every point (``output`` and each convolution's input) when ``keep_layers``.
    ``filters``: the settings (None = raw); ``points``: names of the points that were filtered.
    ``empty_target``: the starting relevance was all zero (e.g. nothing predicted as lesion),
    so every map is zero; ``notes`` says so in words. ``memory``: how the settings were
    walked under the memory budget (chunks, estimated bytes; :class:`MemoryPlan`).
    """

    relevance: Tensor
    output: Tensor
    conservation: Conservation
    filters: list[Filter | None]
    points: list[str]
    preset: Preset
    target: str
    layers: dict[str, Tensor] = field(default_factory=dict)
    empty_target: bool = False
    notes: list[str] = field(default_factory=list)
    memory: MemoryPlan | None = None

    @property
    def labels(self) -> list[str]:
        """One short label per setting (``raw``, ``pass(0,0.4)``, ...)."""
        return [filter_label(f) for f in self.filters]


# ------------------------------------------------------------------------------ the plan


@dataclass
class _ConvStep:
    layer: ConvLayer
    rule: Rule
    z_from: str | None  # value holding the layer's output W a + b, when the rule reuses it


def _plan(nodes: list[Node], preset: Preset) -> dict[str, _ConvStep]:
    """Assign a rule (and, with ``batchnorm="fold"``, the folded layer) to every convolution;
    check that every other op has a relevance step."""
    readers: dict[str, list[Node]] = {}
    for node in nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    convs: dict[str, _ConvStep] = {}
    decoder = False  # from the first transposed convolution on: the preset's "upper" rule
    for i, node in enumerate(nodes):
        op = node.op
        decoder = decoder or isinstance(op, nn.ConvTranspose3d)
        if isinstance(op, (Concat, CropLike, nn.MaxPool3d, *PASS_THROUGH)):
            continue
        if not isinstance(op, nn.Conv3d | nn.ConvTranspose3d):
            raise StrokeLRPError(
                f"no relevance rule for node {node.name!r} ({type(op).__name__}); supported: "
                "Conv3d, ConvTranspose3d, MaxPool3d, BatchNorm, LeakyReLU, ReLU, Concat, CropLike"
            )
        layer = ConvLayer.from_module(op)
        position = (
            "head"
            if i == len(nodes) - 1
            else "first"
            if INPUT in node.inputs
            else "upper"
            if decoder
            else "body"
        )
        rule = preset.rule(position)  # type: ignore[arg-type]
        out_name = node.name
        users = readers.get(node.name, [])
        if (
            preset.batchnorm == "fold"
            and len(users) == 1
            and isinstance(users[0].op, nn.modules.batchnorm._BatchNorm)
        ):
            layer = fold_batchnorm(layer, users[0].op)  # the BN node then passes relevance
            out_name = users[0].name
        convs[node.name] = _ConvStep(layer, rule, out_name if rule.reuses_output else None)
    return convs


# --------------------------------------------------------------------------- the target


def target_weights(target: str, logits: Tensor, label: Any = None) -> tuple[Tensor, str]:
    """Weights W (1, num_classes, D, H, W) such that the explained scalar is sum(W * logits).

    ``"prediction"``: W = 1 on the lesion logit of the voxels predicted as lesion;
    ``"ground_truth"``: the same on ``label`` (D, H, W) voxels; ``"authors"``: W = 1 everywhere
    (both classes); ``"contrastive"``: the log-odds, +1 on the lesion logit and -1 on the
    background logit of the predicted voxels. Returns (W, the target's name).
    """
    if not isinstance(target, str) or target not in TARGETS:
        raise StrokeLRPError(
            f"unknown target {target!r}; use one of {', '.join(TARGETS)} or a tensor of the "
            f"output's shape {tuple(logits.shape)}"
        )
    if target == "authors":
        return torch.ones_like(logits), target
    if target in ("prediction", "contrastive"):
        mask = logits.argmax(dim=1) == LESION
    else:
        if label is None:
            raise StrokeLRPError('target="ground_truth" needs label= (a (D, H, W) mask)')
        lab = torch.as_tensor(np.asarray(label) if not isinstance(label, Tensor) else label)
        if lab.dim() == 4 and lab.shape[0] == 1:
            lab = lab[0]
        if tuple(lab.shape) != tuple(logits.shape[2:]):
            raise StrokeLRPError(
                f"label must have the input's spatial shape {tuple(logits.shape[2:])}, "
                f"got {tuple(lab.shape)}"
            )
        mask = (lab.to(logits.device) > 0).unsqueeze(0)
    weights = torch.zeros_like(logits)
    weights[:, LESION] = mask.to(logits.dtype)
    if target == "contrastive":
        weights[:, BACKGROUND] = -weights[:, LESION]
    return weights, target


def _start(target: Target, logits: Tensor, label: Any) -> tuple[Tensor, str]:
    """Starting relevance (1, num_classes, D, H, W) and a description of the target."""
    if isinstance(target, Tensor):
        if tuple(target.shape) != tuple(logits.shape):
            raise StrokeLRPError(
                f"target tensor must have the output's shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return target.to(dtype=logits.dtype, device=logits.device), "tensor"
    weights, name = target_weights(target, logits, label)
    return logits * weights, name


# ------------------------------------------------------------------------------ explain


def _check_input(model: nn.Module, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[0] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise StrokeLRPError(f"x must be a (1, C, D, H, W) tensor, got {shape}")
    if not x.is_floating_point():
        raise StrokeLRPError(f"x must be floating point, got {x.dtype}")
    cin = getattr(model, "in_channels", x.shape[1])
    if x.shape[1] != cin:
        raise StrokeLRPError(f"x has {x.shape[1]} channels, the model expects {cin}")
    if not hasattr(model, "graph"):
        raise StrokeLRPError(f"{type(model).__name__} has no graph(): use strokelrp's UNet3D")
    param = next(model.parameters(), None)
    if param is not None and (param.device != x.device or param.dtype != x.dtype):
        raise StrokeLRPError(
            f"x is {x.dtype} on {x.device} but the model is {param.dtype} on {param.device}: "
            "move one to the other (e.g. x.to(next(model.parameters())))"
        )


def _points(filter_at: str | Sequence[str], conv_names: list[str]) -> list[str]:
    valid = [OUTPUT, *conv_names]
    if isinstance(filter_at, str):
        if filter_at == "all":
            return valid
        if filter_at == OUTPUT:
            return [OUTPUT]
        filter_at = [filter_at]
    bad = [p for p in filter_at if p not in valid]
    if bad:
        raise StrokeLRPError(
            f"unknown filter point(s) {', '.join(map(repr, bad))}; use 'all', 'output' or "
            f"names among: {', '.join(valid)}"
        )
    return [p for p in valid if p in set(filter_at)]


def explain(
    model: nn.Module,
    x: Tensor,
    target: Target = "prediction",
    label: Any = None,
    rules: str | Preset = DEFAULT_PRESET,
    filters: Sequence[Filter | None] | None = None,
    filter_at: str | Sequence[str] = "all",
    keep_layers: bool = False,
    memory_budget: str | int | float | None = None,
) -> Explanation:
    """Relevance of the input voxels for the chosen target, for K filter settings at once.

    ``x`` (1, C_in, D, H, W) on the model's device and dtype (float64 works with
    ``model.double()``). ``target``: ``"prediction"`` (the lesion logit on voxels predicted as
    lesion), ``"ground_truth"`` (the lesion logit on ``label`` (D, H, W) voxels),
    ``"authors"`` (the whole output, both classes: the authors' start), ``"contrastive"``
    (the log-odds, lesion minus background logit, on the predicted voxels; Gu et al. 2018) or
    a tensor of the output's shape (1, num_classes, D, H, W) used as the starting relevance.
    The start is ``W * logits`` with W from :func:`target_weights`.
    ``rules``: a preset name (``strokelrp.lrp.presets.PRESETS``; default
    :data:`~strokelrp.lrp.presets.DEFAULT_PRESET`) or a :class:`Preset`.
    ``filters``: one setting per map (None = unfiltered); ``filter_at``: ``"all"`` (the
    output and every convolution's input relevance), ``"output"`` or a list of point names.
    ``memory_budget``: bytes (or ``"4GB"``, ``"512MiB"``, ``"unlimited"``) the walk may use;
    the K settings are walked in chunks that fit (same results); None = the smaller of 8 GB
    and half the memory available (CPU) or free (GPU), see :mod:`strokelrp.lrp.budget`.
    The model is run in eval mode and restored to its previous mode afterwards.

    Returns an :class:`Explanation` with ``.relevance`` (K, C_in, D, H, W).
    """
    preset = resolve(rules)
    _check_input(model, x)
    budget = resolve_budget(memory_budget, x.device)
    settings: list[Filter | None] = [None] if filters is None else list(filters)
    if not settings:
        raise StrokeLRPError("filters must hold at least one setting (None = unfiltered)")
    bank = FilterBank(settings)
    nodes: list[Node] = model.graph()  # type: ignore[operator]
    convs = _plan(nodes, preset)
    points = _points(filter_at, list(convs))  # validated even when nothing filters
    if not bank.active:
        points = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _explain(
                nodes, convs, x, target, label, preset, bank, points, keep_layers, budget
            )
    finally:
        model.train(was_training)


def _forward(
    nodes: list[Node], convs: dict[str, _ConvStep], x: Tensor
) -> tuple[Tensor, dict[str, Tensor], dict[str, Any], dict[str, tuple[int, ...]]]:
    """Evaluate the graph; keep what the backward walk needs (conv inputs, reused outputs,
    pool winners, shapes) and release everything else as soon as the forward is done with it.
    Also returns every value's shape (for the memory plan)."""
    keep: set[str] = set()
    for node in nodes:
        step = convs.get(node.name)
        if step is not None:
            keep.add(node.inputs[0])
            if step.z_from is not None:
                keep.add(step.z_from)
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node.inputs:
            last_use[name] = i
    values: dict[str, Tensor] = {INPUT: x}
    shapes: dict[str, tuple[int, ...]] = {INPUT: tuple(x.shape)}
    saved: dict[str, Any] = {}
    for i, node in enumerate(nodes):
        args = [values[n] for n in node.inputs]
        if isinstance(node.op, nn.MaxPool3d):
            out, saved[node.name] = maxpool_forward(node.op, args[0])
        else:
            out = apply_node(node, args)
            if isinstance(node.op, CropLike):
                saved[node.name] = tuple(args[0].shape[2:])
            elif isinstance(node.op, Concat):
                saved[node.name] = [a.shape[1] for a in args]
        values[node.name] = out
        shapes[node.name] = tuple(out.shape)
        for name in node.inputs:
            if last_use[name] == i and name not in keep:
                del values[name]
    logits = values[nodes[-1].name]
    return logits, {k: v for k, v in values.items() if k in keep}, saved, shapes


# ------------------------------------------------------------------------ the memory plan


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape[1:])  # per setting: the batch dimension is left out


def _setting_bytes(
    nodes: list[Node],
    convs: dict[str, _ConvStep],
    shapes: dict[str, tuple[int, ...]],
    terms: dict[str, int],
    itemsize: int,
) -> int:
    """Bytes one setting needs at the peak of the walk, from the shapes alone.

    Mirrors :func:`_walk`: relevance waiting on the skip connections, plus the step's
    temporaries (a conv step holds R, its channels-last copy, the J stacked gradient terms
    and their sum; the filter a byte mask; a sum of two relevances the new tensor).
    """
    pending: dict[str, int] = {nodes[-1].name: _numel(shapes[nodes[-1].name])}
    peak = 0
    for node in reversed(nodes):
        r = pending.pop(node.name, None)
        if r is None:
            continue
        held = sum(pending.values())
        n_src = _numel(shapes[node.inputs[0]])
        if node.name in convs:
            j = terms[node.name]
            step = 2 * r + j * n_src + (n_src if j > 1 else 0) + -(-n_src // itemsize)
            sent = {node.inputs[0]: n_src}
        elif isinstance(node.op, Concat):
            step = r + sum(_numel(shapes[n]) for n in node.inputs)  # parts that wait: copies
            sent = {n: _numel(shapes[n]) for n in node.inputs}
        else:  # pooling, crop: a new tensor of the input's size; pass-through: none
            step = r + (n_src if isinstance(node.op, nn.MaxPool3d | CropLike) else 0)
            sent = {node.inputs[0]: n_src}
        peak = max(peak, held + step)
        for name, n in sent.items():
            if name in pending:  # a sum: old + new + result alive together
                peak = max(peak, sum(pending.values()) + pending[name] + 2 * n)
            pending[name] = n
        peak = max(peak, sum(pending.values()))
    return peak * itemsize


def _terms(step: _ConvStep, x: Tensor) -> int:
    """How many terms (c_t, W_t) the step's rule stacks (2 for z+, 1 for w+ and epsilon)."""
    layer = step.layer
    c_in = layer.weight.shape[layer.in_dim]
    probe = x.new_ones(1, c_in, *([1] * (x.dim() - 2)))
    return len(step.rule.terms(probe, layer.weight, layer))


def _memory_plan(
    nodes: list[Node],
    convs: dict[str, _ConvStep],
    shapes: dict[str, tuple[int, ...]],
    held: int,
    x: Tensor,
    k: int,
    keep_layers: bool,
    budget: float,
) -> MemoryPlan:
    """Chunks for ``k`` settings under ``budget`` bytes; ``held``: bytes the forward pass left
    for the walk (kept activations, pool winners)."""
    itemsize = x.element_size()
    terms = {name: _terms(step, x) for name, step in convs.items()}
    per_setting = _setting_bytes(nodes, convs, shapes, terms, itemsize)
    results = _numel(shapes[INPUT])  # the maps (and the kept layers) of every setting
    if keep_layers:
        results += _numel(shapes[nodes[-1].name])
        results += sum(_numel(shapes[nodes[i].inputs[0]]) for i in _conv_index(nodes, convs))
    step_shared = 0  # a step's own denominators: stacked inputs (+ copy), Z and stab(Z)
    cached = 0  # what caching every step's denominators adds to the kept activations
    for node in nodes:
        if node.name in convs:
            n_in, n_out = _numel(shapes[node.inputs[0]]), _numel(shapes[node.name])
            j = terms[node.name]
            step_shared = max(step_shared, (2 * j * n_in + 3 * n_out) * itemsize)
            cached += (n_out + (j * n_in if j > 1 else 0)) * itemsize
    return plan(k, per_setting, held + k * results * itemsize + step_shared, cached, budget)


def _conv_index(nodes: list[Node], convs: dict[str, _ConvStep]) -> list[int]:
    return [i for i, node in enumerate(nodes) if node.name in convs]


# ------------------------------------------------------------------------------ the walk


@dataclass
class _Walked:
    """One chunk's results: input relevance (k, C_in, ...), points, sums, totals, layers."""

    relevance: Tensor
    names: list[str]
    sums: list[Tensor]
    totals: list[Tensor]
    layers: dict[str, Tensor]


def _explain(
    nodes: list[Node],
    convs: dict[str, _ConvStep],
    x: Tensor,
    target: Target,
    label: Any,
    preset: Preset,
    bank: FilterBank,
    points: list[str],
    keep_layers: bool,
    budget: float,
) -> Explanation:
    logits, acts, saved, shapes = _forward(nodes, convs, x)
    start, target_name = _start(target, logits, label)
    k = len(bank)
    held = sum(t.numel() * t.element_size() for t in acts.values() if t is not x)
    held += sum(s.indices.numel() * 8 for s in saved.values() if hasattr(s, "indices"))
    memory = _memory_plan(nodes, convs, shapes, held, x, k, keep_layers, budget)
    notes = []
    if not memory.fits:
        notes.append(
            f"memory budget {format_bytes(budget)} is below the estimated need of "
            f"{format_bytes(memory.estimate)}: walking {max(memory.sizes)} setting(s) at a time"
        )
        warnings.warn(notes[-1], RuntimeWarning, stacklevel=3)
    chunks = memory.chunks
    cache: dict[str, PreparedRule] | None = {} if memory.cache else None
    walked: list[_Walked] = []
    for i, chunk in enumerate(chunks):
        sub = bank if len(chunks) == 1 else FilterBank(bank.filters[chunk.start : chunk.stop])
        walked.append(
            _walk(
                nodes,
                convs,
                acts,
                saved,
                start,
                x,
                sub,
                set(points),
                keep_layers,
                release=i == len(chunks) - 1 or (cache is not None),
                last=i == len(chunks) - 1,
                cache=cache,
            )
        )
    del acts, saved, cache
    first = walked[0]
    if len(walked) == 1:
        relevance, sums, totals, layers = (
            first.relevance.contiguous(),
            torch.stack(first.sums),
            torch.stack(first.totals),
            first.layers,
        )
    else:
        relevance = x.new_empty(k, *x.shape[1:])
        for chunk, w in zip(chunks, walked, strict=True):
            relevance[chunk.start : chunk.stop] = w.relevance
            w.relevance = relevance[:0]  # release the chunk's copy
        sums = torch.cat([torch.stack(w.sums) for w in walked], dim=1)
        totals = torch.cat([torch.stack(w.totals) for w in walked], dim=1)
        layers = {
            name: torch.cat([w.layers.pop(name) for w in walked]) for name in first.layers.copy()
        }
    empty = not bool(start.any())
    if empty:
        notes.append(
            f"target {target_name!r} selects nothing (no voxel with non-zero starting "
            "relevance): every relevance map is zero"
        )
        warnings.warn(notes[-1], RuntimeWarning, stacklevel=3)
    return Explanation(
        relevance=relevance,
        output=logits,
        conservation=Conservation(first.names, sums.cpu(), totals.cpu()),
        filters=list(bank.filters),
        points=points,
        preset=preset,
        target=target_name,
        layers=layers,
        empty_target=empty,
        notes=notes,
        memory=memory,
    )


def _walk(
    nodes: list[Node],
    convs: dict[str, _ConvStep],
    acts: dict[str, Tensor],
    saved: dict[str, Any],
    start: Tensor,
    x: Tensor,
    bank: FilterBank,
    filtered: set[str],
    keep_layers: bool,
    release: bool,
    last: bool,
    cache: dict[str, PreparedRule] | None,
) -> _Walked:
    """The backward walk for the settings of ``bank`` (one chunk).

    ``release``: drop activations from ``acts`` once the walk has passed them (the last
    chunk, or the first when the prepared rules are cached); ``last``: also drop the pool
    winners and shapes from ``saved`` and the cached rules. ``cache`` (None = no cache):
    prepared rules by conv node, filled by the first chunk and read by the others.
    """
    release_at: dict[str, list[str]] = {}  # conv node -> kept values its step last reads
    seen: set[str] = set()
    for node in nodes:
        step = convs.get(node.name)
        if step is None:
            continue
        for name in (node.inputs[0], step.z_from):
            if name is not None and name not in seen:
                seen.add(name)
                release_at.setdefault(node.name, []).append(name)
    k = len(bank)
    get = saved.pop if last else saved.__getitem__
    layers: dict[str, Tensor] = {}
    names: list[str] = []
    sums: list[Tensor] = []
    totals: list[Tensor] = []
    pending: dict[str, Tensor] = {}
    pending_sum: dict[str, Tensor] = {}

    def total(r: Tensor) -> Tensor:
        return r.sum(dim=tuple(range(1, r.dim()))).double()

    def record(name: str, r: Tensor, s: Tensor) -> None:
        names.append(name)
        sums.append(s)
        totals.append(torch.stack(list(pending_sum.values())).sum(0))
        if keep_layers:  # a copy: the walk overwrites relevance it no longer needs
            layers[name] = r.clone(memory_format=torch.contiguous_format)

    def send(name: str, r: Tensor, s: Tensor) -> None:
        """Add relevance ``r`` (sum ``s`` per setting) to what value ``name`` receives."""
        if name in pending:
            pending[name] = pending[name] + r
            pending_sum[name] = pending_sum[name] + s
        else:
            pending[name], pending_sum[name] = r, s

    def filt(name: str, r: Tensor) -> Tensor:
        return bank.apply_(r) if name in filtered else r

    def prepared(name: str, step: _ConvStep, src: str) -> PreparedRule:
        if cache is not None and name in cache:
            return cache.pop(name) if last else cache[name]
        z = acts[step.z_from] if step.z_from is not None else None
        rule = step.rule.prepare(step.layer, acts[src], z)
        if cache is not None:
            rule = rule.batched() if k > 1 else rule
            cache[name] = rule
        return rule

    r0 = filt(OUTPUT, start.expand(k, *start.shape[1:]).clone())
    s0 = total(r0)
    send(nodes[-1].name, r0, s0)
    record(OUTPUT, r0, s0)
    del r0
    for node in reversed(nodes):
        r = pending.pop(node.name, None)
        s = pending_sum.pop(node.name, None)
        if r is None or s is None:
            continue
        op = node.op
        src = node.inputs[0]
        if node.name in convs:
            r_in = prepared(node.name, convs[node.name], src)(r, inplace=True)
            del r
            r_in = filt(node.name, r_in)
            s_in = total(r_in)
            send(src, r_in, s_in)
            record(node.name, r_in, s_in)
            del r_in
        elif isinstance(op, nn.MaxPool3d):  # sums carry over: relevance is only moved
            send(src, maxpool_relevance(r, get(node.name)), s)
        elif isinstance(op, Concat):
            parts = r.split(get(node.name), dim=1)
            del r
            # the part walked next is used as is; the others wait on skip connections and are
            # copied so that they do not hold the whole tensor (all channels) alive meanwhile
            order = sorted(range(len(parts)), key=lambda i: -_index(nodes, node.inputs[i]))
            for rank, i in enumerate(order):
                part = parts[i] if rank == 0 else parts[i].clone()
                send(node.inputs[i], part, total(part))
            del parts, part
        elif isinstance(op, CropLike):
            d, h, w = get(node.name)
            pad = (0, w - r.shape[4], 0, h - r.shape[3], 0, d - r.shape[2])
            send(src, F.pad(r, pad), s)
        else:  # pass-through (BatchNorm, folded or not; activations): checked by _plan
            send(src, r, s)
        if release:
            for name in release_at.get(node.name, ()):
                acts.pop(name, None)
    relevance = pending.pop(INPUT, None)
    if relevance is None:
        relevance = x.new_zeros(k, *x.shape[1:])
    s_input = pending_sum.pop(INPUT, None)
    pending_sum[INPUT] = total(relevance) if s_input is None else s_input
    record(INPUT, relevance, pending_sum[INPUT])
    layers.pop(INPUT, None)
    return _Walked(relevance, names, sums, totals, layers)


def _index(nodes: list[Node], name: str) -> int:
    """Position of the node producing value ``name`` (-1 for the input)."""
    for i, node in enumerate(nodes):
        if node.name == name:
            return i
    return -1
