"""The paper's amplitude filters (section 2, figure 3), applied to relevance tensors.

For a relevance tensor f, N = max |f| (per batch element: ``scope="sample"``, the authors'
choice; or per batch element and channel: ``scope="channel"``) and f1 = f / N in [-1, 1]:

- pass (a1, a2): keep f where a1 <= |f1| <= a2, zero elsewhere (``PassFilter(a)`` = (0, a));
- clamp (a1, a2): |f1| bounded to [a1, a2] with its sign kept, zeros stay zero
  (``ClampFilter(a)`` = (0, a): values beyond +-a become +-a);
- the result is N * F[f1]. An all-zero tensor (N = 0) stays zero.

A filter is a callable on (K, C, ...) that treats each batch element on its own;
:func:`apply_filters` gives each batch element its own setting (``None`` = unfiltered), and
:class:`FilterBank` does the same in place for the engine, grouping equal kinds so that a grid
of settings costs a few vectorised operations per point.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from strokelrp.errors import StrokeLRPError

Scope = Literal["sample", "channel"]
SCOPES: tuple[str, ...] = ("sample", "channel")


def _fmt(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True, init=False)
class AmplitudeFilter:
    """Common part of pass and clamp filters: the band [low, high] of |f1| and the scope."""

    low: float
    high: float
    scope: Scope
    kind: ClassVar[str] = ""

    def __init__(self, alpha: float | Sequence[float], scope: Scope = "sample") -> None:
        low, high = _band(self.kind, alpha)
        if scope not in SCOPES:
            raise StrokeLRPError(
                f"{self.kind} filter: scope must be one of {SCOPES}, got {scope!r}"
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "scope", scope)

    @property
    def label(self) -> str:
        """Short stable name for tables and files, e.g. ``pass(0,0.4)`` or ``clamp(0,0.2)/ch``."""
        base = f"{self.kind}({_fmt(self.low)},{_fmt(self.high)})"
        return base if self.scope == "sample" else f"{base}/channel"

    def __repr__(self) -> str:
        cls = type(self).__name__
        return f"{cls}(({_fmt(self.low)}, {_fmt(self.high)}), scope={self.scope!r})"

    def __call__(self, relevance: Tensor) -> Tensor:
        """Filter each batch element of ``relevance`` (K, C, ...); returns a new tensor."""
        return apply_filters(relevance, [self] * relevance.shape[0])


class PassFilter(AmplitudeFilter):
    """Keep relevance whose normalised amplitude |f1| lies in [a1, a2]; zero the rest."""

    kind: ClassVar[str] = "pass"


class ClampFilter(AmplitudeFilter):
    """Bound the normalised amplitude |f1| to [a1, a2], keeping the sign; zeros stay zero."""

    kind: ClassVar[str] = "clamp"


Filter = PassFilter | ClampFilter


def _band(kind: str, alpha: float | Sequence[float]) -> tuple[float, float]:
    """Validate ``alpha`` (a in (0, 1], or (a1, a2) with 0 <= a1 < a2 <= 1) as (low, high)."""
    if isinstance(alpha, bool | str):
        raise StrokeLRPError(f"{kind} filter: alpha must be a number or a pair, got {alpha!r}")
    if isinstance(alpha, Sequence):
        if len(alpha) != 2:
            raise StrokeLRPError(f"{kind} filter: a range needs two values (a1, a2), got {alpha!r}")
        low, high = (float(a) for a in alpha)
    else:
        low, high = 0.0, float(alpha)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise StrokeLRPError(f"{kind} filter: alpha must be finite, got {alpha!r}")
    if low > high:
        raise StrokeLRPError(
            f"{kind} filter: the bounds ({low:g}, {high:g}) are swapped: the lower bound comes "
            f"first, as {kind}:{high:g},{low:g}"
        )
    if not 0.0 < high <= 1.0:
        raise StrokeLRPError(f"{kind} filter: alpha (upper bound) must be in (0, 1], got {high:g}")
    if not 0.0 <= low < high:
        raise StrokeLRPError(
            f"{kind} filter: range (a1, a2) needs 0 <= a1 < a2 <= 1, got ({low:g}, {high:g})"
        )
    return low, high


def filter_label(f: Filter | None) -> str:
    """``raw`` for no filter, else the filter's label."""
    return "raw" if f is None else f.label


