"""Is the synthetic lesion learnable? Train a narrow U-Net at series A, report held-out Dice.

Writes N synthetic cases (default 30 of 192x192x19), trains ``UNet3D(width=4)`` on all but
the last ``--test`` cases (Adam lr 2e-3, batch 1, cross-entropy with lesion weight 3, one
torch thread) and prints the held-out Dice after each epoch as a markdown table.

    python benchmarks/synth_learnability.py [--cases 30] [--test 6] [--epochs 6] [--width 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from strokelrp.config import LESION
from strokelrp.core.metrics import dice_score
from strokelrp.data.dataset import CaseDataset
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.model.unet3d import UNet3D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--test", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory(prefix="strokelrp-learn-") as tmp:
        root = synthesize_isles2017(Path(tmp) / "isles", args.cases, seed=args.seed)
        ds = CaseDataset(root, "A", cache_dir=Path(tmp) / "cache")
        items = [ds[i] for i in range(len(ds))]
    train, test = items[: -args.test], items[-args.test :]
    model = UNet3D(6, 2, args.width)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    weight = torch.tensor([1.0, 3.0])
    print(f"{len(train)} training and {len(test)} held-out cases, series A, width {args.width}\n")
    print("| epoch | train loss | held-out Dice (mean) | min | max | seconds |")
    print("|---|---|---|---|---|---|")
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for i in rng.permutation(len(train)):
            x, y, _ = train[i]
            loss = F.cross_entropy(model(x[None]), y[None], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            scores = [
                dice_score(model(x[None]).argmax(1)[0] == LESION, y == LESION) for x, y, _ in test
            ]
        print(
            f"| {epoch} | {total / len(train):.4f} | {np.mean(scores):.3f} | "
            f"{min(scores):.3f} | {max(scores):.3f} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
