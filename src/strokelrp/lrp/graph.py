"""Graph capture: record what a network computes on one real input, as nodes over named values.

The model runs once, unchanged, on the real input under a ``TorchFunctionMode`` plus forward
hooks on its modules:

- a module whose type has a relevance step (``strokelrp.lrp.steps``: convolutions, linear
  layers, norms, activations, pools, dropout, ...) becomes *one* node named by its module path
  (``down_1.convs.conv_0.conv``); the functions it calls inside are not recorded;
- every other torch function or tensor method that reads a recorded tensor (``torch.cat``, ``+``,
  slicing, ``F.pad``, ``F.interpolate``, ``view`` ...) becomes a function node named
  ``<enclosing module path>.<function>`` (``upcat_4.cat``), its edges given by the identity
  of the tensors it reads.

A module node that returns several tensors (``nn.MultiheadAttention``: output and weights)
stands for its first tensor; a function node that does has no output value (its tensors are
constants downstream), and the engine names it when nothing traceable is left.

Recording with concrete tensors follows Python control flow as it happens (MONAI's ``UpCat``
pads after comparing shapes), which symbolic tracing cannot. Limits: the graph is valid for
this input's shapes only (it is recorded anew for each call of ``explain``); values are
recognised by tensor identity, so a recorded tensor that leaves torch (``.numpy()``, ``.item()``)
and comes back is a constant; in-place changes of a kept value are detected (version counter).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

INPUT = "input"
"""Name of the network input value."""


@dataclass(frozen=True)
class Ref:
    """Placeholder for the ``index``-th recorded tensor among a node's arguments."""

    index: int


@dataclass
class Node:
    """One recorded operation: ``output = target(*args, **kwargs)``.

    ``target``: the module (module nodes) or the function. ``path``: the module path (for a
    function node, the path of the module whose ``forward`` called it; "" = the model).
    ``inputs``: names of the recorded tensors read, in argument order; in ``args``/``kwargs``
    they appear as :class:`Ref`. ``in_shapes``: their shapes. ``output``: the name of the
    value produced (None when the result is not a single tensor). ``saved``: what the node's
    relevance step stored at capture time.
    """

    name: str
    target: nn.Module | Callable[..., Any]
    path: str
    inputs: tuple[str, ...]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    in_shapes: tuple[torch.Size, ...]
    output: str | None
    saved: Any = None

    @property
    def is_module(self) -> bool:
        return isinstance(self.target, nn.Module)

    @property
    def kind(self) -> str:
        """``Conv3d`` for a module node, the function's name (``cat``, ``__add__``) otherwise."""
        if isinstance(self.target, nn.Module):
            return type(self.target).__name__
        return getattr(self.target, "__name__", repr(self.target))

    def call(self, tensors: list[Tensor] | tuple[Tensor, ...]) -> Any:
        """Evaluate the node on replacement values for its inputs (same order)."""
        args, kwargs = pytree.tree_map(
            lambda v: tensors[v.index] if isinstance(v, Ref) else v,
            (self.args, self.kwargs),
            is_leaf=lambda v: isinstance(v, Ref),
        )
        if isinstance(self.target, nn.Module):
            return self.target(*args, **kwargs)
        return self.target(*args, **kwargs)


@dataclass
class Graph:
    """A recorded computation: ``nodes`` in execution order, ``values`` kept by name,
    ``outputs`` the names of the model's tensor outputs (in the order of its return value)."""

    nodes: list[Node]
    values: dict[str, Tensor]
    versions: dict[str, int]
    outputs: list[str]
    result: Any = None
    shapes: dict[str, torch.Size] = field(default_factory=dict)

    def value(self, name: str) -> Tensor:
        """The forward value ``name`` (1, C, ...); an error if it was not kept or changed."""
        from strokelrp.errors import StrokeLRPError

        t = self.values.get(name)
        if t is None:
            raise StrokeLRPError(f"value {name!r} was not kept by the graph capture")
        if t._version != self.versions[name]:
            raise StrokeLRPError(
                f"value {name!r} was modified in place after it was computed (e.g. "
                "'x += y' or an inplace=True activation on it); the engine needs its value: "
                "write the operation out of place"
            )
        return t


