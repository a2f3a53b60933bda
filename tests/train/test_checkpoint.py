"""Checkpoints: exact round trip, consistency of the weights/sidecar pair, no unpickling."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from strokelrp.config import TrainConfig
from strokelrp.errors import StrokeLRPError
from strokelrp.model import UNet3D
from strokelrp.run_files import RunDir
from strokelrp.train.checkpoint import (
    IncompleteCheckpointError,
    UnsafeCheckpointError,
    latest_complete,
    load_optimizer_state,
    load_run,
    read_checkpoint,
    save_checkpoint,
)


def trained_pair(width: int = 2) -> tuple[UNet3D, torch.optim.Adam]:
    torch.manual_seed(0)
    model = UNet3D(width=width)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.9))
    for _ in range(2):
        loss = model(torch.rand(1, 6, 5, 8, 16)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def config(tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(data=str(tmp_path / "data"), series="A", width=2, **kw)


def test_round_trip_restores_model_optimizer_and_rng(tmp_path: Path) -> None:
    model, opt = trained_pair()
    cfg = config(tmp_path)
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    save_checkpoint(
        tmp_path / "ck", epoch=2, config=cfg, model=model, optimizer=opt, log=[{"a": 1}]
    )
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ck = read_checkpoint(tmp_path / "ck" / "epoch-002.safetensors")
    assert ck.epoch == 2 and ck.config == cfg and ck.meta["log"] == [{"a": 1}]
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model_state[k], v), k
    fresh = UNet3D(width=2)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1.0)
    fresh.load_state_dict(ck.model_state)
    load_optimizer_state(fresh_opt, ck.optimizer_state)
    assert fresh_opt.param_groups[0]["betas"] == (0.5, 0.9)
    assert fresh_opt.param_groups[0]["lr"] == 2e-4
    for p_old, p_new in zip(model.parameters(), fresh.parameters(), strict=True):
        s_old, s_new = opt.state[p_old], fresh_opt.state[p_new]
        assert torch.equal(s_old["step"], s_new["step"])
        assert torch.equal(s_old["exp_avg_sq"], s_new["exp_avg_sq"])
    from strokelrp.train.checkpoint import restore_rng

    restore_rng(ck.meta["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_load_run_gives_eval_mode_model_and_config(tmp_path: Path) -> None:
    model, opt = trained_pair()
    cfg = config(tmp_path)
    run = tmp_path / "run"
    cfg.to_toml(run / "config.toml")
    save_checkpoint(RunDir(run).checkpoints, epoch=1, config=cfg, model=model, optimizer=opt)
    loaded, loaded_cfg = load_run(run)
    assert not loaded.training and loaded_cfg == cfg and loaded.width == 2
    x = torch.rand(1, 6, 5, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    by_epoch, _ = load_run(run, checkpoint=1)
    assert torch.equal(by_epoch.head.weight, model.head.weight)


def test_sidecar_that_does_not_match_is_incomplete_and_skipped(tmp_path: Path) -> None:
    """Killed between writing epoch 3's weights and its sidecar: resume finds epoch 2."""
    model, opt = trained_pair()
    cfg, ck = config(tmp_path), tmp_path / "ck"
    for epoch in (1, 2, 3):
        save_checkpoint(ck, epoch=epoch, config=cfg, model=model, optimizer=opt)
    with torch.no_grad():
        model.head.weight.add_(1.0)
    newer = safetensors.torch.save({f"model/{k}": v for k, v in model.state_dict().items()})
    (ck / "epoch-003.safetensors").write_bytes(newer)  # new weights, old sidecars
    (ck / "last.safetensors").unlink()
    (ck / "last.safetensors").write_bytes(newer)
    with pytest.raises(IncompleteCheckpointError, match="do not match"):
        read_checkpoint(ck / "last.safetensors")
    found = latest_complete(ck)
    assert found is not None and found.epoch == 2
    (ck / "epoch-002.json").unlink()  # a weights file without any sidecar
    assert latest_complete(ck).epoch == 1


