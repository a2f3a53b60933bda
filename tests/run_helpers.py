"""Train the tiny runs the end-to-end tests explain, sweep and assess."""

from __future__ import annotations

from pathlib import Path

import torch

from strokelrp.config import TrainConfig
from strokelrp.train.loop import train


def train_quietly(config: TrainConfig, out: Path) -> Path:
    """Train ``config`` into ``out`` on one torch thread (tiny networks run faster so, and the
    CPU is shared), without progress output; restore the thread count. -> the run folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (run,) = train(config, out, progress=False, log=lambda _line: None)
    finally:
        torch.set_num_threads(threads)
    return run
