"""Volume resizing: (C, D, H, W) or (D, H, W) to a (D, H, W) grid and back."""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def resize_volume(
    vol: Array,
    shape: tuple[int, int, int],
    mode: Literal["trilinear", "nearest"] = "trilinear",
) -> Array:
    """Resize ``vol`` (C, D, H, W) or (D, H, W) to ``shape`` (D, H, W); same type out.

    ``"trilinear"`` (images; align_corners=False) returns float32 for numpy input or the
    input's floating dtype for tensors; ``"nearest"`` (labels; pixel-centre nearest neighbour,
    ``nearest-exact``) keeps the dtype. Giving the native shape undoes a resize (shape-wise;
    for labels the values stay in the input's set). Tensors stay on their device.
    """
    if mode not in ("trilinear", "nearest"):
        raise ValueError(f"mode must be 'trilinear' or 'nearest', got {mode!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (D, H, W), got {shape}")
    is_numpy = isinstance(vol, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(vol)) if is_numpy else vol
    squeeze = t.ndim == 3
    if t.ndim not in (3, 4):
        raise ValueError(f"expected a volume (C, D, H, W) or (D, H, W), got shape {tuple(t.shape)}")
    x = t[None, None] if squeeze else t[None]
    in_dtype = x.dtype
    if tuple(x.shape[2:]) == shape:
        y = x.clone()
        if mode == "trilinear" and not y.is_floating_point():
            y = y.float()
    elif mode == "trilinear":
        xf = x if x.is_floating_point() else x.float()
        y = F.interpolate(xf, size=shape, mode="trilinear", align_corners=False)
    else:
        xf = x if x.is_floating_point() else x.float()
        y = F.interpolate(xf, size=shape, mode="nearest-exact")
        y = y.to(in_dtype)
    y = y[0, 0] if squeeze else y[0]
    if is_numpy:
        arr = y.numpy()
        if mode == "trilinear":
            arr = arr.astype(np.float32, copy=False)
        return np.ascontiguousarray(arr)  # type: ignore[return-value]
    return y  # type: ignore[return-value]