def test_keep_prunes_old_epochs_but_not_last(tmp_path: Path) -> None:
    model, opt = trained_pair()
    cfg, ck = config(tmp_path), tmp_path / "ck"
    for epoch in (1, 2, 3):
        save_checkpoint(ck, epoch=epoch, config=cfg, model=model, optimizer=opt, keep=2)
    names = sorted(p.name for p in ck.iterdir())
    assert names == [
        "epoch-002.json",
        "epoch-002.safetensors",
        "epoch-003.json",
        "epoch-003.safetensors",
        "last.json",
        "last.safetensors",
    ]


class _WritesMarker:
    """Unpickling this object would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["pickle", "pickle0", "torch.save"])
def test_pickle_checkpoint_is_refused_and_never_run(tmp_path: Path, kind: str) -> None:
    model, opt = trained_pair()
    cfg, run = config(tmp_path), tmp_path / "run"
    cfg.to_toml(run / "config.toml")
    save_checkpoint(RunDir(run).checkpoints, epoch=1, config=cfg, model=model, optimizer=opt)
    marker = tmp_path / "marker"
    last = run / "checkpoints" / "last.safetensors"
    last.unlink()
    if kind == "torch.save":
        torch.save({"w": _WritesMarker(marker)}, last)
    else:
        last.write_bytes(
            pickle.dumps(_WritesMarker(marker), protocol=0 if kind == "pickle0" else 4)
        )
    # A sidecar whose hash matches, so only the format check stands in the way.
    meta_path = run / "checkpoints" / "last.json"
    meta = json.loads(meta_path.read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(last.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    what = "zip archive" if kind == "torch.save" else "pickle"
    with pytest.raises(UnsafeCheckpointError, match=what):
        load_run(run)
    with pytest.raises(UnsafeCheckpointError, match="never unpickled"):
        read_checkpoint(last)
    assert not marker.exists()
    assert issubclass(UnsafeCheckpointError, StrokeLRPError)


def test_repeats_run_asks_for_one_network(tmp_path: Path) -> None:
    cfg, run = config(tmp_path, repeats=2), tmp_path / "run"
    cfg.to_toml(run / "config.toml")
    with pytest.raises(StrokeLRPError, match="net-1"):
        load_run(run)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    cfg, run = config(tmp_path), tmp_path / "run"
    cfg.to_toml(run / "config.toml")
    with pytest.raises(StrokeLRPError, match="no complete checkpoint"):
        load_run(run)


def test_a_module_reachable_by_two_paths_is_stored_once_and_restored(tmp_path: Path) -> None:
    """MONAI's DynUNet lists its blocks twice in its state_dict (``skip_layers`` holds the same
    modules as ``input_block``, ``downsamples``, ...): safetensors refuses shared tensors, so
    each is stored once and its other names come back on loading (strict load, same logits)."""
    from strokelrp.model.architectures import build_network

    torch.manual_seed(0)
    model = build_network("monai-dynunet", 6, 2, 2).eval()
    state = model.state_dict()
    cfg = config(tmp_path, arch="monai-dynunet")
    run = tmp_path / "run"
    cfg.to_toml(run / "config.toml")
    save_checkpoint(RunDir(run).checkpoints, epoch=1, config=cfg, model=model)
    weights = run / "checkpoints" / "epoch-001.safetensors"
    stored = safetensors.torch.load(weights.read_bytes())
    aliases = json.loads(weights.with_suffix(".json").read_text())["model_aliases"]
    assert aliases and len(stored) + len(aliases) == len(state)
    for alias, name in aliases.items():
        assert f"model/{name}" in stored and f"model/{alias}" not in stored
    assert "model/skip_layers.downsample.conv1.conv.weight" not in stored
    ck = read_checkpoint(weights)
    assert set(ck.model_state) == set(state)
    fresh = build_network("monai-dynunet", 6, 2, 2).eval()
    fresh.load_state_dict(ck.model_state, strict=True)
    x = torch.rand(1, 6, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    loaded, _ = load_run(run)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
