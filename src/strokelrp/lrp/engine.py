"""The relevance engine: record the network once on the real input, then walk it backward.

``explain`` captures the computation (``strokelrp.lrp.graph``: every module with a relevance
step is one node named by its module path, structural torch functions are function nodes),
keeps the nodes on the path to the explained output, and walks them in reverse:

- convolutions (1-3 D, transposed) and ``Linear``: the composite's rule for that module
  (``strokelrp.lrp.composites``); the relevance at the layer's input is a *point* named by the
  module path, where filters may act; with ``batchnorm="fold"`` an eval-mode BatchNorm that
  alone reads the layer's output is folded into it (and then passes relevance);
- every other node: its step from the registry (``strokelrp.lrp.steps``): activations and
  norms pass, additions split in proportion to the summands, concatenation cuts, slicing and
  padding move relevance, max pooling goes to the winner, ...; a node without a step is an
  error naming it, its module path and how to register a step;
- a value read by several nodes receives the sum of their relevances.

Relevance carries a batch of K filter settings, ``(K, *value_shape[1:])``; activations and the
rules' denominators are computed once with batch 1 and shared. When K settings at once would
exceed the memory budget, the walk runs over chunks of settings (:mod:`strokelrp.lrp.budget`);
the forward pass is still run once, and the denominators are computed once and cached across
chunks when the budget leaves room for them (else recomputed per chunk).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from strokelrp.config import BACKGROUND, LESION
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.budget import MemoryPlan, Need, format_bytes, plan, resolve_budget
from strokelrp.lrp.composites import Composite, as_composite
from strokelrp.lrp.filters import Filter, FilterBank, filter_label
from strokelrp.lrp.graph import INPUT, Graph, Node, capture
from strokelrp.lrp.presets import DEFAULT_PRESET, TARGETS, Preset
from strokelrp.lrp.rules import (
    FORWARD_KERNELS,
    LAYER_TYPES,
    ConvLayer,
    PreparedRule,
    Rule,
    batch_layout,
    fold_batchnorm,
    fold_instancenorm,
)
from strokelrp.lrp.steps import CAT, PASS, Step, function_step, layout_of, module_step

OUTPUT = "output"
"""Name of the point holding the starting relevance (the network output)."""

Target = (
    Literal["prediction", "ground_truth", "authors", "contrastive"]
    | Tensor
    | Callable[[Tensor], Tensor]
)


@dataclass
class Conservation:
    """Relevance sums along the walk, per filter setting.

    ``points``: ``output``, then every convolution / linear layer in walk order, then ``input``.
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

    ``relevance`` (K, C_in, *S): input relevance per filter setting (K = len(filters), or 1).
    ``output`` (1, num_classes, *S): the explained output (logits). ``layers``: {point:
    (K, C, *s)} relevance at every point (``output`` and each layer's input) when
    ``keep_layers``. ``preset``: the rules given (a :class:`Preset` or a :class:`Composite`).
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
    preset: Preset | Composite
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


class _LayerStep(Step):
    """Convolutions and linear layers at capture: keep the input (and the output when a rule
    of the composite reuses it)."""

    def __init__(self, reuse: bool) -> None:
        self.reuse = reuse

    def keeps(self, node: Node) -> tuple[bool, bool]:
        return True, self.reuse


class _KeepOutput(Step):
    def keeps(self, node: Node) -> tuple[bool, bool]:
        return False, True


class _KeepBoth(Step):
    """An InstanceNorm to fold: its input gives the instance's statistics (and its output
    the folded layer's output, when a rule reuses it)."""

    def __init__(self, reuse: bool) -> None:
        self.reuse = reuse

    def keeps(self, node: Node) -> tuple[bool, bool]:
        return True, self.reuse


@dataclass
class _LayerPlan:
    layer: ConvLayer
    rule: Rule
    z_from: str | None  # value holding the layer's output W a + b, when the rule reuses it


def _step_finder(comp: Composite) -> Callable[[Any], Step | None]:
    layer = _LayerStep(comp.reuses_output)
    keep_bn = comp.batchnorm == "fold" and comp.reuses_output
    fold_in = comp.instancenorm == "fold"

    def step_of(target: Any) -> Step | None:
        if isinstance(target, nn.Module):
            if isinstance(target, LAYER_TYPES):
                return layer
            if keep_bn and isinstance(target, nn.modules.batchnorm._BatchNorm):
                return _KeepOutput()
            if fold_in and isinstance(target, nn.modules.instancenorm._InstanceNorm):
                return _KeepBoth(comp.reuses_output)
            return module_step(target)
        return function_step(target)

    return step_of


def _is_leaf(module: nn.Module) -> bool:
    return isinstance(module, LAYER_TYPES) or module_step(module) is not None


def dotted_name(func: Any) -> str:
    """The name under which a recorded function is registered: ``torch.Tensor.clamp`` for the
    tensor method (``x.clamp(min=0)``), ``torch.clamp``, ``torch.nn.functional.pad``."""
    name = getattr(func, "__name__", repr(func))
    if getattr(func, "__objclass__", None) is torch._C.TensorBase:
        return f"torch.Tensor.{name}"
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


def _unsupported(node: Node, model: nn.Module) -> StrokeLRPError:
    where = node.path or "the model itself"
    owner = type(model.get_submodule(node.path)).__name__ if node.path else type(model).__name__
    if node.is_module:
        how = (
            f"register a step for the module type: strokelrp.lrp.register_module_step("
            f"{node.kind}, strokelrp.lrp.PASS) (or an own strokelrp.lrp.Step)"
        )
    else:
        how = (
            f"register a step for the function: strokelrp.lrp.register_function_step("
            f"{dotted_name(node.target)}, step), e.g. strokelrp.lrp.PASS or "
            "strokelrp.lrp.Adjoint()"
        )
    return StrokeLRPError(
        f"no relevance step for node {node.name!r} ({node.kind}) in module {where!r} "
        f"({owner}); {how}. See docs/method.md, 'Explaining your own network'."
    )


def _untraceable(model: nn.Module, graph: Graph) -> StrokeLRPError:
    """The error for a model whose output cannot be followed back to its input: it names the
    first recorded operation that returns several tensors (their tensors are untraced), with
    the module that called it and how to register a step for that module."""
    lost = [n for n in graph.nodes if n.output is None]
    if not lost:
        return StrokeLRPError(f"{type(model).__name__} returned no tensor computed from its input")
    node = lost[0]
    where = node.path or "the model itself"
    owner = type(model.get_submodule(node.path)).__name__ if node.path else type(model).__name__
    if node.path:
        how = (
            f"register one for the module: strokelrp.lrp.register_module_step({owner}, step) "
            "(the step crosses the module's first tensor output, e.g. strokelrp.lrp.PASS or "
            "an own strokelrp.lrp.Step)"
        )
    else:
        how = "compute it inside a module of its own and register a step for that module"
    return StrokeLRPError(
        f"{type(model).__name__} returned no tensor the engine can follow back to its input: "
        f"node {node.name!r} ({node.kind}) in module {where!r} ({owner}) returns several "
        f"tensors and has no relevance step; {how}. See docs/method.md, 'Explaining your "
        "own network'."
    )


def _plan(
    model: nn.Module, graph: Graph, comp: Composite, out_name: str
) -> tuple[list[Node], dict[str, _LayerPlan], dict[str, Step]]:
    """The nodes on the path to ``out_name`` (execution order), the layers' rules, the other
    nodes' steps; errors for nodes without a step and values without batch dimension 1."""
    producer = {n.output: n for n in graph.nodes if n.output is not None}
    on_path: set[str] = set()
    todo = [out_name]
    while todo:
        value = todo.pop()
        node = producer.get(value)
        if node is None or node.name in on_path:
            continue
        on_path.add(node.name)
        todo.extend(node.inputs)
    nodes = [n for n in graph.nodes if n.name in on_path]
    steps: dict[str, Step] = {}
    layer_nodes: list[Node] = []
    for node in nodes:
        shape = graph.shapes[node.output or ""]
        if len(shape) < 1 or shape[0] != 1:
            raise StrokeLRPError(
                f"node {node.name!r} ({node.kind}) gives a value of shape {tuple(shape)}: "
                "the engine needs every value on the way to the output to keep a leading "
                "batch dimension of size 1"
            )
        if isinstance(node.target, LAYER_TYPES):
            layer_nodes.append(node)
            continue
        step = module_step(node.target) if node.is_module else function_step(node.target)
        if step is None:
            raise _unsupported(node, model)
        steps[node.name] = step
    readers: dict[str, list[Node]] = {}
    for node in nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    layers: dict[str, _LayerPlan] = {}
    for i, node in enumerate(layer_nodes):
        module = node.target
        assert isinstance(module, nn.Module)
        try:
            layer = ConvLayer.from_module(module)
        except StrokeLRPError as err:
            raise StrokeLRPError(f"layer {node.name!r}: {err}") from err
        rule = comp.rule_for(node.path, module, i == 0, i == len(layer_nodes) - 1)
        out_name = node.output or ""
        users = readers.get(out_name, [])
        if (
            comp.batchnorm == "fold"
            and len(users) == 1
            and isinstance(users[0].target, nn.modules.batchnorm._BatchNorm)
        ):
            layer = fold_batchnorm(layer, users[0].target)  # the BN node then passes relevance
            out_name = users[0].output or ""
            steps[users[0].name] = PASS
        elif (
            comp.instancenorm == "fold"
            and len(users) == 1
            and isinstance(users[0].target, nn.modules.instancenorm._InstanceNorm)
        ):
            z = graph.values.get(out_name)
            if z is None or z._version != graph.versions[out_name]:
                raise StrokeLRPError(
                    f"layer {node.name!r}: its output, which the InstanceNorm "
                    f"{users[0].name!r} normalises, was changed in place, so the norm cannot "
                    "be folded; use instancenorm='pass' or rebuild the network with "
                    "inplace=False"
                )
            layer = fold_instancenorm(layer, users[0].target, z)  # the norm then passes
            out_name = users[0].output or ""
            steps[users[0].name] = PASS
        z_from = None
        if rule.reuses_output:
            t = graph.values.get(out_name)
            if t is not None and t._version == graph.versions[out_name]:
                z_from = out_name
        layers[node.name] = _LayerPlan(layer, rule, z_from)
    return nodes, layers, steps


# --------------------------------------------------------------------------- the target


def _start(target: Target, logits: Tensor, label: Any, class_index: int) -> tuple[Tensor, str]:
    """Starting relevance (1, num_classes, *S) and a description of the target."""
    if isinstance(target, Tensor):
        if tuple(target.shape) != tuple(logits.shape):
            raise StrokeLRPError(
                f"target tensor must have the output's shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return target.to(dtype=logits.dtype, device=logits.device), "tensor"
    if callable(target) and not isinstance(target, str):
        start = target(logits)
        if not isinstance(start, Tensor) or tuple(start.shape) != tuple(logits.shape):
            got = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
            raise StrokeLRPError(
                f"target callable must return a tensor of the output's shape "
                f"{tuple(logits.shape)}, got {got}"
            )
        return start.to(dtype=logits.dtype, device=logits.device), "callable"
    weights, name = target_weights(target, logits, label, class_index)  # type: ignore[arg-type]
    return logits * weights, name


def target_weights(
    target: str, logits: Tensor, label: Any = None, class_index: int = LESION
) -> tuple[Tensor, str]:
    """Weights W (1, num_classes, *S) such that the explained scalar is sum(W * logits).

    ``"prediction"``: W = 1 on the class logit of the voxels predicted as that class;
    ``"ground_truth"``: the same on ``label`` voxels; ``"authors"``: W = 1 everywhere (both
    classes); ``"contrastive"``: the log-odds, +1 on the class logit and -1 on the background
    logit (class 0) of the predicted voxels (Gu et al. 2018). Returns (W, the target's name).
    """
    if not isinstance(target, str) or target not in TARGETS:
        raise StrokeLRPError(
            f"unknown target {target!r}; use one of {', '.join(TARGETS)}, a tensor of the "
            f"output's shape {tuple(logits.shape)} or a callable output -> start relevance"
        )
    if target == "authors":
        return torch.ones_like(logits), "authors"
    channels = logits.shape[1]
    if channels > 1 and not 0 <= class_index < channels:
        raise StrokeLRPError(
            f"class_index {class_index} is out of range for an output with {channels} channels"
        )
    if target == "contrastive" and (channels < 2 or class_index == BACKGROUND):
        raise StrokeLRPError(
            'target="contrastive" needs two or more output channels and a class_index other '
            f"than the background ({BACKGROUND})"
        )
    channel = 0 if channels == 1 else class_index
    if target in ("prediction", "contrastive"):
        # one sigmoid logit: predicted where the logit is positive
        mask = logits[:, 0] > 0 if channels == 1 else logits.argmax(dim=1) == class_index
    else:
        if label is None:
            raise StrokeLRPError('target="ground_truth" needs label= (a mask of the input grid)')
        lab = torch.as_tensor(np.asarray(label) if not isinstance(label, Tensor) else label)
        if lab.dim() == logits.dim() - 1 and lab.shape[0] == 1:
            lab = lab[0]
        if tuple(lab.shape) != tuple(logits.shape[2:]):
            raise StrokeLRPError(
                f"label must have the input's spatial shape {tuple(logits.shape[2:])}, "
                f"got {tuple(lab.shape)}"
            )
        mask = (lab.to(logits.device) > 0).unsqueeze(0)
    weights = torch.zeros_like(logits)
    weights[:, channel] = mask.to(logits.dtype)
    if target == "contrastive":
        weights[:, BACKGROUND] = -weights[:, channel]
    return weights, target


# ------------------------------------------------------------------------------ explain


def _check_input(model: nn.Module, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise StrokeLRPError(
            f"x must be a (1, C, ...) tensor, e.g. (1, C, D, H, W): one case at a time "
            f"(batch size 1), got {shape}"
        )
    if not x.is_floating_point():
        raise StrokeLRPError(f"x must be floating point, got {x.dtype}")
    cin = getattr(model, "in_channels", x.shape[1])
    if isinstance(cin, int) and x.shape[1] != cin:
        raise StrokeLRPError(f"x has {x.shape[1]} channels, the model expects {cin}")
    param = next(model.parameters(), None)
    if param is not None and (param.device != x.device or param.dtype != x.dtype):
        raise StrokeLRPError(
            f"x is {x.dtype} on {x.device} but the model is {param.dtype} on {param.device}: "
            "move one to the other (e.g. x.to(next(model.parameters())))"
        )


def _points(filter_at: str | Sequence[str], layer_names: list[str]) -> list[str]:
    valid = [OUTPUT, *layer_names]
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
    rules: str | Preset | Composite = DEFAULT_PRESET,
    filters: Sequence[Filter | None] | None = None,
    filter_at: str | Sequence[str] = "all",
    keep_layers: bool = False,
    memory_budget: str | int | float | None = None,
    class_index: int = LESION,
    output: int = 0,
) -> Explanation:
    """Relevance of the input elements for the chosen target, for K filter settings at once.

    ``model``: any ``nn.Module`` (2-D or 3-D, MONAI networks included) whose operations have
    relevance steps (docs/method.md). ``x`` (1, C_in, *S) on the model's device and dtype
    (float64 works with ``model.double()``). ``target``: ``"prediction"`` (the
    ``class_index`` logit on the voxels predicted as that class; a one-channel output: the
    logit where it is > 0), ``"ground_truth"`` (the ``class_index`` logit on ``label``
    (*S) voxels), ``"authors"`` (the whole output), ``"contrastive"`` (the log-odds:
    ``class_index`` minus background logit on the predicted voxels; Gu et al. 2018), a tensor
    of the output's shape, or a callable output -> starting relevance; named targets start
    from ``W * logits`` with W from :func:`target_weights`. ``rules``: a preset name
    (``strokelrp.lrp.presets.PRESETS``; default :data:`~strokelrp.lrp.presets.DEFAULT_PRESET`),
    a :class:`Preset` or a :class:`Composite`.
    ``filters``: one setting per map (None = unfiltered); ``filter_at``: ``"all"`` (the
    output and every layer's input relevance), ``"output"`` or a list of point names (module
    paths). ``memory_budget``: bytes (or ``"4GB"``, ``"512MiB"``, ``"unlimited"``) the walk
    may use; the K settings are walked in chunks that fit (same results); None = the smaller
    of 8 GB and half the memory available (CPU) or free (GPU), see :mod:`strokelrp.lrp.budget`.
    ``output``: which tensor of a model returning several is explained (default the first).
    The model is run in eval mode and restored to its previous mode afterwards.

    Returns an :class:`Explanation` with ``.relevance`` (K, C_in, *S).
    """
    comp = as_composite(rules)
    _check_input(model, x)
    budget = resolve_budget(memory_budget, x.device)
    settings: list[Filter | None] = [None] if filters is None else list(filters)
    if not settings:
        raise StrokeLRPError("filters must hold at least one setting (None = unfiltered)")
    bank = FilterBank(settings)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            w = _capture_walk(model, x, comp, output)
            points = _points(filter_at, list(w.layers))  # validated even when nothing filters
            if not bank.active:
                points = []
            given = rules if isinstance(rules, Preset | Composite) else comp
            return _explain(
                w,
                x,
                target,
                label,
                class_index,
                given,
                bank,
                points,
                keep_layers,
                budget,
            )
    finally:
        model.train(was_training)


def plan_memory(
    model: nn.Module,
    x: Tensor,
    settings: int,
    rules: str | Preset | Composite = DEFAULT_PRESET,
    keep_layers: bool = False,
    memory_budget: str | int | float | None = None,
    output: int = 0,
) -> MemoryPlan:
    """How :func:`explain` would walk ``settings`` filter settings on ``x`` under the budget
    (chunks, estimated peak), at the cost of one forward pass; nothing is explained."""
    comp = as_composite(rules)
    _check_input(model, x)
    budget = resolve_budget(memory_budget, x.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            w = _capture_walk(model, x, comp, output)
            return _memory_plan(w, _held(w, x), x, settings, keep_layers, budget)
    finally:
        model.train(was_training)


def _capture_walk(model: nn.Module, x: Tensor, comp: Composite, output: int) -> _Walk:
    """Record the model on ``x`` and plan the walk to output ``output``; forward values no
    step reads are dropped."""
    graph = capture(model, x, _is_leaf, _step_finder(comp), FORWARD_KERNELS)
    if not graph.outputs:
        raise _untraceable(model, graph)
    if not -len(graph.outputs) <= output < len(graph.outputs):
        raise StrokeLRPError(
            f"output={output} but the model returns {len(graph.outputs)} tensor(s)"
        )
    out_name = graph.outputs[output]
    nodes, layers, steps = _plan(model, graph, comp, out_name)
    w = _Walk(graph, out_name, nodes, layers, steps, comp)
    needed = {name for node in nodes for name in w.kept(node)} | {out_name, INPUT}
    for name in [n for n in graph.values if n not in needed]:
        del graph.values[name]
    return w


def _held(w: _Walk, x: Tensor) -> int:
    """Bytes the forward pass leaves for the walk: kept values (not ``x``), pool winners."""
    held = sum(t.numel() * t.element_size() for t in w.graph.values.values() if t is not x)
    return held + sum(
        n.saved.indices.numel() * n.saved.indices.element_size()
        for n in w.nodes
        if hasattr(n.saved, "indices")
    )


@dataclass
class _Walk:
    """What every chunk's walk shares: the recorded graph, the path's nodes and their steps."""

    graph: Graph
    out_name: str
    nodes: list[Node]
    layers: dict[str, _LayerPlan]
    steps: dict[str, Step]
    comp: Composite
    epsilon: float = field(init=False)
    sum_epsilon: float = field(init=False)

    def __post_init__(self) -> None:
        self.epsilon = self.comp.epsilon  # the steps' Context
        self.sum_epsilon = self.comp.sum_epsilon
        self.producer = {n.output: i for i, n in enumerate(self.nodes)}

    def value(self, name: str) -> Tensor:
        return self.graph.value(name)

    def kept(self, node: Node) -> list[str]:
        """The forward values the node's step reads at walk time."""
        plan = self.layers.get(node.name)
        if plan is not None:
            return [n for n in (node.inputs[0], plan.z_from) if n is not None]
        keep_in, keep_out = self.steps[node.name].keeps(node)
        out = list(node.inputs) if keep_in else []
        return [*out, node.output] if keep_out and node.output is not None else out


# ------------------------------------------------------------------------ the memory plan


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape[1:])  # per setting: the batch dimension is left out


def _walk_needs(w: _Walk, terms: dict[str, int], itemsize: int) -> list[Need]:
    """(shared, per-setting) bytes alive at each moment of :func:`_walk_chunk`, from the shapes.

    Per setting: relevance waiting on the skip connections plus the step's own (a layer step
    holds R in its batch layout (a copy), then R and the J stacked gradient terms (and their
    sum when J > 1), then the input relevance and the filter's byte masks; a pass-through
    step nothing new; another step a new tensor per input; a sum of two relevances is made in
    place). Shared: the layer step's denominators (Z and stab(Z); with J > 1 terms also the
    stacked inputs and their copy).
    """
    shapes = w.graph.shapes
    pending: dict[str, int] = {w.out_name: _numel(shapes[w.out_name])}
    needs: list[Need] = [(0, pending[w.out_name] * itemsize)]
    for node in reversed(w.nodes):
        r = pending.pop(node.output or "", None)
        if r is None:
            continue
        held = sum(pending.values())
        sizes = {n: _numel(shapes[n]) for n in node.inputs}
        if node.name in w.layers:
            n_src = sizes[node.inputs[0]]
            j, n_out = terms[node.name], _numel(shapes[node.output or ""])
            shared = (2 * j * n_src if j > 1 else 0) + 2 * n_out
            grad = j * n_src + (n_src if j > 1 else 0)
            masks = 3 * -(-n_src // itemsize)  # up to three bool masks of the filter
            needs.append((0, (held + 2 * r) * itemsize))
            needs.append((shared * itemsize, (held + r + grad) * itemsize))
            needs.append((0, (held + n_src + masks) * itemsize))
            sent = {node.inputs[0]: n_src}
        elif w.steps[node.name] is PASS:
            sent = {node.inputs[0]: sizes[node.inputs[0]]} if node.inputs else {}
            needs.append((0, (held + r) * itemsize))
        else:  # a new tensor per input (cat: the parts that wait are copies)
            sent = sizes
            needs.append((0, (held + r + sum(sizes.values())) * itemsize))
        for name, n in sent.items():
            pending[name] = n  # a sum is made in place: same size
        needs.append((0, sum(pending.values()) * itemsize))
    return needs


def _terms(plan: _LayerPlan, x: Tensor) -> int:
    """How many terms (c_t, W_t) the layer's rule stacks (2 for z+, 1 for w+ and epsilon),
    counted on a one-voxel input and a one-element slice of the weight (the rule is not run
    on the full weight: that costs a pass over it per layer)."""
    layer = plan.layer
    c_in = layer.weight.shape[layer.in_dim]
    probe = x.new_ones(1, c_in, *([1] * layer.dims))
    return len(plan.rule.terms(probe, layer.weight[:1, :1], layer))


def _memory_plan(
    w: _Walk, held: int, x: Tensor, k: int, keep_layers: bool, budget: float
) -> MemoryPlan:
    """Chunks for ``k`` settings under ``budget`` bytes; ``held``: bytes the forward pass left
    for the walk (kept activations, pool winners)."""
    itemsize = x.element_size()
    shapes = w.graph.shapes
    terms = {name: _terms(p, x) for name, p in w.layers.items()}
    results = _numel(shapes[INPUT])  # the maps (and the kept layers) of every setting
    if keep_layers:
        results += _numel(shapes[w.out_name])
        results += sum(_numel(shapes[n.inputs[0]]) for n in w.nodes if n.name in w.layers)
    base = held + k * results * itemsize
    needs = [(base + shared, per) for shared, per in _walk_needs(w, terms, itemsize)]
    cached = 0  # what caching every step's denominators adds to the kept activations
    for node in w.nodes:
        if node.name in w.layers:
            n_in, n_out = _numel(shapes[node.inputs[0]]), _numel(shapes[node.output or ""])
            j = terms[node.name]
            cached += (n_out + (j * n_in if j > 1 else 0)) * itemsize
    return plan(k, needs, cached, budget)


# ------------------------------------------------------------------------------ the walk


def _batch_layout(w: _Walk) -> None:
    """Lay the forward values the layer steps read out once as the steps use them
    (:func:`strokelrp.lrp.rules.batch_layout`), so that preparing the rules copies none of
    them; values changed in place since capture are left for :meth:`Graph.value` to refuse."""
    graph = w.graph
    for node in w.nodes:
        plan = w.layers.get(node.name)
        if plan is None:
            continue
        for name in (node.inputs[0], plan.z_from):
            t = graph.values.get(name or "")
            if name is None or t is None or t._version != graph.versions[name]:
                continue
            new = batch_layout(t)
            if new is not t:
                graph.values[name], graph.versions[name] = new, new._version


def _storage(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _owned(t: Tensor, others: Iterable[Tensor], values: Iterable[Tensor]) -> bool:
    """Whether relevance ``t`` may be written in place: not a broadcast (stride-0) view, and
    its memory is shared with no other waiting relevance ``others`` nor any kept forward
    value ``values``."""
    if any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape, strict=True)):
        return False
    mine = _storage(t)
    return all(_storage(o) != mine for o in others) and all(_storage(v) != mine for v in values)


@dataclass
class _Walked:
    """One chunk's results: input relevance (k, C_in, ...), points, sums, totals, layers."""

    relevance: Tensor
    names: list[str]
    sums: list[Tensor]
    totals: list[Tensor]
    layers: dict[str, Tensor]


def _explain(
    w: _Walk,
    x: Tensor,
    target: Target,
    label: Any,
    class_index: int,
    given: Preset | Composite,
    bank: FilterBank,
    points: list[str],
    keep_layers: bool,
    budget: float,
) -> Explanation:
    graph = w.graph
    logits = graph.value(w.out_name)
    start, target_name = _start(target, logits, label, class_index)
    k = len(bank)
    memory = _memory_plan(w, _held(w, x), x, k, keep_layers, budget)
    notes = []
    if not memory.fits:
        notes.append(
            f"memory budget {format_bytes(budget)} is below the estimated need of "
            f"{format_bytes(memory.estimate)}: walking {max(memory.sizes)} setting(s) at a time"
        )
        warnings.warn(notes[-1], RuntimeWarning, stacklevel=3)
    chunks = memory.chunks
    _batch_layout(w)  # the kept values in the layout the layer steps work in
    cache: dict[str, PreparedRule] | None = {} if memory.cache else None
    walked: list[_Walked] = []
    for i, chunk in enumerate(chunks):
        sub = bank if len(chunks) == 1 else FilterBank(bank.filters[chunk.start : chunk.stop])
        walked.append(
            _walk_chunk(
                w,
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
    del cache
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
        for chunk, wk in zip(chunks, walked, strict=True):
            relevance[chunk.start : chunk.stop] = wk.relevance
            wk.relevance = relevance[:0]  # release the chunk's copy
        sums = torch.cat([torch.stack(wk.sums) for wk in walked], dim=1)
        totals = torch.cat([torch.stack(wk.totals) for wk in walked], dim=1)
        layers = {
            name: torch.cat([wk.layers.pop(name) for wk in walked]) for name in first.layers.copy()
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
        preset=given,
        target=target_name,
        layers=layers,
        empty_target=empty,
        notes=notes,
        memory=memory,
    )


def _walk_chunk(
    w: _Walk,
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

    ``release``: drop forward values once the walk has passed them (the last chunk, or the
    first when the prepared rules are cached); ``last``: also drop what the steps saved at
    capture and the cached rules. ``cache`` (None = no cache): prepared rules by layer node,
    filled by the first chunk and read by the others.
    """
    graph = w.graph
    release_at: dict[str, list[str]] = {}  # node -> kept values its step is the last to read
    seen: set[str] = set()
    for node in w.nodes:
        for name in w.kept(node):
            if name not in seen:
                seen.add(name)
                release_at.setdefault(node.name, []).append(name)
    k = len(bank)
    kept: dict[str, Tensor] = {}
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
            kept[name] = r.clone(memory_format=torch.contiguous_format)

    def send(name: str, r: Tensor, s: Tensor) -> None:
        """Add relevance ``r`` (sum ``s`` per setting) to what value ``name`` receives.

        What waits in ``pending`` is owned by the walk (see :func:`_owned`; a step may return
        views, or one tensor for several inputs: those are copied), so that sums and the
        layer steps may work in place."""
        if name in pending:
            pending[name].add_(r)
            pending_sum[name] = pending_sum[name] + s
        else:
            if not _owned(r, pending.values(), graph.values.values()):
                r = r.clone()
            pending[name], pending_sum[name] = r, s

    def filt(name: str, r: Tensor) -> Tensor:
        return bank.apply_(r) if name in filtered else r

    def prepared(node: Node, plan: _LayerPlan) -> PreparedRule:
        if cache is not None and node.name in cache:
            return cache.pop(node.name) if last else cache[node.name]
        z = graph.value(plan.z_from) if plan.z_from is not None else None
        rule = plan.rule.prepare(plan.layer, graph.value(node.inputs[0]), z)
        if cache is not None:
            rule = rule.batched() if k > 1 else rule
            cache[node.name] = rule
        return rule

    r0 = filt(OUTPUT, start.expand(k, *start.shape[1:]).clone())
    s0 = total(r0)
    send(w.out_name, r0, s0)
    record(OUTPUT, r0, s0)
    del r0
    for node in reversed(w.nodes):
        r = pending.pop(node.output or "", None)
        s = pending_sum.pop(node.output or "", None)
        if r is None or s is None:
            continue
        plan = w.layers.get(node.name)
        if plan is not None:
            src = node.inputs[0]
            rule = prepared(node, plan)
            r = rule.layout(r)  # converted here, so that the old layout is freed before the step
            r_in = rule(r, inplace=True)
            del r, rule
            r_in = filt(node.name, r_in)
            s_in = total(r_in)
            send(src, r_in, s_in)
            record(node.name, r_in, s_in)
            del r_in
        else:
            step = w.steps[node.name]
            parts = step.relevance(node, r, w)
            if len(parts) != len(node.inputs):
                raise StrokeLRPError(
                    f"the step of node {node.name!r} returned {len(parts)} relevance(s) for "
                    f"{len(node.inputs)} input(s)"
                )
            # the part walked next is used as is; the others wait on skip connections and are
            # copied (a cut's parts are views) so that they do not hold all of r alive
            order = sorted(
                (i for i, p in enumerate(parts) if p is not None),
                key=lambda i: -w.producer.get(node.inputs[i], -1),
            )
            for rank, i in enumerate(order):
                part = parts[i]
                assert part is not None
                if part is r:  # relevance passed unchanged: its sums too
                    send(node.inputs[i], part, s)
                    continue
                if rank > 0 and step is CAT:  # in r's layout: a channel slice of a
                    part = part.clone(memory_format=layout_of(part))  # channels-last r is too
                send(node.inputs[i], part, total(part))
            del r, parts
            if last:
                node.saved = None
        if release:
            for name in release_at.get(node.name, ()):
                graph.values.pop(name, None)
    relevance = pending.pop(INPUT, None)
    if relevance is None:
        relevance = x.new_zeros(k, *x.shape[1:])
    s_input = pending_sum.pop(INPUT, None)
    pending_sum[INPUT] = total(relevance) if s_input is None else s_input
    record(INPUT, relevance, pending_sum[INPUT])
    kept.pop(INPUT, None)
    return _Walked(relevance, names, sums, totals, kept)
