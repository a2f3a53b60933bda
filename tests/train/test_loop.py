"""The training loop: exact resume, refusals, repeats layout, split, log, losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from strokelrp.errors import StrokeLRPError
from strokelrp.run_files import RunDir
from strokelrp.train.cases import split_ids
from strokelrp.train.checkpoint import load_run, read_checkpoint
from strokelrp.train.loop import (
    dice_cross_entropy,
    epoch_order,
    shard,
    train,
)

from .helpers import toy_cases, toy_config


def run(config, out: Path, resume: bool = False, n: int = 3) -> list[str]:
    messages: list[str] = []
    train(config, out, resume, dataset=toy_cases(n), progress=False, log=messages.append)
    return messages


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load(path.read_bytes())


def test_two_epochs_then_resume_to_three_is_bit_identical(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path, epochs=3, val_fraction=0.3)
    run(cfg, tmp_path / "straight")
    run(toy_config(tmp_path, epochs=2, val_fraction=0.3), tmp_path / "split")
    messages = run(cfg, tmp_path / "split", resume=True)
    assert any("resuming after epoch 2 of 3" in m for m in messages)
    a = tensors(tmp_path / "straight" / "checkpoints" / "last.safetensors")
    b = tensors(tmp_path / "split" / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("optimizer/") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log_a, log_b = (
        RunDir(tmp_path / "straight").read_train_log(),
        RunDir(tmp_path / "split").read_train_log(),
    )
    assert [r["epoch"] for r in log_b] == [1, 2, 3]
    for ra, rb in zip(log_a, log_b, strict=True):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {
            k: v for k, v in rb.items() if k != "seconds"
        }


def test_train_leaves_the_callers_random_streams_and_cudnn_setting(tmp_path: Path) -> None:
    """train() seeds the global streams inside its scope only: the caller's torch, numpy and
    Python streams and cudnn.benchmark are as before, and what the caller drew before does
    not change the weights."""
    import random

    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(5)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    benchmark = torch.backends.cudnn.benchmark
    run(toy_config(tmp_path, epochs=1), tmp_path / "a")
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]
    assert torch.backends.cudnn.benchmark == benchmark
    torch.rand(10), np.random.rand(3), random.random()  # the caller draws: no effect inside
    run(toy_config(tmp_path, epochs=1), tmp_path / "b")
    a = tensors(tmp_path / "a" / "checkpoints" / "last.safetensors")
    b = tensors(tmp_path / "b" / "checkpoints" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_files_and_log(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(toy_config(tmp_path, val_fraction=0.3), out)
    assert (out / "config.toml").exists() and (out / "split.json").exists()
    split = json.loads((out / "split.json").read_text())
    assert len(split["validation"]) == 1  # round(0.3 * 3)
    assert sorted(split["train"] + split["validation"]) == ["1", "2", "3"]
    header = (out / "train_log.csv").read_text().splitlines()[0]
    assert header == "epoch,loss,train_dice_trainmode,val_dice,seconds"
    rows = RunDir(out).read_train_log()
    assert len(rows) == 2 and all(0 <= r["train_dice_trainmode"] <= 1 for r in rows)
    assert all(r["val_dice"] is not None and r["seconds"] > 0 for r in rows)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == [
        "epoch-001.json",
        "epoch-001.safetensors",
        "epoch-002.json",
        "epoch-002.safetensors",
        "last.json",
        "last.safetensors",
    ]
    model, cfg = load_run(out)
    assert not model.training and cfg.epochs == 2 and cfg.data == str(tmp_path / "data")


def test_no_validation_column_is_empty(tmp_path: Path) -> None:
    run(toy_config(tmp_path, epochs=1), tmp_path / "run")
    assert RunDir(tmp_path / "run").read_train_log()[0]["val_dice"] is None


def test_resume_without_checkpoint_starts_from_scratch(tmp_path: Path) -> None:
    messages = run(toy_config(tmp_path, epochs=1), tmp_path / "run", resume=True)
    assert any("starting from scratch" in m for m in messages)
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors").epoch == 1


def test_resume_with_no_epochs_left_does_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(toy_config(tmp_path), out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    config_text = (out / "config.toml").read_text()
    messages = run(toy_config(tmp_path, epochs=1), out, resume=True)
    assert any("already trained 2 epochs (--epochs 1): nothing to do" in m for m in messages)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()} == before
    assert (out / "config.toml").read_text() == config_text


@pytest.mark.parametrize(
    ("change", "field"),
    [({"width": 4}, "width"), ({"series": (8, 16, 8)}, "series"), ({"seed": 3}, "seed")],
)
def test_contradicting_config_is_refused(tmp_path: Path, change: dict, field: str) -> None:
    out = tmp_path / "run"
    run(toy_config(tmp_path, epochs=1), out)
    with pytest.raises(StrokeLRPError, match=rf"cannot resume .*\n  {field}: the run has"):
        run(toy_config(tmp_path, epochs=2, **change), out, resume=True)


def test_other_data_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(toy_config(tmp_path, epochs=1), out)
    other = toy_config(tmp_path, epochs=2, data=str(tmp_path / "elsewhere"))
    with pytest.raises(StrokeLRPError, match="data: the run has"):
        run(other, out, resume=True)


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(toy_config(tmp_path, epochs=1), out)
    with pytest.raises(StrokeLRPError, match=r"already holds a training run.*--resume"):
        run(toy_config(tmp_path, epochs=1), out)


def test_repeats_train_networks_with_consecutive_seeds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(toy_config(tmp_path, epochs=1, repeats=2, seed=4, val_fraction=0.3), out)
    m1, c1 = load_run(out / "net-1")
    m2, c2 = load_run(out / "net-2")
    assert (c1.seed, c2.seed) == (4, 5) and c1.repeats == c2.repeats == 1
    assert not torch.equal(m1.head.weight, m2.head.weight)
    split1 = json.loads((out / "net-1" / "split.json").read_text())
    assert split1 == json.loads((out / "net-2" / "split.json").read_text())
    with pytest.raises(StrokeLRPError, match="holds 2 networks"):
        load_run(out)


def test_wrong_data_shape_is_named(tmp_path: Path) -> None:
    with pytest.raises(StrokeLRPError, match=r"series 8x16x8 needs \(8, 16, 8\)"):
        run(toy_config(tmp_path, series=(8, 16, 8)), tmp_path / "run")


def test_split_is_deterministic_per_seed_and_order_free() -> None:
    ids = [str(i) for i in range(1, 11)]
    a = split_ids(ids, 0.3, seed=1)
    assert a == split_ids(list(reversed(ids)), 0.3, seed=1)
    assert len(a[1]) == 3 and sorted(a[0] + a[1], key=int) == ids
    assert a != split_ids(ids, 0.3, seed=2)
    with pytest.raises(StrokeLRPError, match="none to train on"):
        split_ids(["1", "2"], 0.9, seed=0)
    # named ids in the data layer's natural order (case_2 before case_10), as load_cases
    train_ids, held = split_ids(["case_10", "case_2", "b", "case_1"], 0, seed=0)
    assert train_ids == ["b", "case_1", "case_2", "case_10"] and held == []


def test_epoch_order_and_shards() -> None:
    assert np.array_equal(epoch_order(5, 0, 3), epoch_order(5, 0, 3))
    assert not np.array_equal(epoch_order(20, 0, 1), epoch_order(20, 0, 2))
    order = [4, 0, 3, 1, 2]
    assert shard(order, 0, 2) == [4, 3, 2] and shard(order, 1, 2) == [0, 1, 4]
    assert shard(order, 0, 1) == order


def test_dice_ce_adds_the_soft_dice_of_the_lesion_class() -> None:
    logits = torch.zeros(1, 2, 1, 1, 2)  # p(lesion) = 0.5 everywhere
    y = torch.tensor([[[[1, 0]]]])
    ce = torch.log(torch.tensor(2.0))
    soft = (2 * 0.5 + 1e-5) / (1.0 + 1.0 + 1e-5)
    assert dice_cross_entropy(logits, y).item() == pytest.approx(float(ce) + 1 - soft, rel=1e-5)


def test_dice_ce_training_logs_the_loss_and_dice_of_its_step(tmp_path: Path) -> None:
    """One case, one epoch, one step: the logged loss and train-mode Dice are those of the
    initial network's forward pass, recomputed here by hand (CE + 1 - soft Dice; hard Dice
    by counting voxels)."""
    from strokelrp.train.checkpoint import build_model

    config = toy_config(tmp_path, epochs=1, loss="dice_ce")
    run(config, tmp_path / "run", n=1)
    row = RunDir(tmp_path / "run").read_train_log()[0]
    torch.manual_seed(config.seed)  # as the loop seeds before building the network
    model = build_model(config).train()
    x, y, _ = toy_cases(1)[0]
    logits = model(x[None]).detach().double()[0]  # (2, D, H, W), gradients on: same kernels
    p = torch.softmax(logits, dim=0)
    t = (y == 1).double()
    ce = -(torch.log(p[1]) * t + torch.log(p[0]) * (1 - t)).mean()
    soft = (2 * (p[1] * t).sum() + 1e-5) / (p[1].sum() + t.sum() + 1e-5)
    assert row["loss"] == pytest.approx(float(ce + 1 - soft), rel=1e-4)
    pred = (logits[1] > logits[0]).numpy()
    truth = y.numpy() == 1
    hard = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert row["train_dice_trainmode"] == pytest.approx(hard, rel=1e-6)
    assert row["val_dice"] is None


def test_checkpoint_every_saves_every_nth_and_the_last_epoch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(toy_config(tmp_path, epochs=3, checkpoint_every=2), out)
    names = sorted(p.name for p in (out / "checkpoints").glob("epoch-*.json"))
    assert names == ["epoch-002.json", "epoch-003.json"]
    assert len(RunDir(out).read_train_log()) == 3
