"""In-memory toy cases for the training tests (no files)."""

from __future__ import annotations

import torch

from strokelrp.config import TrainConfig

SHAPE = (8, 16, 16)


def toy_cases(n: int = 3, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """``n`` cases (x (6, 8, 16, 16) in [0, 1], y = a bright blob of channel 4, case_id)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.rand(6, *SHAPE, generator=g) * 0.3
        z, r, c = (int(torch.randint(2, s - 2, (1,), generator=g)) for s in SHAPE)
        x[4, z - 2 : z + 2, r - 3 : r + 3, c - 3 : c + 3] += 0.6
        y = (x[4] > 0.5).long()
        out.append((x, y, str(i + 1)))
    return out


def toy_config(tmp, **kw) -> TrainConfig:
    values = {"data": str(tmp / "data"), "series": SHAPE, "width": 2, "epochs": 2}
    values.update(kw)
    return TrainConfig(**values)
