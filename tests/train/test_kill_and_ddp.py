"""Runs in other processes: SIGKILL mid-training then resume; a 2-process DDP run (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import strokelrp
from strokelrp.run_files import RunDir
from strokelrp.train.checkpoint import latest_complete, load_run

SRC = str(Path(strokelrp.__file__).resolve().parents[1])


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def train_args(data: Path, out: Path, epochs: int) -> list[str]:
    return [
        "train", str(data), "--series", "8x16x16", "--out", str(out), "--width", "2",
        "--epochs", str(epochs), "--val-fraction", "0.25", "--no-progress", "--device", "cpu",
    ]  # fmt: skip


def test_sigkill_then_resume_completes(synth4: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "strokelrp", *train_args(synth4, out, 40)]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        # Kill while the checkpoint of epoch 2 (or later) is being written or just written.
        while not (out / "checkpoints" / "epoch-002.safetensors").exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = latest_complete(RunDir(out).checkpoints)
    assert done is not None and done.epoch >= 1
    result = subprocess.run(
        [sys.executable, "-m", "strokelrp", *train_args(synth4, out, done.epoch + 2), "--resume"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming after epoch {done.epoch} of {done.epoch + 2}" in result.stderr
    final = latest_complete(RunDir(out).checkpoints)
    assert final is not None and final.epoch == done.epoch + 2
    assert [r["epoch"] for r in RunDir(out).read_train_log()] == list(range(1, done.epoch + 3))
    model, config = load_run(out)
    assert not model.training and config.epochs == done.epoch + 2


@pytest.mark.slow
def test_two_process_ddp_run(synth4: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "strokelrp", *train_args(synth4, out, 2),
    ]  # fmt: skip
    cmd[cmd.index("--val-fraction") + 1] = "0"
    result = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained 1 network(s)") == 1  # only rank 0 prints
    assert "2 processes" in result.stderr
    meta = json.loads((out / "checkpoints" / "last.json").read_text())
    assert meta["epoch"] == 2
    assert meta["facts"]["world_size"] == 2 and meta["facts"]["steps_per_epoch"] == 2
    assert [r["epoch"] for r in RunDir(out).read_train_log()] == [1, 2]
    stray = [p.name for p in out.rglob("*") if ".tmp" in p.name]
    assert stray == []
    model, config = load_run(out)
    assert config.width == 2 and not model.training
