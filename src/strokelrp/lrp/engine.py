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
rules' denominators are computed once with batch 1 and shared.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.composites import Composite, as_composite
from strokelrp.lrp.filters import Filter, FilterBank, filter_label
from strokelrp.lrp.graph import INPUT, Graph, Node, capture
from strokelrp.lrp.presets import Preset
from strokelrp.lrp.rules import LAYER_TYPES, ConvLayer, Rule, fold_batchnorm
from strokelrp.lrp.steps import PASS, Step, function_step, module_step

OUTPUT = "output"
"""Name of the point holding the starting relevance (the network output)."""

LESION = 1
"""Default class index of the target (the lesion class of a two-class segmentation)."""

Target = Literal["prediction", "ground_truth", "authors"] | Tensor | Callable[[Tensor], Tensor]
TARGETS = ("prediction", "ground_truth", "authors")


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
    so every map is zero; ``notes`` says so in words.
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


@dataclass
class _LayerPlan:
    layer: ConvLayer
    rule: Rule
    z_from: str | None  # value holding the layer's output W a + b, when the rule reuses it


def _step_finder(comp: Composite) -> Callable[[Any], Step | None]:
    layer = _LayerStep(comp.reuses_output)
    keep_bn = comp.batchnorm == "fold" and comp.reuses_output

    def step_of(target: Any) -> Step | None:
        if isinstance(target, nn.Module):
            if isinstance(target, LAYER_TYPES):
                return layer
            if keep_bn and isinstance(target, nn.modules.batchnorm._BatchNorm):
                return _KeepOutput()
            return module_step(target)
        return function_step(target)

    return step_of


def _is_leaf(module: nn.Module) -> bool:
    return isinstance(module, LAYER_TYPES) or module_step(module) is not None


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
            f"<the function {node.kind}>, step), e.g. strokelrp.lrp.PASS or "
            "strokelrp.lrp.Adjoint()"
        )
    return StrokeLRPError(
        f"no relevance step for node {node.name!r} ({node.kind}) in module {where!r} "
        f"({owner}); {how}. See docs/method.md, 'Explaining your own network'."
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
    if not isinstance(target, str) or target not in TARGETS:
        raise StrokeLRPError(
            f"unknown target {target!r}; use one of {', '.join(TARGETS)}, a tensor of the "
            f"output's shape {tuple(logits.shape)} or a callable output -> start relevance"
        )
    if target == "authors":
        return logits.clone(), "authors"
    channels = logits.shape[1]
    if channels > 1 and not 0 <= class_index < channels:
        raise StrokeLRPError(
            f"class_index {class_index} is out of range for an output with {channels} channels"
        )
    channel = 0 if channels == 1 else class_index
    if target == "prediction":
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
    start = torch.zeros_like(logits)
    start[:, channel] = logits[:, channel] * mask
    return start, target


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
    rules: str | Preset | Composite = "paper",
    filters: Sequence[Filter | None] | None = None,
    filter_at: str | Sequence[str] = "all",
    keep_layers: bool = False,
    class_index: int = LESION,
    output: int = 0,
) -> Explanation:
    """Relevance of the input elements for the chosen target, for K filter settings at once.

    ``model``: any ``nn.Module`` (2-D or 3-D, MONAI networks included) whose operations have
    relevance steps (docs/method.md). ``x`` (1, C_in, *S) on the model's device and dtype
    (float64 works with ``model.double()``). ``target``: ``"prediction"`` (the
    ``class_index`` logit on the voxels predicted as that class; a one-channel output: the
    logit where it is > 0), ``"ground_truth"`` (the ``class_index`` logit on ``label``
    (*S) voxels), ``"authors"`` (the whole output), a tensor of the output's shape, or a
    callable output -> starting relevance. ``rules``: a preset name
    (``strokelrp.lrp.presets.PRESETS``), a :class:`Preset` or a :class:`Composite`.
    ``filters``: one setting per map (None = unfiltered); ``filter_at``: ``"all"`` (the
    output and every layer's input relevance), ``"output"`` or a list of point names (module
    paths). ``output``: which tensor of a model returning several is explained (default the
    first). The model is run in eval mode and restored to its previous mode afterwards.

    Returns an :class:`Explanation` with ``.relevance`` (K, C_in, *S).
    """
    comp = as_composite(rules)
    _check_input(model, x)
    settings: list[Filter | None] = [None] if filters is None else list(filters)
    if not settings:
        raise StrokeLRPError("filters must hold at least one setting (None = unfiltered)")
    bank = FilterBank(settings)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            graph = capture(model, x, _is_leaf, _step_finder(comp))
            if not graph.outputs:
                raise StrokeLRPError(
                    f"{type(model).__name__} returned no tensor computed from its input"
                )
            if not -len(graph.outputs) <= output < len(graph.outputs):
                raise StrokeLRPError(
                    f"output={output} but the model returns {len(graph.outputs)} tensor(s)"
                )
            out_name = graph.outputs[output]
            nodes, layers, steps = _plan(model, graph, comp, out_name)
            points = _points(filter_at, list(layers))  # validated even when nothing filters
            if not bank.active:
                points = []
            return _walk(
                graph,
                out_name,
                nodes,
                layers,
                steps,
                x,
                target,
                label,
                class_index,
                rules if isinstance(rules, Preset | Composite) else comp,
                comp,
                bank,
                points,
                keep_layers,
            )
    finally:
        model.train(was_training)


