"""predict(): eval-mode logits, the caller's mode restored, no gradient kept."""

from __future__ import annotations

import pytest
import torch

from strokelrp.model import UNet3D
from strokelrp.train.predict import lesion_mask, predict


def test_predict_uses_running_statistics_and_restores_the_mode() -> None:
    torch.manual_seed(0)
    model = UNet3D(width=2)
    with torch.no_grad():  # give BatchNorm running statistics that differ from batch ones
        for _ in range(3):
            model(torch.rand(1, 6, 5, 8, 16) * 3)
    x = torch.rand(1, 6, 5, 8, 16)
    logits = predict(model, x)
    assert model.training  # restored
    assert logits.dtype == torch.float32 and logits.shape == (1, 2, 5, 8, 16)
    assert not logits.requires_grad
    with torch.no_grad():
        assert torch.equal(logits, model.eval()(x))
        assert not torch.allclose(logits, model.train()(x))
    assert lesion_mask(logits).shape == (1, 5, 8, 16)


def test_predict_rejects_a_missing_batch_axis() -> None:
    with pytest.raises(ValueError, match=r"\(B, 6, D, H, W\)"):
        predict(UNet3D(width=2), torch.rand(6, 5, 8, 8))
