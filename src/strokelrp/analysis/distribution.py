"""Signal distribution (paper fig. 5 D1/D2, annex fig. 2): the mean normalised relevance.

For one relevance map and one channel c, the paper plots ``mean_w R_c(w) / max_w |R_c(w)|``:
the channel is normalised to [-1, 1] by its own largest magnitude and averaged over the whole
volume. It is signed (negative relevance pulls it down) and lies in [-1, 1].

``scope="channel"`` (default, the paper's figures) normalises each channel by its own maximum;
``scope="global"`` normalises all channels of one map by the maximum over the map, so that the
channels' amplitudes stay comparable.

A channel (or, for ``"global"``, a map) that is zero everywhere has no defined normalisation:
its value is NaN, the paper's "invalid values", which the figures leave out and count.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from strokelrp.analysis._arrays import require_ndim, to_float64
from strokelrp.errors import StrokeLRPError

Scope = Literal["channel", "global"]
SCOPES: tuple[str, ...] = ("channel", "global")


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise StrokeLRPError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")


def normalizer(relevance: np.ndarray, scope: Scope = "channel") -> np.ndarray:
    """max |R| per channel (``"channel"``) or per map (``"global"``), broadcastable to R.

    ``relevance``: (..., C, D, H, W) -> (..., C, 1, 1, 1) or (..., 1, 1, 1, 1).
    """
    _check_scope(scope)
    axes = (-3, -2, -1) if scope == "channel" else (-4, -3, -2, -1)
    return np.abs(relevance).max(axis=axes, keepdims=True)


def normalize(relevance: Any, scope: Scope = "channel") -> np.ndarray:
    """``R / max |R|`` (per channel or per map) in [-1, 1]; NaN where the normaliser is 0.

    ``relevance``: (C, D, H, W) or (K, C, D, H, W), numpy or torch -> float64, same shape.
    """
    r = to_float64(relevance, "relevance")
    require_ndim(r, (4, 5), "relevance", "(C, D, H, W) or (K, C, D, H, W)")
    norm = normalizer(r, scope)
    out = np.full(np.broadcast_shapes(r.shape, norm.shape), np.nan)
    np.divide(r, norm, out=out, where=np.broadcast_to(norm > 0, out.shape))
    return out


def mean_normalized_signal(relevance: Any, scope: Scope = "channel") -> np.ndarray:
    """Mean over the volume of ``R_c / max |R_c|``: (C, D, H, W) -> (C,), (K, C, D, H, W) -> (K, C).

    NaN for a channel with no relevance at all (``scope="channel"``) or an all-zero map
    (``scope="global"``).
    """
    return normalize(relevance, scope).mean(axis=(-3, -2, -1))
