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


def chunk_size(settings: int, per_setting: int, shared: int, budget: float) -> int:
    """How many settings fit in one walk: (budget - shared) / per_setting, between 1 and K."""
    if settings < 1:
        raise StrokeLRPError(f"need at least one setting, got {settings}")
    if math.isinf(budget) or per_setting <= 0:
        return settings
    fit = int((budget - shared) // per_setting)
    return max(1, min(settings, fit))


def plan_chunks(settings: int, per_setting: int, shared: int, budget: float) -> list[range]:
    """Split settings 0..K-1 into consecutive chunks that fit the budget, as even as possible.

    ``per_setting``: bytes one setting needs at the walk's peak; ``shared``: bytes held for
    all settings. Fewest chunks first, then equal sizes (16 settings with room for 11 run as
    8 + 8, not 11 + 5: the same number of walks, a lower peak). When even one setting does not
    fit, the settings run one at a time (the caller may warn).
    """
    size = chunk_size(settings, per_setting, shared, budget)
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

    ``per_setting``: one setting's need at the walk's peak; ``shared``: what all settings
    share (kept activations, the maps of every setting, a step's denominators);
    ``cached``: what keeping every step's denominators across chunks adds; ``chunks``: the
    settings of each walk; ``cache``: whether the denominators are computed once and kept.
    """

    budget: float
    per_setting: int
    shared: int
    cached: int
    chunks: tuple[range, ...]
    cache: bool

    @property
    def sizes(self) -> list[int]:
        """Number of settings per walk."""
        return [len(c) for c in self.chunks]

    @property
    def estimate(self) -> int:
        """Estimated peak: shared (+ cache) + the largest chunk's settings."""
        return self.shared + (self.cached if self.cache else 0) + max(self.sizes) * self.per_setting

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


def plan(settings: int, per_setting: int, shared: int, cached: int, budget: float) -> MemoryPlan:
    """The chunks for ``settings`` settings, and whether to cache the denominators: cached
    when that costs no extra walk (the same number of chunks with ``cached`` bytes more),
    else recomputed in every walk."""
    chunks = plan_chunks(settings, per_setting, shared, budget)
    cache = False
    if len(chunks) > 1:
        with_cache = plan_chunks(settings, per_setting, shared + cached, budget)
        largest = max(len(c) for c in with_cache)
        if len(with_cache) == len(chunks) and shared + cached + largest * per_setting <= budget:
            chunks, cache = with_cache, True
    return MemoryPlan(budget, per_setting, shared, cached, tuple(chunks), cache)


def format_bytes(n: float) -> str:
    """``1.23 GB`` style (decimal units), ``unlimited`` for infinity."""
    if math.isinf(n):
        return UNLIMITED
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"
