"""Inclusivity coefficients (paper eq. 2): how much of a binary region a heatmap covers.

``D(a, b) = |a ∩ b| / (|b| + smoothing)`` is the inclusivity of ``b`` in ``a``: 1 when ``b`` lies
inside ``a``, 0 when they do not meet (and 0, never NaN, when ``b`` is empty). The paper uses it
per channel (modality) with ``a`` the binarised relevance:

- input inclusivity ``D(LRP_c, x_c)``: does the heatmap cover the bright part of the input?
- ground-truth inclusivity ``D(LRP_c, OT)``: does the heatmap cover the lesion?

Binarisation, per channel as in the paper: relevance ``|R_c| / max |R_c| > 0.5``, input
``|x_c| / max |x_c| > 0.1`` (both thresholds are arguments). Relevance may be one map
``(C, D, H, W)`` or a batch of K filter settings ``(K, C, D, H, W)``; numpy arrays and torch
tensors are both accepted, results are numpy.

Example (a 1x2x2 volume, one channel)::

    >>> import numpy as np
    >>> R = np.array([[[[0.9, -1.0], [0.2, 0.0]]]])     # |R|/max = [[0.9, 1], [0.2, 0]]
    >>> x = np.array([[[[1.0, 0.0], [0.5, 0.05]]]])     # |x|/max > 0.1 at (0,0), (1,0)
    >>> input_inclusivity(R, x, smoothing=0.0)           # LRP mask {(0,0),(0,1)}: 1 of 2
    array([0.5])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from strokelrp.analysis._arrays import (
    channel_max_abs,
    require_ndim,
    safe_divide,
    to_float64,
    to_numpy,
)
from strokelrp.errors import StrokeLRPError

DEFAULT_SMOOTHING = 1e-6
"""Added to |b| so that an empty b gives 0 instead of 0/0 (and shifts a non-empty one by 1e-6
of a voxel at most)."""

RELEVANCE_THRESHOLD = 0.5
"""The paper's binarisation of a relevance channel: |R_c| / max |R_c| > 0.5."""

INPUT_THRESHOLD = 0.1
"""The paper's binarisation of an input channel: |x_c| / max |x_c| > 0.1."""

Resize = Callable[[Any, tuple[int, int, int], str], Any]
"""``resize(vol (C, D, H, W), shape (D, H, W), mode) -> (C, *shape)``, as
:func:`strokelrp.core.volumes.resize_volume`."""


def _check_threshold(threshold: float, name: str) -> None:
    if not 0.0 <= threshold < 1.0:
        raise StrokeLRPError(f"{name} must be in [0, 1), got {threshold}")


def _check_smoothing(smoothing: float) -> None:
    if not smoothing >= 0.0:
        raise StrokeLRPError(f"smoothing must be >= 0, got {smoothing}")


def _as_mask(value: Any, name: str) -> np.ndarray:
    mask = to_numpy(value, name)
    return mask if mask.dtype == np.bool_ else mask != 0


def inclusivity(a: Any, b: Any, smoothing: float = DEFAULT_SMOOTHING) -> float:
    """Inclusivity of ``b`` in ``a``: ``|a ∩ b| / (|b| + smoothing)``; 0.0 when ``b`` is empty.

    ``a`` and ``b`` are masks of the same shape (bool, or numbers where non-zero counts as
    inside; numpy or torch).

    >>> inclusivity([[True, True], [False, False]], [[True, False], [True, False]], 0.0)
    0.5
    """
    _check_smoothing(smoothing)
    a_mask, b_mask = _as_mask(a, "a"), _as_mask(b, "b")
    if a_mask.shape != b_mask.shape:
        raise StrokeLRPError(
            f"inclusivity needs masks of the same shape, got a {tuple(a_mask.shape)} "
            f"and b {tuple(b_mask.shape)}"
        )
    size_b = int(b_mask.sum())
    if size_b == 0:
        return 0.0
    return float(np.logical_and(a_mask, b_mask).sum() / (size_b + smoothing))


def channel_inclusivity(a: np.ndarray, b: np.ndarray, smoothing: float) -> np.ndarray:
    """Inclusivity of ``b`` in ``a`` per leading index: masks (..., D, H, W) -> (...).

    ``b`` broadcasts against ``a`` (e.g. one label ``(D, H, W)`` against ``(K, C, D, H, W)``).
    """
    _check_smoothing(smoothing)
    axes = (-3, -2, -1)
    inter = np.logical_and(a, b).sum(axis=axes).astype(np.float64)
    size_b = np.broadcast_to(b.sum(axis=axes), inter.shape).astype(np.float64)
    return safe_divide(inter, size_b + smoothing) * (size_b > 0)


