"""Every layout end to end through the command line on tiny data: synth --layout, train
(UNet3D), explain, sweep, assess, report; the data set's channel names reach the run config,
the sidecars, figure 1's record, the sweep table and the trust table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import pytest
from cli_helpers import run_cli

from strokelrp.config import TrainConfig

CHANNELS = {
    "isles2022": ["DWI", "ADC", "FLAIR"],
    "isles2024": ["CBF", "CBV", "MTT", "Tmax"],
    "nnunet": ["DWI", "ADC"],
    "msd": ["DWI", "ADC", "Tmax"],
}


@pytest.mark.parametrize("layout", sorted(CHANNELS))
def test_layout_end_to_end(tmp_path: Path, layout: str, capsys) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    argv = ["synth", str(data), "--layout", layout, "--cases", "2", "--shape", "20", "18", "7"]
    assert run_cli(argv, capsys)[0] == 0
    argv = ["train", str(data), "--series", "6x16x16", "--width", "2", "--epochs", "1",
            "--out", str(run), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]  # fmt: skip
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    config = TrainConfig.from_toml(run / "config.toml")
    assert config.layout == layout and list(config.channels or ()) == CHANNELS[layout]

    case_id = {
        "isles2022": "strokecase0001",
        "isles2024": "stroke0001",
        "nnunet": "STROKE_001",
        "msd": "stroke_001",
    }[layout]
    out = tmp_path / "ex"
    argv = ["explain", str(run), str(data), "--case", case_id, "--filter", "pass:0,0.4",
            "--out", str(out), "--per-modality", "--device", "cpu"]  # fmt: skip
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    sidecar = json.loads((out / "relevance_raw.json").read_text())
    assert sidecar["volumes"] == CHANNELS[layout]
    assert nib.load(out / "relevance_raw.nii.gz").shape[-1] == len(CHANNELS[layout])
    for name in CHANNELS[layout]:
        assert (out / f"relevance_raw_{name}.nii.gz").is_file()
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["modalities"] == CHANNELS[layout] and summary["layout"] == layout
    assert summary["figure_modality"] == CHANNELS[layout][0]
    assert (out / "figure1.png").stat().st_size > 1000

    grid = tmp_path / "grid.txt"
    grid.write_text("raw\npass:0,0.4\n")
    argv = ["sweep", str(run), str(data), "--grid", str(grid), "--device", "cpu"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    with (run / "sweep" / "sweep.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["modality"] for r in rows} == set(CHANNELS[layout])
    assert len(rows) == 2 * 2 * len(CHANNELS[layout])  # cases x settings x channels

    trust = tmp_path / "trust"
    argv = ["assess", str(run), str(data), "--cases", case_id, "--methods", "gradient",
            "--seeds", "1", "--random-orders", "1", "--out", str(trust),
            "--device", "cpu"]  # fmt: skip
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    with (trust / "assess.csv").open() as fh:
        assert [r["case"] for r in csv.DictReader(fh)] == [case_id]

    code, _, err = run_cli(["report", str(run), "--out", str(tmp_path / "report.html")], capsys)
    assert code == 0, err
