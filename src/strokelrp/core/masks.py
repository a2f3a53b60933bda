"""Masks: the brain (where the perfusion maps differ from their background) and the predicted
lesion (the arg-max rule)."""

from __future__ import annotations

import numpy as np
import torch

from strokelrp.config import LESION


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


def lesion_mask(logits: torch.Tensor) -> torch.Tensor:
    """Predicted lesion mask (B, D, H, W) bool from logits (B, K, D, H, W) (argmax)."""
    return logits.argmax(dim=1) == LESION
