"""Composites: which rule each convolution / linear layer gets, chosen by module, not position.

A :class:`Composite` is an ordered list of (selector, rule) pairs; a layer gets the rule of
the first selector that matches it. Selectors:

- ``"first"`` / ``"last"``: the first / last convolution or linear layer the network runs
  (on the path to the explained output), whatever follows them (an ``Identity`` or a
  ``Sigmoid`` after the head changes nothing);
- a module type or a tuple of types (``nn.Conv3d``, :data:`strokelrp.lrp.rules.LAYER_TYPES`);
- any other string: a glob pattern on the module path (``"head"``, ``"down_*.conv_0.conv"``).

Rules are :class:`strokelrp.lrp.rules.Rule` objects or rule names (``"zB"``, ``"w+"``, built
with the composite's ``epsilon``). A :class:`strokelrp.lrp.presets.Preset` is a composite:
``first`` -> its first rule, ``last`` -> its head rule, every other layer -> its body rule.

Example::

    Composite.of({"first": "zB", "up_*": ZPlus(), nn.Conv3d: "w+", "final_conv": "epsilon"},
                 batchnorm="fold")
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import (
    EXACT_SUM_EPSILON,
    SUM_MODES,
    BatchNormMode,
    Preset,
    SumMode,
    resolve,
)
from strokelrp.lrp.rules import LAYER_TYPES, Rule, make_rule

Selector = str | type | tuple[type, ...]


@dataclass(frozen=True)
class Composite:
    """Rules by module (see the module docstring). ``batchnorm``: ``pass`` or ``fold`` (an
    eval-mode BatchNorm that alone reads a layer's output is folded into it); ``instancenorm``:
    ``pass`` or ``fold`` (an InstanceNorm that alone reads a layer's output is folded into it
    with the instance's statistics, :func:`strokelrp.lrp.rules.fold_instancenorm`); ``epsilon``: the
    stabiliser of rule names and of the structural steps (residual additions, z-rule pooling);
    ``sums``: ``epsilon`` (additions stabilised by ``epsilon``) or ``exact`` (by
    :data:`EXACT_SUM_EPSILON`, conserving; :data:`strokelrp.lrp.presets.SUM_MODES`)."""

    rules: tuple[tuple[Selector, Rule], ...]
    batchnorm: BatchNormMode = "pass"
    epsilon: float = 1e-9
    name: str = "composite"
    instancenorm: BatchNormMode = "pass"
    sums: SumMode = "epsilon"

    @property
    def sum_epsilon(self) -> float:
        """The stabiliser of additions of network values (residual sums)."""
        return self.epsilon if self.sums == "epsilon" else EXACT_SUM_EPSILON

    @classmethod
    def of(
        cls,
        mapping: Mapping[Selector, Rule | str],
        batchnorm: BatchNormMode = "pass",
        epsilon: float = 1e-9,
        name: str = "composite",
        instancenorm: BatchNormMode = "pass",
        sums: SumMode = "epsilon",
    ) -> Composite:
        """A composite from ``{selector: rule or rule name}`` (first match wins)."""
        pairs = []
        for sel, rule in mapping.items():
            if not isinstance(sel, str | type | tuple):
                raise StrokeLRPError(f"composite selector must be a string or type, got {sel!r}")
            pairs.append((sel, make_rule(rule, epsilon) if isinstance(rule, str) else rule))
        for what, mode in (("batchnorm", batchnorm), ("instancenorm", instancenorm)):
            if mode not in ("pass", "fold"):
                raise StrokeLRPError(f"{what} must be 'pass' or 'fold', got {mode!r}")
        if sums not in SUM_MODES:
            raise StrokeLRPError(f"sums must be 'epsilon' or 'exact', got {sums!r}")
        return cls(tuple(pairs), batchnorm, epsilon, name, instancenorm, sums)

    @property
    def reuses_output(self) -> bool:
        """Whether some rule reuses the layer's own output as its denominator."""
        return any(rule.reuses_output for _, rule in self.rules)

    def rule_for(self, path: str, module: nn.Module, first: bool, last: bool) -> Rule:
        """The rule of the layer at ``path``; an error naming it if no selector matches."""
        for sel, rule in self.rules:
            if _matches(sel, path, module, first, last):
                return rule
        raise StrokeLRPError(
            f"composite {self.name!r} has no rule for layer {path!r} "
            f"({type(module).__name__}); add a selector for it (a type, a path pattern, "
            "'first' or 'last')"
        )

    def summary(self) -> str:
        """One line: ``name: first=zB Conv3d=w+ ... bn=pass eps=1e-09``."""
        parts = [f"{_label(sel)}={rule.name}" for sel, rule in self.rules]
        inorm = " in=fold" if self.instancenorm == "fold" else ""
        inorm += " sums=exact" if self.sums == "exact" else ""
        return f"{self.name}: {' '.join(parts)} bn={self.batchnorm}{inorm} eps={self.epsilon:g}"


def _label(sel: Selector) -> str:
    if isinstance(sel, type):
        return sel.__name__
    if isinstance(sel, tuple):
        return "layers" if sel == LAYER_TYPES else "|".join(t.__name__ for t in sel)
    return sel


def _matches(sel: Selector, path: str, module: nn.Module, first: bool, last: bool) -> bool:
    if sel == "first":
        return first
    if sel == "last":
        return last
    if isinstance(sel, str):
        return fnmatch.fnmatchcase(path, sel)
    return isinstance(module, sel)


def from_preset(p: Preset) -> Composite:
    """The preset as a composite: first, last (its head rule), the upper layers (the module
    paths matching ``p.upper_paths``, when ``p.upper`` is set), every other layer (body)."""
    upper = tuple((pat, p.rule("upper")) for pat in p.upper_paths) if p.upper else ()
    return Composite(
        (
            ("first", p.rule("first")),
            ("last", p.rule("head")),
            *upper,
            (LAYER_TYPES, p.rule("body")),
        ),
        batchnorm=p.batchnorm,
        epsilon=p.epsilon,
        name=p.name,
        instancenorm=p.instancenorm,
        sums=p.sums,
    )


def as_composite(rules: Any) -> Composite:
    """A composite from a preset name, a :class:`Preset` or a :class:`Composite`."""
    if isinstance(rules, Composite):
        return rules
    return from_preset(resolve(rules))
