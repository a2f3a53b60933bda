"""Names and presets shared by every stage: modalities, series scales."""

from __future__ import annotations

MODALITIES: tuple[str, ...] = ("ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP")
"""Input channel order of the network (the paper's)."""

SERIES: dict[str, tuple[int, int, int]] = {
    "A": (19, 48, 48),
    "B": (19, 96, 96),
    "C": (19, 144, 144),
    "X": (19, 192, 192),
}
"""The paper's series scales as (D, H, W) = (slices, rows, columns)."""
