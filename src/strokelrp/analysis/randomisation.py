"""Read-outs of model-parameter randomisation that see the model, not the target's distance.

Pure functions of maps R (C, *S) (S: the spatial axes, 3 for a volume), the target mask and
logits; definitions, the shell widths and why in docs/assess.md ("Randomisation"). The
model-running half (which models, which maps) is :mod:`strokelrp.trust.assess`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt, uniform_filter

from strokelrp.analysis.shares import spearman
from strokelrp.errors import StrokeLRPError

SHELL_EDGES: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0, 16.0)
"""Distance-to-target shells (voxels, Euclidean): the target itself (d = 0), then
(0, 2], (2, 4], (4, 8], (8, 16] and beyond 16 (docs/assess.md, "Randomisation")."""

SSIM_WINDOW = 7
"""Side of SSIM's cubic window (voxels)."""

ENTROPY_BINS = 100
"""Equal-width histogram bins of eMPRT's discrete entropy (Hedström et al. 2023)."""

LOGIT_CHANGE_MIN = 0.02
"""A re-initialisation that moves the logits by less than this share of their norm
(:func:`logit_change`) is skipped: its map comparison would say nothing (docs/assess.md)."""


def shells(target: np.ndarray, edges: Sequence[float] = SHELL_EDGES) -> np.ndarray:
    """Shell index (0, 1, ...) of every voxel of target's grid (*S): 0 on the target, k for a
    distance d to the nearest target voxel with edges[k-1] < d <= edges[k], len(edges) beyond
    the last edge. An empty target gives one shell (all 0)."""
    t = np.asarray(target, bool)
    if not t.any():
        return np.zeros(t.shape, int)
    d = distance_transform_edt(~t)
    out = np.zeros(t.shape, int)
    for k, edge in enumerate(edges[1:], start=1):
        out[(d > edges[k - 1]) & (d <= edge)] = k
    out[d > edges[-1]] = len(edges)
    return out


def shell_spearman(a: np.ndarray, b: np.ndarray, shell: np.ndarray, mask: np.ndarray) -> float:
    """Spearman of the signed maps a, b (C, *S) within each distance shell (``shell`` from
    :func:`shells`, restricted to ``mask`` (*S), all channels), averaged with weights = the
    shell's element count; shells with fewer than 3 elements or an undefined correlation
    (a constant side) are left out; NaN when none is left."""
    total, weight = 0.0, 0
    for k in np.unique(shell[mask]):
        sel = mask & (shell == k)
        x, y = np.asarray(a)[:, sel].ravel(), np.asarray(b)[:, sel].ravel()
        if x.size < 3:
            continue
        rho = spearman(x, y)
        if math.isnan(rho):
            continue
        total += rho * x.size
        weight += x.size
    return total / weight if weight else math.nan


def normalise_p99(r: np.ndarray) -> np.ndarray:
    """r divided by the 99th percentile of |r| and clipped to [-1, 1] (an all-zero map stays
    0): a scale that a few extreme values do not set."""
    a = np.asarray(r, np.float64)
    scale = float(np.percentile(np.abs(a), 99))
    if scale == 0:
        scale = float(np.abs(a).max())
    return np.clip(a / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(a)


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    window: int = SSIM_WINDOW,
    data_range: float = 2.0,
    mask: np.ndarray | None = None,
) -> float:
    """Mean structural similarity (Wang et al. 2004) of a and b (C, *S), each channel over its
    spatial axes with a uniform cubic window of side ``window`` (only windows that fit inside
    the grid; a grid smaller than the window uses its own size along that axis), population
    (co)variances, C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = ``data_range``; the mean over
    the window positions (those centred in ``mask`` (*S), when given) and channels; NaN when
    no window is left."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim < 2:
        raise StrokeLRPError(f"ssim needs two equal (C, *S) maps, got {x.shape}, {y.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for xc, yc in zip(x, y, strict=True):
        size = tuple(min(window, n) for n in xc.shape)
        crop = tuple(
            slice(s // 2, n - (s - 1 - s // 2)) for s, n in zip(size, xc.shape, strict=True)
        )

        def mean(v: np.ndarray, size: tuple[int, ...] = size) -> np.ndarray:
            return uniform_filter(v, size=size, mode="constant")

        mx, my = mean(xc), mean(yc)
        vx = mean(xc * xc) - mx * mx
        vy = mean(yc * yc) - my * my
        cxy = mean(xc * yc) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(s[crop] if mask is None else s[crop][np.asarray(mask, bool)[crop]])
    flat = np.concatenate([v.ravel() for v in values])
    return float(flat.mean()) if flat.size else math.nan


def discrete_entropy(r: np.ndarray, bins: int = ENTROPY_BINS) -> float:
    """Shannon entropy (nats) of the histogram of r's values in ``bins`` equal-width bins
    between its minimum and maximum (0 for a constant map)."""
    a = np.asarray(r, np.float64).ravel()
    if a.size == 0 or a.min() == a.max():
        return 0.0
    counts, _ = np.histogram(a, bins=bins)
    p = counts[counts > 0] / a.size
    return float(-(p * np.log(p)).sum())


def emprt(trained: np.ndarray, randomised: np.ndarray, bins: int = ENTROPY_BINS) -> float:
    """eMPRT (Hedström et al. 2023): the relative rise of the map's discrete entropy from the
    trained to the fully re-initialised model, (H(randomised) - H(trained)) / H(trained);
    positive when the random model's map is more disordered; NaN when H(trained) = 0."""
    h0 = discrete_entropy(trained, bins)
    return (discrete_entropy(randomised, bins) - h0) / h0 if h0 > 0 else math.nan


def logit_change(trained: np.ndarray, changed: np.ndarray) -> float:
    """||changed - trained|| / ||trained|| over every logit (Frobenius norms); inf when the
    trained logits are all 0."""
    t, c = np.asarray(trained, np.float64), np.asarray(changed, np.float64)
    norm = float(np.linalg.norm(t))
    diff = float(np.linalg.norm(c - t))
    return diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)