KeepRule = Callable[[nn.Module | Callable[..., Any], Any], tuple[bool, bool]]
"""(target, saved-step) -> (keep the node's inputs, keep its output)."""


class _Recorder(TorchFunctionMode):
    def __init__(
        self,
        leaf: Callable[[nn.Module], bool],
        step_of: Callable[[nn.Module | Callable[..., Any]], Any],
        kernels: Mapping[Callable[..., Any], Callable[..., Any]] | None = None,
    ) -> None:
        super().__init__()
        self.leaf = leaf
        self.step_of = step_of
        self.kernels = dict(kernels or {})
        self.nodes: list[Node] = []
        self.values: dict[str, Tensor] = {}
        self.versions: dict[str, int] = {}
        self.shapes: dict[str, torch.Size] = {}
        self.ids: dict[int, tuple[str, weakref.ref[Tensor]]] = {}
        self.names: dict[str, int] = {}
        self.paths: list[str] = [""]
        self.depth = 0  # > 0 inside a leaf module's forward
        self.pending: list[tuple[tuple[str, ...], tuple[Any, ...], dict[str, Any], list]] = []
        self.suspended = False

    # ------------------------------------------------------------------ values and names

    def name_of(self, t: Any) -> str | None:
        if not isinstance(t, Tensor):
            return None
        entry = self.ids.get(id(t))
        if entry is None or entry[1]() is not t:
            return None
        return entry[0]

    def bind(self, name: str, t: Tensor) -> None:
        self.ids[id(t)] = (name, weakref.ref(t))
        self.shapes[name] = t.shape

    def keep(self, name: str, t: Tensor) -> None:
        if name not in self.values:
            self.values[name] = t
            self.versions[name] = t._version

    def unique(self, base: str) -> str:
        n = self.names.get(base, 0) + 1
        self.names[base] = n
        return base if n == 1 else f"{base}#{n}"

    def template(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[str, ...], tuple[Any, ...], dict[str, Any], list[Tensor]]:
        leaves, spec = pytree.tree_flatten((args, kwargs))
        inputs: list[str] = []
        tensors: list[Tensor] = []
        out = []
        for leaf in leaves:
            name = self.name_of(leaf)
            if name is None:
                out.append(leaf)
            else:
                out.append(Ref(len(inputs)))
                inputs.append(name)
                tensors.append(leaf)
        targs, tkwargs = pytree.tree_unflatten(out, spec)
        return tuple(inputs), tuple(targs), dict(tkwargs), tensors

    def record(
        self,
        target: nn.Module | Callable[..., Any],
        path: str,
        base: str,
        template: tuple[tuple[str, ...], tuple[Any, ...], dict[str, Any], list[Tensor]],
        result: Any,
    ) -> None:
        inputs, args, kwargs, tensors = template
        name = self.unique(base)
        if isinstance(target, nn.Module) and not isinstance(result, Tensor):
            # a module with a step that returns several tensors (nn.MultiheadAttention gives
            # (output, weights)): its first tensor is its output, the others are constants
            result = next((t for t in pytree.tree_leaves(result) if isinstance(t, Tensor)), None)
        output = name if isinstance(result, Tensor) else None
        node = Node(
            name, target, path, inputs, args, kwargs, tuple(t.shape for t in tensors), output
        )
        step = self.step_of(target)
        if step is not None and output is not None:
            self.suspended = True
            try:
                node.saved = step.save(node, tensors, result)
            finally:
                self.suspended = False
            keep_in, keep_out = step.keeps(node)
            if keep_in:
                for n, t in zip(inputs, tensors, strict=True):
                    self.keep(n, t)
            if keep_out:
                self.keep(name, result)
        if output is not None:
            self.bind(name, result)
        self.nodes.append(node)

    # ------------------------------------------------------------------------- hooks

    def pre_hook(self, path: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.suspended:
            return
        if self.depth == 0:
            self.paths.append(path)
            if self.leaf(module):
                self.pending.append(self.template(args, kwargs))
                self.depth += 1
        elif self.leaf(module):
            self.depth += 1

    def post_hook(self, path: str, module: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        if self.suspended:
            return
        if self.leaf(module):
            self.depth -= 1
            if self.depth > 0:
                return
            template = self.pending.pop()
            self.paths.pop()
            if template[0]:  # reads a recorded tensor
                self.record(module, path, path or type(module).__name__, template, out)
        elif self.depth == 0:
            self.paths.pop()

    # ----------------------------------------------------------------------- functions

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if self.depth > 0 or self.suspended:
            kernel = self.kernels.get(func) if self.depth > 0 and self.kernels else None
            return (kernel or func)(*args, **kwargs)
        template = self.template(args, kwargs)
        if template[0] and _inplace(func):  # keep what the inputs were before the op
            template = (*template[:3], [t.clone() for t in template[3]])
        result = func(*args, **kwargs)
        if template[0] and (isinstance(result, Tensor) or _has_tensor(result)):
            fname = getattr(func, "__name__", "op").strip("_") or "op"
            path = self.paths[-1]
            self.record(func, path, f"{path}.{fname}" if path else fname, template, result)
        return result


def _inplace(func: Callable[..., Any]) -> bool:
    """Whether ``func`` overwrites its first argument (``add_``, ``__iadd__``)."""
    name = getattr(func, "__name__", "")
    if name.startswith("__i") and name.endswith("__"):
        return name not in ("__index__", "__int__", "__invert__", "__iter__")
    return name.endswith("_") and not name.startswith("_")


def _has_tensor(value: Any) -> bool:
    return any(isinstance(v, Tensor) for v in pytree.tree_leaves(value))


@contextmanager
def _not_inplace(model: nn.Module) -> Iterator[None]:
    """Modules with ``inplace=True`` (activations, dropout) run out of place during capture,
    so that no recorded value is overwritten; restored afterwards."""
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in changed:
        m.inplace = False  # type: ignore[assignment]
    try:
        yield
    finally:
        for m in changed:
            m.inplace = True  # type: ignore[assignment]


def capture(
    model: nn.Module,
    x: Tensor,
    leaf: Callable[[nn.Module], bool],
    step_of: Callable[[nn.Module | Callable[..., Any]], Any],
    kernels: Mapping[Callable[..., Any], Callable[..., Any]] | None = None,
) -> Graph:
    """Run ``model(x)`` once and record it (see the module docstring).

    ``leaf(module)``: whether a module is recorded as one node. ``step_of(target)``: the
    relevance step of a module or function (None if it has none); its ``save`` is called at
    capture time and its ``keeps`` says which forward values the walk will need.
    ``kernels``: {torch function: replacement} for the functions that leaf modules call
    inside their forward (same arguments, same values up to rounding; e.g. faster
    convolutions).
    """
    rec = _Recorder(leaf, step_of, kernels)
    rec.bind(INPUT, x)
    rec.keep(INPUT, x)
    handles = []
    for path, module in model.named_modules():
        handles.append(
            module.register_forward_pre_hook(
                lambda m, a, k, p=path: rec.pre_hook(p, m, a, k), with_kwargs=True
            )
        )
        handles.append(
            module.register_forward_hook(
                lambda m, a, k, o, p=path: rec.post_hook(p, m, a, k, o), with_kwargs=True
            )
        )
    try:
        with _not_inplace(model), rec:
            result = model(x)
    finally:
        for h in handles:
            h.remove()
    outputs = []
    for t in pytree.tree_leaves(result):
        name = rec.name_of(t)
        if name is not None:
            outputs.append(name)
            rec.keep(name, t)
    return Graph(rec.nodes, rec.values, rec.versions, outputs, result, rec.shapes)