_PARSE = re.compile(r"^\s*(pass|clamp)\s*[:(]\s*([^():/]+?)\s*\)?\s*(?:[:/]\s*(\w+))?\s*$")


def parse_filter(text: str) -> Filter | None:
    """Parse ``raw``, ``pass:0.4``, ``pass:0,0.4``, ``clamp:0.2``, ``clamp:0,0.2:channel``.

    Labels (``pass(0,0.4)``, ``clamp(0,0.2)/channel``) parse back to the same filter.
    """
    if text.strip().lower() in ("raw", "none"):
        return None
    m = _PARSE.match(text.lower())
    if m is None:
        raise StrokeLRPError(
            f"cannot read filter {text!r}: use raw, pass:A, pass:A1,A2, clamp:A or clamp:A1,A2 "
            "(optionally :channel)"
        )
    kind, values, scope = m.group(1), m.group(2), m.group(3) or "sample"
    try:
        nums = [float(v) for v in values.split(",")]
    except ValueError:
        raise StrokeLRPError(f"cannot read filter {text!r}: {values!r} is not numbers") from None
    if len(nums) not in (1, 2):
        raise StrokeLRPError(f"cannot read filter {text!r}: give one value or two (a1,a2)")
    alpha: float | tuple[float, float] = nums[0] if len(nums) == 1 else (nums[0], nums[1])
    cls = PassFilter if kind == "pass" else ClampFilter
    return cls(alpha, scope=scope)  # type: ignore[arg-type]


PAPER_ALPHAS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.6)

PAPER_GRID: list[Filter | None] = [
    None,
    *(PassFilter((0.0, a)) for a in PAPER_ALPHAS),
    *(PassFilter((a, 1.0)) for a in PAPER_ALPHAS),
    *(ClampFilter((0.0, a)) for a in PAPER_ALPHAS),
]
"""The 16 settings of the paper's figures: raw, pass (0,a), pass (a,1), clamp (0,a)."""


@dataclass
class _Group:
    """Settings of one kind, scope and set of acting bounds: batch positions and their bands
    (n, 1, 1, ...); ``any_low`` / ``any_high``: a lower bound > 0 / an upper bound < 1."""

    kind: str
    scope: str
    index: list[int]
    low: Tensor
    high: Tensor
    any_low: bool
    any_high: bool


class FilterBank:
    """One filter setting per batch element, applied in place on (K, C, ...) relevance."""

    def __init__(self, filters: Sequence[Filter | None]) -> None:
        for f in filters:
            if f is not None and not isinstance(f, AmplitudeFilter):
                raise StrokeLRPError(f"not a filter: {f!r} (use PassFilter, ClampFilter or None)")
        self.filters = list(filters)
        # grouped by kind, scope and which bounds act (a lower bound > 0, an upper bound < 1),
        # so that each group runs only the tests its bands need
        self._groups: dict[tuple[str, str, bool, bool], list[int]] = {}
        for k, f in enumerate(self.filters):
            if f is not None:
                key = (f.kind, f.scope, f.low > 0, f.high < 1)
                self._groups.setdefault(key, []).append(k)
        self._cache: dict[tuple[torch.dtype, torch.device, int], list[_Group]] = {}

    def __len__(self) -> int:
        return len(self.filters)

    @property
    def active(self) -> bool:
        """Whether any setting filters at all."""
        return bool(self._groups)

    def _prepared(self, ref: Tensor) -> list[_Group]:
        key = (ref.dtype, ref.device, ref.dim())
        if key not in self._cache:
            groups = []
            for (kind, scope, *_bounds), index in self._groups.items():
                shape = (len(index),) + (1,) * (ref.dim() - 1)
                lows = [self.filters[k].low for k in index]  # type: ignore[union-attr]
                highs = [self.filters[k].high for k in index]  # type: ignore[union-attr]
                groups.append(
                    _Group(
                        kind,
                        scope,
                        index,
                        torch.tensor(lows, dtype=ref.dtype, device=ref.device).view(shape),
                        torch.tensor(highs, dtype=ref.dtype, device=ref.device).view(shape),
                        any(lo > 0 for lo in lows),
                        any(hi < 1 for hi in highs),
                    )
                )
            self._cache[key] = groups
        return self._cache[key]

    def apply_(self, relevance: Tensor) -> Tensor:
        """Filter ``relevance`` (K, C, ...) in place, setting k on element k; returns it."""
        if relevance.shape[0] != len(self.filters):
            raise StrokeLRPError(
                f"{len(self.filters)} filter settings for a relevance batch of {relevance.shape[0]}"
            )
        for g in self._prepared(relevance):
            first, last = g.index[0], g.index[-1]
            if last - first + 1 == len(g.index):
                _filter_(relevance[first : last + 1], g)
            else:
                idx = torch.tensor(g.index, device=relevance.device)
                part = relevance.index_select(0, idx)
                relevance.index_copy_(0, idx, _filter_(part, g))
        return relevance


