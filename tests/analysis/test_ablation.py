"""Modality ablation: mean-filling, Dice drops, and a synthetic control a trained model ignores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from strokelrp.config import MODALITIES, TrainConfig
from strokelrp.core.masks import lesion_mask
from strokelrp.core.metrics import dice_score
from strokelrp.data.dataset import CaseDataset
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.inference import predict
from strokelrp.model.unet3d import UNet3D
from strokelrp.train.checkpoint import load_run
from strokelrp.train.loop import train
from strokelrp.trust.ablation import mean_filled, modality_ablation


def test_mean_filled_replaces_one_channel_by_its_mean() -> None:
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 1, 3, 4) ** 1.5
    for value in (x, torch.from_numpy(x)):
        out = np.asarray(mean_filled(value, 1))
        assert np.all(out[0] == x[0])
        assert np.allclose(out[1], x[1].mean()) and np.ptp(out[1]) == 0
        assert np.all(np.asarray(value) == x)  # a copy: the input is untouched


def test_ablation_matches_an_explicit_loop() -> None:
    torch.manual_seed(0)
    model = UNet3D(6, 2, width=2).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 4, 8, 8, generator=g)
    x[3, :, :4] += 2.0  # one channel matters a lot somewhere
    with torch.no_grad():  # about half of the voxels predicted lesion: changes can show
        logits = predict(model, x[None])[0]
        model.head.bias[1] -= float((logits[1] - logits[0]).median())
    label = (torch.rand(4, 8, 8, generator=g) > 0.6).long()
    got = modality_ablation(model, x, label, batch_size=3)
    base = lesion_mask(predict(model, x[None]))[0].numpy()
    truth = label.numpy() == 1
    for c in range(6):
        filled = x.clone()
        filled[c] = x[c].mean()
        pred = lesion_mask(predict(model, filled[None]))[0].numpy()
        assert got.filled_dice[c] == pytest.approx(dice_score(pred, truth))
        assert got.drop[c] == pytest.approx(dice_score(base, truth) - dice_score(pred, truth))
        assert got.change[c] == pytest.approx(1.0 - dice_score(pred, base))
    assert got.dice == pytest.approx(dice_score(base, truth))
    assert np.abs(got.change).max() > 0  # the test can see a change
    unlabelled = modality_ablation(model, x)
    assert np.isnan(unlabelled.dice) and np.array_equal(unlabelled.drop, got.change)


@pytest.mark.slow
def test_a_trained_model_ignores_the_control_and_uses_tmax(tmp_path: Path) -> None:
    """The synthetic control is verified by ablation: mean-filling it leaves the Dice alone.

    8 tiny cases with MTT replaced by noise, a width-4 U-Net trained 20 epochs (about 20 s on
    one CPU core). The Dice is pooled over the cases' voxels (per-case Dice of small lesions
    in so small a model moves by a few voxels); benchmarks/control_ablation.py measures the
    same on the demo's sizes (docs/benchmarks.md).
    """
    data = synthesize_isles2017(
        tmp_path / "data", 8, shape=(32, 32, 8), seed=0, varied_grids=True, control=["MTT"]
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(
            data=str(data), series=(8, 24, 24), width=4, epochs=20, seed=0, loss="dice_ce",
            lr=2e-3, device="cpu", cache_dir=str(tmp_path / "cache"),
        )  # fmt: skip
        (run,) = train(config, tmp_path / "run", progress=False, log=lambda _m: None)
        model, _ = load_run(run, device="cpu")
        cases = CaseDataset(data, config.series, cache_dir=config.cache_dir)
        counts = np.zeros((7, 3))  # (original + 6 filled, [overlap, predicted, truth])
        for i in range(len(cases)):
            x, y, _ = cases[i]
            truth = y.numpy() == 1
            for v, xv in enumerate([x] + [mean_filled(x, c) for c in range(6)]):
                pred = lesion_mask(predict(model, xv[None]))[0].numpy()
                counts[v] += [(pred & truth).sum(), pred.sum(), truth.sum()]
    finally:
        torch.set_num_threads(threads)
    dice = 2 * counts[:, 0] / (counts[:, 1] + counts[:, 2])
    drop = dict(zip(MODALITIES, dice[0] - dice[1:], strict=True))
    assert dice[0] > 0.6  # a model that segments, so that ignoring can be measured
    assert abs(drop["MTT"]) < 0.01, drop
    assert drop["Tmax"] > 0.3, drop  # while the signal-carrying channel matters a lot
