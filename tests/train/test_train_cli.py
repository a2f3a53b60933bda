"""The train and evaluate commands end to end on tiny synthetic data (width 2, 2 epochs)."""

from __future__ import annotations

import csv
import json
import math
import shlex
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli as cli

from strokelrp.config import TrainConfig
from strokelrp.data.dataset import CaseDataset
from strokelrp.inference import native_labels
from strokelrp.model import UNet3D
from strokelrp.run_files import RunDir
from strokelrp.train.checkpoint import load_run, save_checkpoint
from strokelrp.train.evaluate import evaluate


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_then_evaluate(synth4: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, out, err = cli(
        ["train", str(synth4), "--series", "8x16x16", "--out", str(run), "--width", "2",
         "--epochs", "2", "--val-fraction", "0.25", "--device", "cpu", "--seed", "1"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "trained 1 network(s)" in out and "epoch 2/2" in err
    assert TrainConfig.from_toml(run / "config.toml").seed == 1
    assert len(read_csv(run / "train_log.csv")) == 2

    code, out, err = cli(["evaluate", str(run), str(synth4), "--device", "cpu"], capsys)
    assert code == 0, err
    rows = read_csv(run / "metrics.csv")
    assert [r["case_id"] for r in rows] == ["1", "2", "4", "5"]
    assert sorted(r["split"] for r in rows) == ["train", "train", "train", "validation"]
    ds = CaseDataset(synth4, (8, 16, 16))
    for row, case in zip(rows, ds.cases, strict=True):  # true volume of the NATIVE label
        expected = case.label.sum() * np.prod(case.spacing) / 1000
        assert float(row["true_ml"]) == pytest.approx(expected)
    table = read_csv(run / "table1.csv")
    assert len(table) == 1 and table[0]["network"] == "8x16x16-1"
    assert float(table[0]["training_minutes"]) > 0
    dice = [float(r["dice"]) for r in rows]
    assert float(table[0]["mean_dice"]) == pytest.approx(sum(dice) / 4)
    assert "dice" in out and "valid" in out
    code, out, err = cli(["evaluate", str(run), str(synth4), "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)  # stdout is one JSON document; the text summary went to stderr
    (network,) = doc["networks"]
    assert network["name"] == "8x16x16-1" and doc["metrics"] == str(run / "metrics.csv")
    assert [c["dice"] for c in network["cases"]] == pytest.approx(dice)
    assert network["table1"]["mean_dice"] == pytest.approx(sum(dice) / 4)


def test_usage_and_input_errors(synth4: Path, tmp_path: Path, capsys) -> None:
    code, _, err = cli(["train", str(synth4), "--series", "Q", "--out", str(tmp_path)], capsys)
    assert code == 2 and "choose A, B, C, X" in err
    run = tmp_path / "run"
    args = ["train", str(synth4), "--series", "8x16x16", "--out", str(run), "--width", "2",
            "--epochs", "1", "--no-progress"]  # fmt: skip
    assert cli(args, capsys)[0] == 0
    code, _, err = cli([*args[:-1], "--width", "4", "--resume"], capsys)
    assert code == 1 and "error: cannot resume" in err and "width: the run has 2" in err
    code, _, err = cli(["evaluate", str(tmp_path), str(synth4)], capsys)
    assert code == 1 and "not a training run" in err


def test_a_network_that_predicts_nothing_is_flagged_collapsed(synth4: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = TrainConfig(data=str(synth4), series=(8, 16, 16), width=2, epochs=1)
    config.to_toml(run / "config.toml")
    model = UNet3D(width=2)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([5.0, -5.0]))  # background everywhere
    save_checkpoint(RunDir(run).checkpoints, epoch=1, config=config, model=model)
    [result] = evaluate(run, synth4, device="cpu", echo=None, progress=False)
    assert result.table1["collapsed"] is True
    assert all(r["dice"] == 0.0 and math.isnan(r["hd95_mm"]) for r in result.rows)
    assert all(r["pred_ml"] == 0.0 and r["true_ml"] > 0 for r in result.rows)
    assert read_csv(run / "table1.csv")[0]["collapsed"] == "True"
    loaded, _ = load_run(run)
    assert not loaded.training


def test_native_prediction_resizes_probabilities_back() -> None:
    """A lesion block covering the left half at the series scale covers the left half natively."""
    logits = torch.zeros(2, 2, 4, 4)
    logits[1, :, :, :2] = 5.0
    logits[1, :, :, 2:] = -5.0
    mask = native_labels(logits, (3, 8, 10)) == 1
    assert mask.shape == (3, 8, 10)
    assert mask[:, :, :5].all() and not mask[:, :, 5:].any()


TRAIN = ["--series", "8x16x16", "--width", "2", "--device", "cpu", "--no-progress"]


def test_bad_data_leave_no_run_folder_and_a_fixed_command_trains(
    synth4: Path, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth4, data)
    broken = next((data / "training_2").glob("*MR_MTT*/*.nii"))
    broken.write_bytes(b"not an image\n" * 40)
    run = tmp_path / "run"
    code, _, err = cli(["train", str(data), "--out", str(run), "--epochs", "1", *TRAIN], capsys)
    assert code == 1 and "error: case 2:" in err and "Traceback" not in err
    assert not run.exists()  # nothing that a later train (or --resume) would refuse
    code, _, err = cli(
        ["train", str(data), "--out", str(run), "--epochs", "1", "--cases", "1", "--cases", "4",
         *TRAIN], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert TrainConfig.from_toml(run / "config.toml").cases == ("1", "4")


def test_a_run_that_never_saved_a_checkpoint_is_started_anew(
    synth4: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"  # as left by a train that failed in its first epoch
    TrainConfig(data=str(synth4), series=(8, 16, 16), width=4, epochs=3).to_toml(
        run / "config.toml"
    )
    code, _, err = cli(["train", str(synth4), "--out", str(run), "--epochs", "1", *TRAIN], capsys)
    assert code == 0, err
    assert "never saved a checkpoint" in err
    assert TrainConfig.from_toml(run / "config.toml").width == 2


def test_zero_epochs_is_a_usage_error(synth4: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, _, err = cli(["train", str(synth4), "--out", str(run), "--epochs", "0", *TRAIN], capsys)
    assert code == 2 and "--epochs" in err
    assert not run.exists()
    code, _, err = cli(["train", str(synth4), "--out", str(run), "--series", "2x2x2"], capsys)
    assert code == 1 and err.startswith("error: invalid training config: series 2x2x2 is too")
    assert not run.exists()


def test_resume_takes_the_runs_own_settings(synth4: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", str(synth4), "--out", str(run), "--seed", "3", "--val-fraction", "0.25",
            "--lr", "0.001", "--epochs", "1", *TRAIN]  # fmt: skip
    assert cli(args, capsys)[0] == 0
    before = TrainConfig.from_toml(run / "config.toml")
    # no --series, --width, --seed, --lr or --val-fraction: all come from the run
    code, _, err = cli(["train", str(synth4), "--out", str(run), "--resume", "--epochs", "2",
                        "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    assert "resuming after epoch 1 of 2" in err
    after = TrainConfig.from_toml(run / "config.toml")
    assert after == replace(before, epochs=2)
    assert [int(r["epoch"]) for r in read_csv(run / "train_log.csv")] == [1, 2]
    # no --epochs either: the run's own 2, so there is nothing left to do
    code, out, err = cli(["train", str(synth4), "--out", str(run), "--resume"], capsys)
    assert code == 0 and "nothing to do" in err
    assert "trained" not in out  # nothing was trained: no "trained 1 network(s)" after it
    code, out, err = cli(["train", str(synth4), "--out", str(run), "--resume", "--epochs", "1"],
                         capsys)  # fmt: skip
    assert code == 0 and "already trained 2 epochs (--epochs 1): nothing to do" in err
    assert out == ""
    # an option given and contradicting the run is refused as before
    code, _, err = cli(["train", str(synth4), "--out", str(run), "--resume", "--seed", "4"], capsys)
    assert code == 1 and "seed: the run has 3" in err
    # without a run to resume, --series is needed
    code, _, err = cli(["train", str(synth4), "--out", str(tmp_path / "new")], capsys)
    assert code == 2 and "--series is required" in err


def test_ctrl_c_prints_the_resume_command_and_it_works(
    synth4: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strokelrp.train.loop as loop

    real_epoch = loop.run_epoch
    calls = []

    def interrupted_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of epoch 2
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "run_epoch", interrupted_in_epoch_2)
    run = tmp_path / "run"
    code, _, err = cli(["train", str(synth4), "--out", str(run), "--epochs", "3", *TRAIN], capsys)
    assert code == 130
    hint = err.strip().splitlines()[-1]
    assert hint.startswith("interrupted; resume with: strokelrp train ")
    monkeypatch.setattr(loop, "run_epoch", real_epoch)
    argv = shlex.split(hint.removeprefix("interrupted; resume with: strokelrp "))
    assert argv == ["train", str(synth4), "--out", str(run), "--resume"]
    code, _, err = cli(argv, capsys)
    assert code == 0 and "resuming after epoch 1 of 3" in err
    assert [int(r["epoch"]) for r in read_csv(run / "train_log.csv")] == [1, 2, 3]
