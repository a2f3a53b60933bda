"""`train --arch`: MONAI networks trained by the same loop, recorded in the run, rebuilt by
load_run and explained by the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from strokelrp.config import ARCHS, TrainConfig
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp import explain
from strokelrp.model import architectures
from strokelrp.train.checkpoint import build_model, load_run


def test_the_config_offers_exactly_the_architectures() -> None:
    assert architectures.ARCHS == ARCHS


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_maps_the_series_grid_to_two_logits(arch: str) -> None:
    grid = (16, 16, 32) if arch == "monai-basicunet" else (5, 16, 16)
    model = build_model(TrainConfig(data="d", series=grid, width=2, arch=arch)).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 6, *grid)).shape == (1, 2, *grid)


def test_grids_the_monai_unets_cannot_halve_are_refused() -> None:
    with pytest.raises(StrokeLRPError, match="divisible by 8"):
        TrainConfig(data="d", series=(5, 12, 16), arch="monai-unet")
    with pytest.raises(StrokeLRPError, match=">= 16"):
        TrainConfig(data="d", series=(5, 16, 16), arch="monai-basicunet")
    with pytest.raises(StrokeLRPError, match="arch must be one of"):
        TrainConfig(data="d", series="A", arch="resnet")


@pytest.mark.parametrize("arch", [a for a in ARCHS if a.startswith("monai-")])
def test_train_records_the_arch_and_load_run_rebuilds_it(tmp_path: Path, arch: str) -> None:
    """Each MONAI network trains an epoch through the CLI (checkpoints written: DynUNet's
    state_dict names its blocks twice), is rebuilt by load_run and explained by the engine."""
    from monai.networks import nets

    from strokelrp.cli import main
    from strokelrp.data.synth import synthesize_isles2017

    data = synthesize_isles2017(tmp_path / "data", 2, shape=(32, 16, 16), seed=3)
    out = tmp_path / "run"
    argv = [
        "train",
        str(data),
        "--series",
        "16x16x32",
        "--width",
        "2",
        "--epochs",
        "1",
        "--arch",
        arch,
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
    ]
    try:
        main(argv)
    except SystemExit as exit_:
        assert not exit_.code
    assert f'arch = "{arch}"' in (out / "config.toml").read_text()
    model, config = load_run(out)
    kind = {
        "monai-basicunet": nets.BasicUNet,
        "monai-unet": nets.UNet,
        "monai-dynunet": nets.DynUNet,
    }
    assert isinstance(model, kind[arch]) and config.arch == arch
    exp = explain(model, torch.rand(1, 6, 16, 16, 32), target="authors", rules="recommended")
    assert exp.relevance.shape == (1, 6, 16, 16, 32) and bool(exp.relevance.any())
