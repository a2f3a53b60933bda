"""predict(): eval-mode logits, the caller's mode restored, no gradient kept; native_labels()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strokelrp.config import LESION
from strokelrp.inference import native_labels, predict
from strokelrp.model import UNet3D


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


def test_predict_rejects_a_missing_batch_axis() -> None:
    with pytest.raises(ValueError, match=r"\(B, 6, D, H, W\)"):
        predict(UNet3D(width=2), torch.rand(6, 5, 8, 8))


def test_native_labels_resizes_probabilities_then_takes_the_argmax() -> None:
    """Two model-scale slices, background then lesion, doubled to four native slices: with
    align_corners=False native slice k sits at model coordinate (k + 0.5) / 2 - 0.5, so slices
    0 and 1 lie nearer slice 0 (background) and 2 and 3 nearer slice 1 (lesion), worked out
    by hand; H and W stay (no resize there)."""
    logits = torch.zeros(2, 2, 3, 4)
    logits[LESION, 0] = -4.0  # background slice
    logits[LESION, 1] = 4.0  # lesion slice
    labels = native_labels(logits, (4, 3, 4))
    assert labels.dtype == np.uint8 and labels.shape == (4, 3, 4)
    assert labels[:, 0, 0].tolist() == [0, 0, LESION, LESION]
    assert (labels == labels[:, :1, :1]).all()
    # the same from numpy logits; one case only
    assert np.array_equal(native_labels(logits.numpy(), (4, 3, 4)), labels)
    with pytest.raises(ValueError, match=r"\(K, D, H, W\)"):
        native_labels(logits[None], (4, 3, 4))
