"""Preprocessing: per-volume normalisation and resizing to a series scale (and back).

The paper min-max normalises each modality of each volume to [0, 1] and resizes to the series
scale (A/B/C/X of ``config.SERIES``); labels are resized with nearest neighbour. Resizing back
to the native shape with the same function is the inverse used for predictions and relevance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from strokelrp.config import SERIES
from strokelrp.errors import StrokeLRPError

if TYPE_CHECKING:
    from strokelrp.config import TrainConfig
    from strokelrp.data.isles2017 import Case

Array = TypeVar("Array", np.ndarray, torch.Tensor)
NORMALIZATIONS = ("minmax", "zscore")


def normalize_minmax(image: np.ndarray) -> np.ndarray:
    """Min-max each channel of ``image`` (C, D, H, W) to [0, 1] -> float32 (C, D, H, W).

    A constant channel maps to 0 (never NaN).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim < 2:
        raise ValueError(f"expected an image (C, D, H, W), got shape {image.shape}")
    out = np.empty_like(image, dtype=np.float32)
    for c in range(image.shape[0]):
        ch = image[c]
        lo, hi = float(ch.min()), float(ch.max())
        if hi > lo:
            out[c] = (ch - lo) / (hi - lo)
        else:
            out[c] = 0.0
    return np.clip(out, 0.0, 1.0, out=out)


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Voxels where any perfusion channel (MTT, rCBF, rCBV, Tmax, TTP) differs from its
    background -> (D, H, W).

    ISLES perfusion maps are constant (0) outside the brain; a channel's background is its most
    frequent value (ties: the smallest), 0 for raw maps. Taking the most frequent value rather
    than assuming 0 keeps the mask right after min-max normalisation of a channel that is
    negative inside the brain (a synthetic control of zero-mean noise, whose background maps to
    about 0.5). The ADC (channel 0) is not used because it keeps the scalp. With fewer than 2
    channels, any channel counts.
    """
    channels = np.asarray(image[1:] if image.shape[0] > 1 else image)
    mask = np.zeros(channels.shape[1:], dtype=bool)
    for channel in channels:
        values, counts = np.unique(channel, return_counts=True)
        mask |= channel != values[int(np.argmax(counts))]
    return mask


def normalize_zscore(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Z-score each channel of ``image`` (C, D, H, W) with the mean and SD inside ``mask``.

    ``mask`` (D, H, W) defaults to :func:`brain_mask`; voxels outside it become 0. A channel
    with zero SD inside the mask becomes 0. An empty mask falls back to the whole volume.
    """
    image = np.asarray(image, dtype=np.float32)
    if mask is None:
        mask = brain_mask(image)
    if not mask.any():
        mask = np.ones(image.shape[1:], dtype=bool)
    out = np.zeros_like(image, dtype=np.float32)
    for c in range(image.shape[0]):
        values = image[c][mask].astype(np.float64)
        mean, sd = values.mean(), values.std()
        if sd > 0:
            out[c][mask] = ((values - mean) / sd).astype(np.float32)
    return out


def _as_shape(series: str | tuple[int, int, int] | list[int]) -> tuple[int, int, int]:
    if isinstance(series, str):
        key = series.upper()
        if key not in SERIES:
            raise StrokeLRPError(
                f"unknown series {series!r}; choose one of {', '.join(SERIES)} or give (D, H, W)"
            )
        return SERIES[key]
    shape = tuple(int(s) for s in series)
    if len(shape) != 3 or min(shape) < 1:
        raise StrokeLRPError(f"series shape must be (D, H, W) with sizes >= 1, got {series}")
    return shape  # type: ignore[return-value]


def series_shape(series: str | tuple[int, int, int] | list[int]) -> tuple[int, int, int]:
    """A series name (``"A"``... ``"X"``) or an explicit (D, H, W) -> (D, H, W)."""
    return _as_shape(series)


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


def preprocess_case(
    case: Case,
    series: str | tuple[int, int, int],
    normalization: Literal["minmax", "zscore"] = "minmax",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalise per modality at the native grid, then resize to the series scale.

    -> (x float32 (6, D, H, W), y uint8 (D, H, W) or ``None`` when the case has no OT).
    Min-max values stay in [0, 1] after trilinear resizing (it only averages).
    """
    shape = _as_shape(series)
    if normalization == "minmax":
        norm = normalize_minmax(case.image)
    elif normalization == "zscore":
        norm = normalize_zscore(case.image)
    else:
        raise StrokeLRPError(
            f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}"
        )
    x = resize_volume(norm, shape, mode="trilinear")
    y = None
    if case.label is not None:
        y = resize_volume(case.label.astype(np.uint8), shape, mode="nearest")
    return x, y


def prepare_case(
    case: Case, config: TrainConfig | str | tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Case ``case`` preprocessed exactly as the run with ``config`` saw it in training.

    -> (x float32 (6, D, H, W), y uint8 (D, H, W) or ``None`` without OT), at the run's
    series scale and normalisation (:func:`preprocess_case`, which the training dataset uses).
    ``config`` is the one :func:`strokelrp.train.checkpoint.load_run` returns, or a series
    (``"A"`` ... ``"X"`` or (D, H, W)) with the default min-max normalisation.
    """
    if isinstance(config, (str, tuple, list)):
        return preprocess_case(case, config)
    shape, normalization = getattr(config, "shape", None), getattr(config, "normalization", None)
    if shape is None or normalization is None:
        raise StrokeLRPError(
            f"prepare_case: config must be a run's TrainConfig (from strokelrp.load_run) or a "
            f"series name A, B, C, X or (D, H, W), got {type(config).__name__}"
        )
    return preprocess_case(case, shape, normalization=normalization)
