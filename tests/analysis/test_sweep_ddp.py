"""The sweep under ``torchrun --nproc_per_node=2`` (gloo, CPU): the cases are shared between the
two processes and rank 0 writes one table equal to a one-process sweep's."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import strokelrp
from strokelrp.analysis.table import FLOAT_COLUMNS, read_table
from strokelrp.config import MODALITIES, TrainConfig
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.model import UNet3D
from strokelrp.pipeline.sweep import read_grid, sweep_run
from strokelrp.run_files import RunDir
from strokelrp.train.checkpoint import save_checkpoint

SRC = str(Path(strokelrp.__file__).resolve().parents[1])


def key(row: dict) -> tuple[str, str, str]:
    return (str(row["case"]), str(row["setting"]), str(row["modality"]))


@pytest.mark.slow
def test_two_process_sweep_matches_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = synthesize_isles2017(tmp_path / "isles", n_cases=3, shape=(16, 16, 4), seed=5)
    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(data=str(data), series=(4, 16, 16), width=2, epochs=0, seed=0)
    config.to_toml(run / "config.toml")
    torch.manual_seed(0)
    save_checkpoint(RunDir(run).checkpoints, epoch=0, config=config, model=UNet3D(width=2))
    grid = tmp_path / "grid.txt"
    grid.write_text("raw\nclamp:0,0.2\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["STROKELRP_CACHE_DIR"] = str(tmp_path / "cache")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "strokelrp", "sweep", str(run), str(data), "--grid", str(grid), "--device", "cpu",
        "--target", "ground_truth",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    table = run / "sweep" / "sweep.csv"
    assert result.stdout.count(f"wrote {table}") == 1  # only rank 0 reports
    two = read_table(table)

    # three cases over two ranks (the second round has one case): each row exactly once
    assert len(two) == 3 * 2 * len(MODALITIES)
    assert len({key(r) for r in two}) == len(two)
    folders = {p.name.removeprefix("training_") for p in data.glob("training_*")}
    assert {str(r["case"]) for r in two} == folders and len(folders) == 3

    shares = [float(r["relevance_share"]) for r in two]
    assert any(0 < v < 1 for v in shares)  # real maps, not all-zero ones

    # the same sweep in this process (a group of one) gives the same table
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "config.toml").write_bytes((run / "config.toml").read_bytes())
    (alone / "checkpoints").mkdir()
    for f in (run / "checkpoints").iterdir():
        (alone / "checkpoints" / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    one = {
        key(r): r
        for r in read_table(
            sweep_run(alone, data, read_grid(grid), target="ground_truth", progress=False)
        )
    }
    assert one.keys() == {key(r) for r in two}
    for row in two:
        ref = one[key(row)]
        for column in FLOAT_COLUMNS:
            a, b = float(row[column]), float(ref[column])
            assert (math.isnan(a) and math.isnan(b)) or math.isclose(
                a, b, rel_tol=1e-4, abs_tol=1e-6
            ), (key(row), column, a, b)