def _blocks(f: Tensor, scope: str) -> tuple[Tensor, Tensor]:
    """A view ``t`` of ``f`` (n, C, ...) and N = max |f| per block, broadcastable to ``t``.

    With ``scope="sample"`` and each element's values dense in memory (contiguous or
    channels-last), ``t`` is the (n, M) view in memory order: reductions and comparisons on
    it run 2-5x faster than on the 5-D tensor with its broadcast (n, 1, 1, 1, 1) bands.
    Otherwise ``t`` is ``f`` and N has f's dimensions. N is exactly max |f| either way.
    """
    if scope == "sample" and f.numel() > 0:
        order = sorted(range(1, f.dim()), key=lambda d: f.stride(d), reverse=True)
        p = f.permute(0, *order)
        if p.is_contiguous():
            t = p.view(f.shape[0], -1)
            return t, torch.maximum(t.amax(1, keepdim=True), t.amin(1, keepdim=True).neg())
    dims = tuple(range(1 if scope == "sample" else 2, f.dim()))
    return f, torch.linalg.vector_norm(f, ord=math.inf, dim=dims, keepdim=True)


def _filter_(f: Tensor, g: _Group) -> Tensor:
    """Filter the block ``f`` (n, C, ...) in place with the group's bands; returns it.

    Equivalent to normalising, filtering and scaling back, with the bands scaled by N instead
    (|f| <= a N rather than |f| / N <= a: the same up to the rounding of the threshold), so
    that no normalised copy is made, N = 0 needs no special case, and kept values are exact.
    An upper bound of 1 is never passed (|f| <= N), so bands that all end at 1 skip that test.
    """
    t, norm = _blocks(f, g.scope)
    band = (-1,) + (1,) * (t.dim() - 1)
    high = norm * g.high.view(band) if g.any_high else None
    low = norm * g.low.view(band) if g.any_low else None
    if g.kind == "pass":
        if high is not None and low is None and t.dim() == 2:
            # one setting per row: hardshrink keeps exactly |f| > a2 N, so subtracting it
            # leaves f where |f| <= a2 N and exact zeros elsewhere: two passes over a row
            # instead of two comparisons, a mask and a fill (3-4x faster)
            for row, h in zip(t, high.flatten().tolist(), strict=True):
                row.sub_(torch.hardshrink(row, h))
            return f
        drop = None
        if high is not None:
            drop = (t > high).logical_or_(t < -high)  # |f| > a2 N
        if low is not None:
            small = (t < low).logical_and_(t > -low)  # |f| < a1 N
            drop = small if drop is None else drop.logical_or_(small)
        if drop is not None:
            t.masked_fill_(drop, 0)
        return f
    if high is not None:
        torch.clamp(t, min=-high, max=high, out=t)  # |f| <= a2 N, sign kept
    if low is not None:  # non-zero values below a1 N are raised to +-a1 N
        small = (t < low).logical_and_(t > -low).logical_and_(t != 0)
        t.copy_(torch.where(small, torch.sign(t) * low, t))
    return f


def apply_filters(relevance: Tensor, filters: Sequence[Filter | None]) -> Tensor:
    """Filter each batch element of ``relevance`` (K, C, ...) with its own setting (None = as is).

    Returns a new tensor; ``len(filters)`` must equal K.
    """
    return FilterBank(filters).apply_(relevance.clone())
