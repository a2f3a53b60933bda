"""Running a network: logits in eval mode without gradients (``predict``) and the
native-grid class map from them (``native_labels``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from strokelrp.core.volumes import resize_volume


def predict(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Logits (B, 2, D, H, W) float32 for input ``x`` (B, 6, D, H, W), on the model's device
    (a 2-D network: (B, C, H, W) -> (B, 2, H, W)).

    The model runs in eval mode (BatchNorm with its running statistics; the authors' code
    switched it to train mode mid-evaluation); its previous mode is restored afterwards.
    ``precision="bf16"`` runs under autocast (GPU), the logits are still returned as float32.
    """
    if x.dim() not in (4, 5):
        raise ValueError(
            f"predict expects x of shape (B, 6, D, H, W) or (B, C, H, W), got {tuple(x.shape)}"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            torch.autocast(
                device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
            ),
        ):
            logits = model(x.to(device, non_blocking=True))
    finally:
        model.train(was_training)
    return logits.float()


def native_labels(logits: torch.Tensor | np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Class map (Dn, Hn, Wn) uint8 in the case's native grid ``shape`` from one case's logits
    (K, D, H, W) at model scale.

    The class probabilities (softmax over K) are resized trilinearly and then arg-maxed (the
    one native-grid prediction: ``metrics.csv``, the prediction NIfTI and explain's Dice all
    use it); smoother boundaries than resizing the model-scale class map. Runs on the logits'
    device; ``== strokelrp.config.LESION`` gives the lesion mask.
    """
    scores = torch.as_tensor(logits).float()
    if scores.dim() != 4:
        raise ValueError(f"expected one case's logits (K, D, H, W), got {tuple(scores.shape)}")
    native = resize_volume(scores.softmax(dim=0), tuple(shape), mode="trilinear")
    return native.argmax(dim=0).to(torch.uint8).cpu().numpy()
