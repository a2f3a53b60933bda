"""The run folder (RunDir): distinct names, round trips of every file it reads and writes, and
one clear error naming the file when a run's file is missing or malformed."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch

from strokelrp import run_files
from strokelrp.config import TrainConfig
from strokelrp.errors import StrokeLRPError
from strokelrp.provenance import read_sidecar
from strokelrp.run_files import RunDir, read_csv, read_explanation
from strokelrp.trust_measures import MEASURES


def _config(tmp_path: Path, **kw) -> TrainConfig:
    values = {"data": str(tmp_path / "data"), "series": (8, 16, 16), "width": 2, "epochs": 2}
    return TrainConfig(**(values | kw))


def test_names_are_distinct_and_network_folders_match_the_glob(tmp_path: Path) -> None:
    names = [
        run_files.CONFIG, run_files.SPLIT, run_files.TRAIN_LOG, run_files.ASSESS_LOG,
        run_files.CHECKPOINTS, run_files.METRICS, run_files.TABLE1, str(run_files.SWEEP_TABLE),
        run_files.EXPLANATIONS, run_files.REPORT, run_files.FIGURES, run_files.ASSESS_DIR,
    ]  # fmt: skip
    assert len(set(names)) == len(names)
    for k in (1, 2, 10):
        run_files.network_dir(tmp_path, k).mkdir()
    found = sorted(p.name for p in tmp_path.glob(run_files.NETWORK_GLOB))
    assert found == ["net-1", "net-10", "net-2"]
    assert RunDir(tmp_path).network(3).path == tmp_path / "net-3"
    assert RunDir(tmp_path).label(tmp_path / "net-3") == f"{tmp_path.name}/net-3"
    assert RunDir(tmp_path).label(tmp_path) == tmp_path.name


def test_config_split_and_networks_round_trip(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert not run.is_run() and run.read_split() == {} and run.validation_ids() is None
    config = _config(tmp_path, repeats=2)
    run.write_config(config)
    assert run.is_run() and run.read_config() == config
    assert [n.path for n in run.networks()] == [tmp_path / "run" / "net-1", run.path / "net-2"]
    record = {"train": ["1", "2"], "validation": ["3"], "data": {"root": "/d", "fingerprints": {}}}
    run.write_split(record)
    assert run.read_split() == record and run.validation_ids() == ["3"]


def test_logs_round_trip_with_empty_cells(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_train_log() == [] and run.read_assess_log() == []
    rows = [
        {"epoch": 1, "loss": 0.5, "train_dice_trainmode": 0.25, "val_dice": None, "seconds": 1.5},
        {"epoch": 2, "loss": 1 / 3, "train_dice_trainmode": 0.1, "val_dice": 0.2, "seconds": 2.0},
    ]
    run.write_train_log(rows)
    assert run.read_train_log() == rows  # floats written with every digit
    header = run.train_log.read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == list(run_files.TRAIN_LOG_COLUMNS)
    assessed = [
        {"epoch": 2, "split": "held-out", "case": "7", "method": "lrp:epsilon", "seconds": 3.0}
        | {m: k / 7 for k, m in enumerate(MEASURES)}
    ]
    assessed[0]["ablation_rho"] = math.nan  # undefined: an empty cell, NaN again when read
    run.write_assess_log(assessed)
    (back,) = run.read_assess_log()
    assert math.isnan(back.pop("ablation_rho"))
    assert back == {k: v for k, v in assessed[0].items() if k != "ablation_rho"}
    assert ",," in run.assess_log.read_text(encoding="utf-8").splitlines()[1] + ","


def test_tables_have_their_sidecar_and_sweep_round_trips(tmp_path: Path) -> None:
    from strokelrp.analysis.table import COLUMNS

    run = RunDir(tmp_path)
    record = {"command": "evaluate", "data": {"root": "/d"}}
    run.write_table(run.metrics, "network,case_id\nA1,7\n", record)
    assert run.read_metrics() == [{"network": "A1", "case_id": "7"}]
    assert read_sidecar(run.metrics) == record
    row = {c: "" for c in COLUMNS} | {"run": "r", "kind": "raw", "setting": "raw", "case": "1"}
    run.write_sweep([row], {"command": "sweep"})
    (back,) = run.read_sweep()
    assert (back["run"], back["setting"], back["case"]) == ("r", "raw", "1")
    assert run.outputs() == [run.metrics, run.sweep_table]
    assert read_sidecar(run.sweep_table) == {"command": "sweep"}
    (run.path / "assess").mkdir()
    (run.path / "assess" / "assess.csv").write_text("case,method\n")
    assert run.outputs() == [run.metrics, run.sweep_table, run.path / "assess" / "assess.csv"]


def test_checkpoints_round_trip_through_the_safe_loader(tmp_path: Path) -> None:
    from strokelrp.train.checkpoint import (
        UnsafeCheckpointError,
        build_model,
        latest_complete,
        resolve_checkpoint,
        save_checkpoint,
    )

    run = RunDir(tmp_path / "run")
    config = _config(tmp_path)
    run.write_config(config)
    assert not run.has_checkpoints() and latest_complete(run.checkpoints) is None
    model = build_model(config)
    save_checkpoint(run.checkpoints, epoch=1, config=config, model=model)
    assert run.has_checkpoints()
    ckpt = resolve_checkpoint(run.path)
    assert ckpt.epoch_path == run.checkpoints / f"{run_files.epoch_name(1)}.safetensors"
    assert ckpt.epoch == 1 and run.owns_checkpoint(ckpt.path)
    state = model.state_dict()
    assert all(torch.equal(ckpt.model_state[k], state[k]) for k in state)
    assert resolve_checkpoint(run.path, 1).path == ckpt.path.with_name("epoch-001.safetensors")
    # a pickle under a checkpoint's name is refused before any byte of it is interpreted
    (run.checkpoints / "epoch-002.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(UnsafeCheckpointError, match=r"epoch-002\.safetensors: a pickle stream"):
        resolve_checkpoint(run.path, 2)


def test_missing_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    with pytest.raises(StrokeLRPError, match=rf"{run.path}: not a training run \(no config"):
        run.read_config()
    with pytest.raises(StrokeLRPError, match=rf"{run.path}: not a training run"):
        run.networks()
    run.config.write_text("series = [1, 2\n")
    with pytest.raises(StrokeLRPError, match=rf"{run.config}: not valid TOML"):
        run.read_config()
    run.split.write_text("{not json")
    with pytest.raises(StrokeLRPError, match=rf"{run.split}: not valid JSON"):
        run.read_split()
    run.split.write_text('{"train": "1"}')
    with pytest.raises(StrokeLRPError, match=rf"{run.split}: not a split record"):
        run.read_split()
    run.train_log.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(StrokeLRPError, match=rf"{run.train_log}: not a training log, missing"):
        run.read_train_log()
    run.write_train_log([{"epoch": 1, "loss": 0.5}])
    run.train_log.write_text(run.train_log.read_text().replace("0.5", "half"))
    with pytest.raises(StrokeLRPError, match=rf"{run.train_log}, line 2: not a number"):
        run.read_train_log()
    run.assess_log.write_text("epoch,case\n")
    with pytest.raises(StrokeLRPError, match=rf"{run.assess_log}: not an assessment log"):
        run.read_assess_log()
    with pytest.raises(StrokeLRPError, match=rf"{run.metrics}: no such file"):
        run.read_metrics()
    with pytest.raises(StrokeLRPError, match=rf"{run.path / 'sweep' / 'sweep.csv'}: cannot"):
        run.read_sweep()
    from strokelrp.train.checkpoint import resolve_checkpoint

    with pytest.raises(StrokeLRPError, match=rf"{run.checkpoints}"):
        resolve_checkpoint(run.path)
    bad = run.explanation_dir("7") / run_files.EXPLANATION
    bad.parent.mkdir(parents=True)
    bad.write_text("[1]")
    assert run.explanation_summaries() == [bad] and run.explained_cases() == [bad.parent]
    with pytest.raises(StrokeLRPError, match=rf"{bad}: not an explanation record"):
        read_explanation(bad)
    (run.path / "t.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(StrokeLRPError, match=r"t.csv: cannot read"):
        read_csv(run.path / "t.csv")
