"""Memory budgets for the relevance engine: parse them, choose a default, split the settings.

The K filter settings of one :func:`strokelrp.lrp.engine.explain` call share the forward pass
and the rules' denominators, but each needs its own relevance at every layer. When K settings
at once would not fit, they are walked in chunks: :func:`plan_chunks` sizes the chunks from
the bytes one setting needs at the walk's peak (estimated from the layer shapes by the engine)
and the bytes shared by all settings (kept activations, cached denominators).

A budget is a number of bytes: ``parse_bytes("4GB")`` (decimal units: kB, MB, GB, TB),
``parse_bytes("512MiB")`` (binary: KiB, MiB, GiB, TiB), a plain integer, or ``"unlimited"``
(``math.inf``: every setting in one walk).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strokelrp.errors import StrokeLRPError

if TYPE_CHECKING:
    import torch

UNLIMITED = "unlimited"
"""The budget word for "no limit" (all settings in one walk)."""

DEFAULT_CAP = 8 * 10**9
"""The default budget never exceeds 8 GB."""

_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_BYTES = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_bytes(value: str | int | float) -> float:
    """A memory size in bytes: ``4GB``, ``512MiB``, ``1.5e9``, ``2000000`` or ``unlimited``
    (``math.inf``). Units are case-insensitive; GB = 10^9 bytes, GiB = 2^30."""
    if isinstance(value, bool):
        raise StrokeLRPError(f"memory budget must be a size such as 4GB, got {value!r}")
    if isinstance(value, int | float):
        size = float(value)
    else:
        text = str(value).strip().lower()
        if text in (UNLIMITED, "inf", "none"):
            return math.inf
        m = _BYTES.match(text)
        if m is None or m.group(2) not in _UNITS:
            raise StrokeLRPError(
                f"cannot read memory budget {value!r}: use bytes or a size such as 4GB, "
                f"512MiB, or {UNLIMITED!r}"
            )
        size = float(m.group(1)) * _UNITS[m.group(2)]
    if not size > 0:
        raise StrokeLRPError(f"memory budget must be positive, got {value!r}")
    return size


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory the process could still take: CUDA's free memory on a GPU, else
    ``MemAvailable`` from /proc/meminfo (falling back to the physical memory size)."""
    import torch  # here, so that parsing a budget (the CLI) does not import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def default_budget(device: torch.device | str = "cpu") -> int:
    """The smaller of 8 GB and half of the memory available (CPU) or free (GPU) now."""
    return min(DEFAULT_CAP, available_bytes(device) // 2)


def resolve_budget(budget: str | int | float | None, device: torch.device | str = "cpu") -> float:
    """Bytes for a budget argument: None = :func:`default_budget`, else :func:`parse_bytes`."""
    return float(default_budget(device)) if budget is None else parse_bytes(budget)


Need = tuple[int, int]
"""``(shared, per_setting)``: at some moment of a walk, ``shared + k * per_setting`` bytes are
alive for a walk of k settings."""


def _peak(needs: Sequence[Need], k: int) -> int:
    return max(shared + k * per for shared, per in needs)


def chunk_size(settings: int, needs: Sequence[Need], budget: float) -> int:
    """How many settings fit in one walk (between 1 and K): the largest k with
    ``shared + k * per_setting <= budget`` at every moment of ``needs``."""
    if settings < 1:
        raise StrokeLRPError(f"need at least one setting, got {settings}")
    if math.isinf(budget):
        return settings
    fit = settings
    for shared, per in needs:
        if per > 0:
            fit = min(fit, int((budget - shared) // per))
    return max(1, fit)


def plan_chunks(settings: int, needs: Sequence[Need], budget: float) -> list[range]:
    """Split settings 0..K-1 into consecutive chunks that fit the budget, as even as possible.

    ``needs``: (shared, per-setting) bytes at each moment of the walk (:data:`Need`). Fewest
    chunks first, then equal sizes (16 settings with room for 11 run as 8 + 8, not 11 + 5:
    the same number of walks, a lower peak). When even one setting does not fit, the settings
    run one at a time (the caller may warn).
    """
    size = chunk_size(settings, needs, budget)
    n = -(-settings // size)
    base, extra = divmod(settings, n)
    out, start = [], 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


@dataclass(frozen=True)
class MemoryPlan:
    """How an explanation's K settings are walked under a budget (all sizes in bytes).

    ``needs``: (shared, per-setting) bytes at each moment of the walk, shared = what all
    settings share then (kept activations, every setting's maps, the step's denominators);
    ``cached``: what keeping every step's denominators across chunks adds; ``chunks``: the
    settings of each walk; ``cache``: whether the denominators are computed once and kept.
    """

    budget: float
    needs: tuple[Need, ...]
    cached: int
    chunks: tuple[range, ...]
    cache: bool

    @property
    def sizes(self) -> list[int]:
        """Number of settings per walk."""
        return [len(c) for c in self.chunks]

    @property
    def per_setting(self) -> int:
        """The most one setting needs at any moment of the walk."""
        return max(per for _, per in self.needs)

    @property
    def estimate(self) -> int:
        """Estimated peak of the walks (the largest chunk, plus the cache when kept)."""
        return _peak(self.needs, max(self.sizes)) + (self.cached if self.cache else 0)

    def peak(self, settings: int) -> int:
        """Estimated peak of one walk of ``settings`` settings, without cache."""
        return _peak(self.needs, settings)

    @property
    def fits(self) -> bool:
        """Whether the estimated peak is within the budget."""
        return self.estimate <= self.budget

    def describe(self) -> str:
        """One line, e.g. ``16 settings in 2 walks of 8 (estimated peak 7.1 GB of 8 GB)``."""
        k = sum(self.sizes)
        walks = (
            "one walk"
            if len(self.sizes) == 1
            else f"{len(self.sizes)} walks of {'/'.join(map(str, sorted(set(self.sizes))))}"
        )
        return (
            f"{k} setting{'s' if k != 1 else ''} in {walks} (estimated peak "
            f"{format_bytes(self.estimate)} of {format_bytes(self.budget)}"
            f"{', denominators cached' if self.cache else ''})"
        )


def plan(settings: int, needs: Sequence[Need], cached: int, budget: float) -> MemoryPlan:
    """The chunks for ``settings`` settings, and whether to cache the denominators: cached
    when that costs at most one extra walk (``cached`` bytes more held throughout; computing
    the denominators costs about a forward pass, more than a walk's own overhead), else
    recomputed in every walk."""
    chunks = plan_chunks(settings, needs, budget)
    cache = False
    if len(chunks) > 1:
        more = [(shared + cached, per) for shared, per in needs]
        with_cache = plan_chunks(settings, more, budget)
        largest = max(len(c) for c in with_cache)
        if len(with_cache) <= len(chunks) + 1 and _peak(more, largest) <= budget:
            chunks, cache = with_cache, True
    return MemoryPlan(budget, tuple(needs), cached, tuple(chunks), cache)


def format_bytes(n: float) -> str:
    """``1.23 GB`` style (decimal units), ``unlimited`` for infinity."""
    if math.isinf(n):
        return UNLIMITED
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"
