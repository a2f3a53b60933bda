"""Preprocessing: per-volume normalisation and resizing to a series scale (and back).

The paper min-max normalises each modality of each volume to [0, 1] and resizes to the series
scale (A/B/C/X of ``config.SERIES``); labels are resized with nearest neighbour. Resizing back
to the native shape with the same function is the inverse used for predictions and relevance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from strokelrp.config import SERIES
from strokelrp.core.masks import brain_mask
from strokelrp.core.volumes import resize_volume
from strokelrp.errors import StrokeLRPError

if TYPE_CHECKING:
    from strokelrp.config import TrainConfig
    from strokelrp.data.layouts import Case

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
