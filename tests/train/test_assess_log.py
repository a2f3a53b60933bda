"""train --assess-every: trust measures per N epochs, without changing the training itself."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import safetensors.torch

from strokelrp.errors import StrokeLRPError
from strokelrp.run_files import ASSESS_LOG_COLUMNS as LOG_COLUMNS
from strokelrp.run_files import RunDir
from strokelrp.train.loop import train
from strokelrp.trust_measures import MEASURES

from .helpers import toy_cases, toy_config


def _train(config, out: Path, resume: bool = False) -> None:
    train(config, out, resume, dataset=toy_cases(4), progress=False, log=lambda _m: None)


def _weights(run: Path) -> dict:
    return safetensors.torch.load((run / "checkpoints" / "last.safetensors").read_bytes())


def test_assessment_every_epoch_leaves_training_unchanged_and_resumes(tmp_path: Path) -> None:
    common = {"epochs": 2, "val_fraction": 0.5, "assess_method": "gradient_x_input"}
    common |= {"loss": "ce", "lr": 1e-2, "width": 4}  # a toy model that predicts some lesion
    _train(toy_config(tmp_path, **common), tmp_path / "plain")
    _train(toy_config(tmp_path, assess_every=1, assess_cases=1, **common), tmp_path / "watched")
    # the same trajectory: assessing restores the random streams and clears the gradients
    plain, watched = _weights(tmp_path / "plain"), _weights(tmp_path / "watched")
    assert plain.keys() == watched.keys()
    assert all(plain[k].equal(watched[k]) for k in plain)
    assert [r["loss"] for r in RunDir(tmp_path / "plain").read_train_log()] == [
        r["loss"] for r in RunDir(tmp_path / "watched").read_train_log()
    ]
    assert not (tmp_path / "plain" / "assess_log.csv").exists()

    rows = RunDir(tmp_path / "watched").read_assess_log()
    header = (tmp_path / "watched" / "assess_log.csv").read_text().splitlines()[0]
    assert header.split(",") == list(LOG_COLUMNS)
    assert [(r["epoch"], r["split"], r["method"]) for r in rows] == [
        (1, "held-out", "gradient_x_input"),
        (2, "held-out", "gradient_x_input"),
    ]
    assert rows[0]["case"] == rows[1]["case"]  # the same held-out case each time
    last = rows[-1]  # by epoch 2 the model predicts lesion voxels: every measure is defined
    assert 0.0 <= last["brain_share"] <= 1 + 1e-9 and 0.0 <= last["lesion_share"] <= 1 + 1e-9
    assert all(math.isfinite(last[m]) for m in MEASURES), last
    assert last["morf_aopc"] > last["random_aopc"]  # gradient x input beats a random order

    # resume from epoch 1: the log keeps epoch 1 and gets epoch 2 again, as straight through
    _train(toy_config(tmp_path, **{**common, "epochs": 1}, assess_every=1, assess_cases=1),
           tmp_path / "resumed")  # fmt: skip
    _train(toy_config(tmp_path, assess_every=1, assess_cases=1, **common), tmp_path / "resumed",
           resume=True)  # fmt: skip
    again = RunDir(tmp_path / "resumed").read_assess_log()
    assert [r["epoch"] for r in again] == [1, 2]
    for a, b in zip(again, rows, strict=True):
        assert a["morf_aopc"] == pytest.approx(b["morf_aopc"], rel=1e-6, abs=1e-9, nan_ok=True)


def test_every_second_epoch_on_training_cases_without_a_split(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path, epochs=2, assess_every=2)  # the default method, lrp:epsilon
    _train(cfg, tmp_path / "r")
    rows = RunDir(tmp_path / "r").read_assess_log()
    assert [(r["epoch"], r["split"], r["method"]) for r in rows] == [
        (2, "train", "lrp:epsilon")
    ] * 2
    assert len({r["case"] for r in rows}) == 2


def test_a_bad_method_fails_before_training(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path, epochs=1, assess_every=1, assess_method="lrp:nonsense")
    with pytest.raises(StrokeLRPError):
        _train(cfg, tmp_path / "bad")
    assert not (tmp_path / "bad" / "checkpoints").exists()
