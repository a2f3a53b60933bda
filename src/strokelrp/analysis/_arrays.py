"""Small array helpers shared by the analysis modules: numpy or torch in, float64 numpy out."""

from __future__ import annotations

from typing import Any

import numpy as np

from strokelrp.errors import StrokeLRPError


def to_numpy(value: Any, name: str) -> np.ndarray:
    """``value`` (numpy array, torch tensor on any device, or nested list) as a numpy array."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch, without importing it
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        value = value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        kind = type(value).__name__
        raise StrokeLRPError(f"{name} must be an array or tensor, got {kind}") from err


def to_float64(value: Any, name: str) -> np.ndarray:
    """``value`` as float64 numpy (relevance is summed and compared in double precision)."""
    return to_numpy(value, name).astype(np.float64, copy=False)


def require_ndim(array: np.ndarray, ndims: tuple[int, ...], name: str, layout: str) -> None:
    """Raise a clear error unless ``array.ndim`` is one of ``ndims`` (``layout`` names the axes)."""
    if array.ndim not in ndims:
        raise StrokeLRPError(
            f"{name} must have shape {layout}, got {tuple(array.shape)} ({array.ndim}-D)"
        )


def channel_max_abs(array: np.ndarray) -> np.ndarray:
    """max |array| over the spatial axes of a (..., C, D, H, W) array -> (..., C, 1, 1, 1)."""
    return np.abs(array).max(axis=(-3, -2, -1), keepdims=True)


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (no NaN, no warning)."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape), dtype=np.float64)
    np.divide(num, den, out=out, where=np.broadcast_to(den != 0, out.shape))
    return out