class _Context:
    def __init__(self, graph: Graph, epsilon: float) -> None:
        self.graph = graph
        self.epsilon = epsilon

    def value(self, name: str) -> Tensor:
        return self.graph.value(name)


def _walk(
    graph: Graph,
    out_name: str,
    nodes: list[Node],
    layers: dict[str, _LayerPlan],
    steps: dict[str, Step],
    x: Tensor,
    target: Target,
    label: Any,
    class_index: int,
    given: Any,
    comp: Composite,
    bank: FilterBank,
    points: list[str],
    keep_layers: bool,
) -> Explanation:
    logits = graph.value(out_name)
    # release forward values as soon as the last step reading them is done (walk order)
    release: dict[str, list[str]] = {}
    seen: set[str] = set()
    for node in nodes:
        plan = layers.get(node.name)
        if plan is not None:
            names = [node.inputs[0], plan.z_from]
        else:
            keep_in, keep_out = steps[node.name].keeps(node)
            names = [*(node.inputs if keep_in else ()), node.output if keep_out else None]
        for name in names:
            if name is not None and name not in seen:
                seen.add(name)
                release.setdefault(node.name, []).append(name)
    needed = seen | {out_name, INPUT}
    for name in [n for n in graph.values if n not in needed]:
        del graph.values[name]
    ctx = _Context(graph, comp.epsilon)
    start, target_name = _start(target, logits, label, class_index)
    k = len(bank)
    filtered = set(points)
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
        """Add relevance ``r`` (sum ``s`` per setting) to what value ``name`` receives."""
        if name in pending:
            pending[name] = pending[name] + r
            pending_sum[name] = pending_sum[name] + s
        else:
            pending[name], pending_sum[name] = r, s

    def filt(name: str, r: Tensor) -> Tensor:
        return bank.apply_(r) if name in filtered else r

    r0 = filt(OUTPUT, start.expand(k, *start.shape[1:]).clone())
    s0 = total(r0)
    send(out_name, r0, s0)
    record(OUTPUT, r0, s0)
    for node in reversed(nodes):
        r = pending.pop(node.output or "", None)
        s = pending_sum.pop(node.output or "", None)
        if r is None or s is None:
            continue
        plan = layers.get(node.name)
        if plan is not None:
            src = node.inputs[0]
            a = graph.value(src)
            z = graph.value(plan.z_from) if plan.z_from is not None else None
            r_in = plan.rule.prepare(plan.layer, a, z)(r, inplace=True)
            del r, z
            r_in = filt(node.name, r_in)
            s_in = total(r_in)
            send(src, r_in, s_in)
            record(node.name, r_in, s_in)
        else:
            parts = steps[node.name].relevance(node, r, ctx)
            if len(parts) != len(node.inputs):
                raise StrokeLRPError(
                    f"the step of node {node.name!r} returned {len(parts)} relevance(s) for "
                    f"{len(node.inputs)} input(s)"
                )
            for name, part in zip(node.inputs, parts, strict=True):
                if part is None:
                    continue
                if part is r:  # relevance passed unchanged: its sums too
                    send(name, part, s)
                else:
                    send(name, part, total(part))
        for name in release.get(node.name, ()):
            graph.values.pop(name, None)
    relevance = pending.pop(INPUT, None)
    if relevance is None:
        relevance = x.new_zeros(k, *x.shape[1:])
    s_input = pending_sum.pop(INPUT, None)
    pending_sum[INPUT] = total(relevance) if s_input is None else s_input
    record(INPUT, relevance, pending_sum[INPUT])
    kept.pop(INPUT, None)
    empty = not bool(start.any())
    notes = []
    if empty:
        notes.append(
            f"target {target_name!r} selects nothing (no voxel with non-zero starting "
            "relevance): every relevance map is zero"
        )
        warnings.warn(notes[-1], RuntimeWarning, stacklevel=3)
    return Explanation(
        relevance=relevance.contiguous(),
        output=logits,
        conservation=Conservation(names, torch.stack(sums).cpu(), torch.stack(totals).cpu()),
        filters=list(bank.filters),
        points=points,
        preset=given,
        target=target_name,
        layers=kept,
        empty_target=empty,
        notes=notes,
    )
