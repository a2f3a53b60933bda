"""Which modalities a trained model uses: mean-fill one channel at a time, measure the Dice.

Mean-filling channel c replaces every voxel of ``x[c]`` (the preprocessed model input) by the
channel's mean over the volume, which removes its spatial information but keeps its level. The
*ablation drop* of c is ``Dice(prediction, OT) - Dice(prediction with c mean-filled, OT)``:
large when the model relies on c, about 0 when it ignores c. Without a ground truth the drop is
measured against the model's own prediction instead (``1 - Dice(filled, original)``), which is
also given as ``change`` in every case. This is the one ablation of the project: the sweep's
``ablation_drop`` column and ``strokelrp assess``'s ``ablation_rho`` both use it.

This is the yardstick for modality shares of relevance: a map's share on a channel should
follow the channel's ablation drop, whatever the data generator meant the channel to carry
(the pure functions of the drops: :mod:`strokelrp.analysis.shares`). It runs the network, so
it sits above ``analysis/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from strokelrp.analysis._arrays import require_ndim, to_numpy
from strokelrp.core.metrics import dice_score
from strokelrp.errors import StrokeLRPError


@dataclass(frozen=True)
class Ablation:
    """Per-channel mean-fill effects on one case.

    ``dice``: Dice of the unablated prediction with the ground truth (NaN without one);
    ``filled_dice`` (C,): the same with channel c mean-filled; ``drop`` (C,):
    ``dice - filled_dice`` (or ``change`` without a ground truth); ``change`` (C,):
    ``1 - Dice(filled prediction, prediction)``.
    """

    dice: float
    filled_dice: np.ndarray
    drop: np.ndarray
    change: np.ndarray


def mean_filled(x: Any, channel: int) -> Any:
    """``x`` (C, D, H, W) (numpy or torch) with channel ``channel`` set to its mean (a copy)."""
    out = x.clone() if hasattr(x, "clone") else np.array(x, copy=True)
    out[channel] = out[channel].mean()
    return out


def modality_ablation(
    model: Any, x: Any, label: Any | None = None, *, batch_size: int = 7
) -> Ablation:
    """Mean-fill each channel of ``x`` (C, D, H, W), or (C, H, W) for a 2-D network, in turn
    and measure the model's Dice.

    ``label``: (D, H, W) ground truth (non-zero = lesion) or None; an empty label counts as
    none (the drop is then the change against the model's own prediction). x is cast to the
    model's dtype. The C + 1 inputs (original, then channel 0..C-1 mean-filled) go through
    the model in batches of ``batch_size``.
    """
    import torch

    from strokelrp.core.masks import lesion_mask
    from strokelrp.inference import predict

    param = next(model.parameters())
    x = torch.as_tensor(to_numpy(x, "x")).to(dtype=param.dtype)
    require_ndim(x.numpy(), (3, 4), "x", "(C, D, H, W) or (C, H, W)")
    truth = None
    if label is not None:
        truth = to_numpy(label, "label") != 0
        if truth.shape != tuple(x.shape[1:]):
            raise StrokeLRPError(
                f"label {truth.shape} and input {tuple(x.shape)} must share the spatial axes"
            )
        if not truth.any():
            truth = None  # an empty label: no lesion to score, as without one
    variants = [x] + [mean_filled(x, c) for c in range(x.shape[0])]
    masks = []
    for start in range(0, len(variants), max(1, int(batch_size))):
        batch = torch.stack(variants[start : start + max(1, int(batch_size))])
        masks += list(lesion_mask(predict(model, batch)).cpu().numpy())
    base, filled = masks[0], masks[1:]
    change = np.array([1.0 - dice_score(m, base) for m in filled])
    if truth is None:
        nan = float("nan")
        return Ablation(nan, np.full(len(filled), nan), change, change)
    dice = dice_score(base, truth)
    filled_dice = np.array([dice_score(m, truth) for m in filled])
    return Ablation(dice, filled_dice, dice - filled_dice, change)
