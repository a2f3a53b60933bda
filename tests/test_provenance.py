"""Traceable outputs: every output records its data, case files, checkpoint and epoch, rules
and versions; mixed provenance (another run's checkpoint, another data set's cases with the
same ids, a sweep resumed after training went on) is refused or labelled."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli as cli
from run_helpers import train_quietly

import strokelrp
from strokelrp.config import TrainConfig
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import DEFAULT_PRESET, preset
from strokelrp.provenance import read_sidecar, rules_record, sidecar_path
from strokelrp.run_files import RunDir
from strokelrp.train.checkpoint import (
    build_model,
    latest_complete,
    read_checkpoint,
    save_checkpoint,
)
from strokelrp.train.evaluate import evaluate


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two data sets with the same case ids (1, 2, 4), a tiny run trained on the first, and
    another run."""
    root = tmp_path_factory.mktemp("prov")
    data = synthesize_isles2017(root / "data", 3, shape=(16, 16, 5), seed=1)
    other = synthesize_isles2017(root / "other", 3, shape=(16, 16, 5), seed=2)
    config = TrainConfig(
        data=str(data), series=(6, 16, 16), width=2, epochs=1, val_fraction=0.34,
        device="cpu", cache_dir=str(root / "cache"),
    )  # fmt: skip
    run_a = train_quietly(config, root / "runA")
    run_b = root / "runB"  # another run: an untrained network is enough
    config.to_toml(run_b / "config.toml")
    save_checkpoint(RunDir(run_b).checkpoints, epoch=1, config=config, model=build_model(config))
    runs = {"runA": run_a, "runB": run_b}
    return {"root": root, "data": data, "other": other, **runs}


def _fresh_run(world, tmp_path: Path, name: str = "runA") -> Path:
    run = tmp_path / name
    shutil.copytree(world[name], run)
    return run


def _splits(run: Path) -> dict[str, str]:
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    return {
        r.split(",")[header.index("case_id")]: r.split(",")[header.index("split")] for r in rows[1:]
    }


def test_evaluate_records_data_cases_checkpoint_and_versions(world, tmp_path) -> None:
    run = _fresh_run(world, tmp_path)
    evaluate(run, world["data"], echo=None, progress=False, device="cpu")
    for name in ("metrics.csv", "table1.csv"):
        record = read_sidecar(run / name)
        assert sidecar_path(run / name).name == name.replace(".csv", ".provenance.json")
        assert record["command"] == "evaluate"
        assert record["data"]["root"] == str(world["data"].resolve())
        case = record["data"]["cases"]["1"]
        assert case["files"]["ADC"].startswith("training_1/") and "OT" in case["files"]
        assert len(case["fingerprint_sha256"]) == 64
        (ckpt,) = record["checkpoints"]
        assert ckpt["epoch"] == 1 and ckpt["path"].startswith(str(run.resolve()))
        assert record["versions"]["strokelrp"] == strokelrp.__version__
        assert record["versions"]["torch"] == torch.__version__
    split = json.loads((run / "split.json").read_text())
    assert set(_splits(run).values()) == {"train", "validation"}
    assert {c: s for c, s in _splits(run).items() if s == "validation"} == {
        c: "validation" for c in split["validation"]
    }


def test_evaluate_refuses_another_runs_checkpoint(world, tmp_path, capsys) -> None:
    run = _fresh_run(world, tmp_path)
    other = world["runB"] / "checkpoints" / "last.safetensors"
    code, _out, err = cli(["evaluate", str(run), str(world["data"]), "--checkpoint", str(other),
                           "--device", "cpu"], capsys)  # fmt: skip
    assert code == 1
    assert "not a checkpoint of" in err and "Traceback" not in err
    assert not (run / "table1.csv").exists() and not (run / "metrics.csv").exists()
    code, _out, err = cli(["explain", str(run), str(world["data"]), "--case", "1",
                           "--checkpoint", str(other), "--device", "cpu"], capsys)  # fmt: skip
    assert code == 1 and "not a checkpoint of" in err
    assert not (run / "explanations").exists()
    # its own checkpoint given as a path is fine
    own = run / "checkpoints" / "epoch-001.safetensors"
    evaluate(run, world["data"], own, echo=None, progress=False, device="cpu")
    assert (run / "table1.csv").is_file()


def test_other_data_with_the_same_ids_is_external(world, tmp_path) -> None:
    run = _fresh_run(world, tmp_path)
    (result,) = evaluate(run, world["other"], echo=None, progress=False, device="cpu")
    assert {r["case_id"] for r in result.rows} == {"1", "2", "4"}
    assert {r["split"] for r in result.rows} == {"external"}
    assert result.table1["heldout_dice"] != result.table1["heldout_dice"]  # NaN: none held out
    record = read_sidecar(run / "table1.csv")
    assert record["split_counts"] == {"external": 3}
    assert record["data"]["root"] == str(world["other"].resolve())
    # a byte-identical copy of the training data elsewhere is still the training data
    copy = tmp_path / "copy"
    shutil.copytree(world["data"], copy)
    evaluate(run, copy, echo=None, progress=False, device="cpu")
    assert set(_splits(run).values()) == {"train", "validation"}
    # one changed case in the training folder itself is no longer the case trained on
    changed = tmp_path / "changed"
    shutil.copytree(world["data"], changed)
    adc = next(changed.glob("training_1/*MR_ADC*/*.nii"))
    adc.write_bytes(adc.read_bytes()[:-2] + b"\x01\x00")
    evaluate(run, changed, echo=None, progress=False, device="cpu")
    assert _splits(run)["1"] == "external" and _splits(run)["2"] != "external"