def binarize_relevance(relevance: Any, threshold: float = RELEVANCE_THRESHOLD) -> np.ndarray:
    """Binarise relevance per channel: ``|R_c| / max |R_c| > threshold``.

    ``relevance``: (C, D, H, W) or (K, C, D, H, W) -> bool mask of the same shape. A channel that
    is zero everywhere gives an empty mask (no NaN).
    """
    _check_threshold(threshold, "relevance threshold")
    r = to_float64(relevance, "relevance")
    require_ndim(r, (4, 5), "relevance", "(C, D, H, W) or (K, C, D, H, W)")
    return safe_divide(np.abs(r), channel_max_abs(r)) > threshold


def binarize_input(x: Any, threshold: float = INPUT_THRESHOLD) -> np.ndarray:
    """Binarise an input image per channel: ``|x_c| / max |x_c| > threshold``.

    ``x``: (C, D, H, W) -> bool (C, D, H, W). An all-zero channel gives an empty mask.
    """
    _check_threshold(threshold, "input threshold")
    arr = to_float64(x, "x")
    require_ndim(arr, (4,), "x", "(C, D, H, W)")
    return safe_divide(np.abs(arr), channel_max_abs(arr)) > threshold


def _resize_to(
    vol: np.ndarray, grid: tuple[int, int, int], mode: str, resize: Resize | None
) -> np.ndarray:
    """(..., D, H, W) resampled to ``grid`` with ``resize`` (default: the data layer's)."""
    if tuple(vol.shape[-3:]) == tuple(grid):
        return vol
    if resize is None:
        from strokelrp.core.volumes import resize_volume as resize
    lead = vol.shape[:-3]
    flat = vol.reshape((-1, *vol.shape[-3:]))
    out = to_numpy(resize(flat, tuple(grid), mode), "resized volume")
    return np.asarray(out, dtype=np.float64).reshape((*lead, *grid))


def _prepare_relevance(
    relevance: Any, grid: tuple[int, int, int] | None, resize: Resize | None
) -> np.ndarray:
    r = to_float64(relevance, "relevance")
    require_ndim(r, (4, 5), "relevance", "(C, D, H, W) or (K, C, D, H, W)")
    return r if grid is None else _resize_to(r, grid, "trilinear", resize)


def input_inclusivity(
    relevance: Any,
    x: Any,
    *,
    relevance_threshold: float = RELEVANCE_THRESHOLD,
    input_threshold: float = INPUT_THRESHOLD,
    smoothing: float = DEFAULT_SMOOTHING,
    grid: tuple[int, int, int] | None = None,
    resize: Resize | None = None,
) -> np.ndarray:
    """Input inclusivity ``D(LRP_c, x_c)`` per channel.

    ``relevance``: (C, D, H, W) -> (C,), or (K, C, D, H, W) -> (K, C); ``x``: (C, D, H, W), the
    image the relevance explains. With ``grid`` = (D, H, W) (e.g. the case's native grid) the
    relevance (trilinear) and, if its shape differs, ``x`` are first resampled there with
    ``resize`` (default :func:`strokelrp.core.volumes.resize_volume`).
    """
    r = _prepare_relevance(relevance, grid, resize)
    xs = to_float64(x, "x")
    require_ndim(xs, (4,), "x", "(C, D, H, W)")
    if grid is not None:
        xs = _resize_to(xs, grid, "trilinear", resize)
    if xs.shape != r.shape[-4:]:
        raise StrokeLRPError(
            f"relevance {tuple(r.shape)} and x {tuple(xs.shape)} must share (C, D, H, W)"
        )
    lrp_mask = binarize_relevance(r, relevance_threshold)
    return channel_inclusivity(lrp_mask, binarize_input(xs, input_threshold), smoothing)


def ground_truth_inclusivity(
    relevance: Any,
    label: Any,
    *,
    relevance_threshold: float = RELEVANCE_THRESHOLD,
    smoothing: float = DEFAULT_SMOOTHING,
    grid: tuple[int, int, int] | None = None,
    resize: Resize | None = None,
) -> np.ndarray:
    """Ground-truth inclusivity ``D(LRP_c, OT)`` per channel: how much of the lesion is covered.

    ``relevance``: (C, D, H, W) -> (C,), or (K, C, D, H, W) -> (K, C); ``label``: (D, H, W), the
    lesion where non-zero. An empty label gives 0 for every channel. With ``grid`` the relevance
    and (nearest neighbour, if its shape differs) the label are first resampled there.
    """
    r = _prepare_relevance(relevance, grid, resize)
    lab = to_numpy(label, "label")
    require_ndim(lab, (3,), "label", "(D, H, W)")
    lesion = lab != 0
    if grid is not None and tuple(lesion.shape) != tuple(grid):
        lesion = _resize_to(lesion[None].astype(np.float64), grid, "nearest", resize)[0] > 0.5
    if lesion.shape != r.shape[-3:]:
        raise StrokeLRPError(
            f"relevance {tuple(r.shape)} and label {tuple(lesion.shape)} must share (D, H, W)"
        )
    return channel_inclusivity(binarize_relevance(r, relevance_threshold), lesion, smoothing)