def test_explain_says_which_epoch_it_used_while_training_writes(world, tmp_path, capsys) -> None:
    run = _fresh_run(world, tmp_path)
    ckpts = run / "checkpoints"
    first = read_checkpoint(ckpts / "last.safetensors")
    config = TrainConfig.from_dict({**first.config.to_dict(), "epochs": 3})
    model = build_model(config)
    save_checkpoint(ckpts, epoch=2, config=config, model=model)
    # epoch 3 is being written: weights renamed into place, their sidecars not yet
    scratch = tmp_path / "scratch"
    save_checkpoint(scratch, epoch=3, config=config, model=model)
    for name in ("epoch-003.safetensors", "last.safetensors"):
        os.replace(scratch / name, ckpts / name)  # as the writer does (last is a hard link)
    assert latest_complete(ckpts).epoch == 2
    out = tmp_path / "ex"
    code, _stdout, err = cli(["explain", str(run), str(world["data"]), "--case", "1",
                             "--out", str(out), "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    assert "epoch 2 of 3" in err and "not finished training" in err
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["epoch"] == 2
    record = summary["provenance"]
    (ckpt,) = record["checkpoints"]
    assert ckpt["epoch"] == 2 and ckpt["path"].endswith("epoch-002.safetensors")
    assert ckpt["epochs_planned"] == 3
    assert record["data"]["root"] == str(world["data"].resolve())
    assert set(record["data"]["cases"]["1"]["files"]) == {
        "ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP", "OT",
    }  # fmt: skip
    # the same content fingerprint as training recorded for this case
    trained = json.loads((run / "split.json").read_text())["data"]["fingerprints"]["1"]
    assert record["data"]["cases"]["1"]["fingerprint_sha256"] == trained
    assert record["data"]["cases"]["1"]["orientation"] == "LPS"
    assert record["rules"]["preset"] == DEFAULT_PRESET and record["rules"]["overrides"] == {}
    assert record["target"] == "prediction"
    assert record["settings"] == ["raw", "pass(0,0.4)", "clamp(0,0.2)"]


def test_rules_record_lists_every_override() -> None:
    record = rules_record(preset("paper", epsilon=0.01, batchnorm="fold"))
    assert record["preset"] == "paper"
    assert record["overrides"] == {"epsilon": 0.01, "batchnorm": "fold"}
    assert record["resolved"]["first"] == "zB" and record["resolved"]["epsilon"] == 0.01


def test_sweep_records_and_refuses_a_newer_checkpoint(world, tmp_path) -> None:
    from strokelrp.pipeline.sweep import run_sweep

    run = _fresh_run(world, tmp_path)
    grid = tmp_path / "grid.txt"
    grid.write_text("raw\npass:0,0.4\n")
    (table,) = run_sweep([run], world["data"], grid=grid, cases=["1"], device="cpu",
                         progress=False)  # fmt: skip
    record = read_sidecar(table)
    assert record["command"] == "sweep" and record["settings"] == ["raw", "pass(0,0.4)"]
    assert record["checkpoints"][0]["epoch"] == 1 and record["checkpoints"][0]["network"]
    assert set(record["data"]["cases"]) == {"1"}
    # resuming with the same checkpoint adds cases
    run_sweep([run], world["data"], grid=grid, cases=["1", "2"], device="cpu", progress=False)
    assert set(read_sidecar(table)["data"]["cases"]) == {"1", "2"}
    # the same ids from another data set would be skipped as done: refused
    with pytest.raises(StrokeLRPError, match="other data"):
        run_sweep([run], world["other"], grid=grid, cases=["1"], device="cpu", progress=False)
    # training went on: the table's rows are from epoch 1, the network is now epoch 2
    first = read_checkpoint(run / "checkpoints" / "last.safetensors")
    save_checkpoint(RunDir(run).checkpoints, epoch=2, config=first.config, model=build_model(
        first.config))  # fmt: skip
    with pytest.raises(StrokeLRPError, match="epoch 1 checkpoint, but its checkpoint is now"):
        run_sweep([run], world["data"], grid=grid, cases=["1"], device="cpu", progress=False)
    run_sweep([run], world["data"], grid=grid, cases=["1"], device="cpu", progress=False,
              restart=True)  # fmt: skip
    assert read_sidecar(table)["checkpoints"][0]["epoch"] == 2


def test_report_names_where_each_output_came_from(world, tmp_path) -> None:
    from strokelrp.pipeline.report import build_report

    run = _fresh_run(world, tmp_path)
    evaluate(run, world["data"], echo=None, progress=False, device="cpu")
    sidecar_path(run / "metrics.csv").unlink()  # as an output of an older strokelrp
    (tmp_path / "out").mkdir()
    path = build_report([run], tmp_path / "out" / "report.html")
    text = path.read_text()
    assert str(world["data"].resolve()) in text
    assert "epoch 1 of 1" in text and "(no provenance recorded)" in text
    record = read_sidecar(path)
    assert record["command"] == "report" and record["runs"] == [str(run.resolve())]
    outputs = record["outputs"]
    assert outputs[str(run / "table1.csv")]["checkpoints"][0]["epoch"] == 1
    assert outputs[str(run / "metrics.csv")] is None
