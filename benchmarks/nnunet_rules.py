"""Which InstanceNorm step the LRP default should use on nnU-Net's networks, by the trust
measures of ``strokelrp assess`` on small trained nnU-Net-style networks.

A ``PlainConvUNet`` and a ``ResidualEncoderUNet`` (dynamic_network_architectures; InstanceNorm
(affine), LeakyReLU, strided and transposed convolutions, no deep supervision) are trained
with Adam and cross-entropy on synthetic ISLES 2017 cases (the generator of
``strokelrp synth``, preprocessed to ``--shape``), then assessed on held-out cases with
:func:`strokelrp.analysis.assess.assess` for ``lrp:epsilon`` (InstanceNorm passed),
``lrp:epsilon(instancenorm=fold)`` and the gradient as a reference. The residual sums have
one step (the proportional split), so the ResidualEncoderUNet rows compare the norms' steps
on a network with residual sums. Prints one markdown table of the per-method means over the
held-out cases (docs/assess.md defines the measures).

    PYTHONPATH=src python benchmarks/nnunet_rules.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from torch import nn

from strokelrp.config import TrainConfig
from strokelrp.data.layouts import load_cases
from strokelrp.data.preprocess import prepare_case
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.trust.assess import assess

METHODS = ("lrp:epsilon", "lrp:epsilon(instancenorm=fold)", "gradient")
COLUMNS = (
    "brain_share",
    "lesion_share",
    "morf_aopc",
    "random_aopc",
    "randomisation_rho",
    "contrast_rho",
    "ablation_rho",
)


def network(kind: str, seed: int) -> nn.Module:
    from dynamic_network_architectures.architectures.unet import (
        PlainConvUNet,
        ResidualEncoderUNet,
    )

    kw = dict(
        input_channels=6,
        n_stages=3,
        features_per_stage=[8, 16, 32],
        conv_op=nn.Conv3d,
        kernel_sizes=3,
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        num_classes=2,
        conv_bias=True,
        norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": False},
        deep_supervision=False,
    )
    torch.manual_seed(seed)
    if kind == "PlainConvUNet":
        return PlainConvUNet(**kw, n_conv_per_stage=2, n_conv_per_stage_decoder=1)
    return ResidualEncoderUNet(**kw, n_blocks_per_stage=[1, 2, 2], n_conv_per_stage_decoder=1)


def train(net: nn.Module, xs: np.ndarray, ys: np.ndarray, steps: int, seed: int) -> float:
    """Adam, cross-entropy with the lesion class weighted by the background/lesion ratio;
    returns the last loss."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys).long()
    ratio = float((y == 0).sum()) / max(1.0, float((y == 1).sum()))
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, min(ratio, 50.0)]))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(len(x), (2,), generator=gen)
        opt.zero_grad()
        loss = loss_fn(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
    net.eval()
    return float(loss.detach())


def dice(pred: np.ndarray, label: np.ndarray) -> float:
    inter = float((pred & label).sum())
    total = float(pred.sum() + label.sum())
    return 2 * inter / total if total else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--held-out", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=[16, 48, 48])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        synthesize_isles2017(tmp, args.cases, shape=(args.shape[1], args.shape[2], 19), seed=3)
        config = TrainConfig(data=tmp, series=tuple(args.shape))
        pairs = [prepare_case(c, config) for c in load_cases(tmp)]
    xs = np.stack([p[0] for p in pairs]).astype(np.float32)
    ys = np.stack([p[1] for p in pairs]).astype(np.int64)
    n_train = len(xs) - args.held_out
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}, {n_train} training and {args.held_out} "
        f"held-out synthetic cases of {args.shape}, {args.steps} Adam steps"
    )
    print()
    print("| network | held-out Dice | method | " + " | ".join(COLUMNS) + " | morf/random |")
    print("|---|---|---|" + "---|" * (len(COLUMNS) + 1))
    for kind in ("PlainConvUNet", "ResidualEncoderUNet"):
        net = network(kind, 0)
        train(net, xs[:n_train], ys[:n_train], args.steps, 0)
        with torch.no_grad():
            pred = net(torch.from_numpy(xs[n_train:])).argmax(1).numpy().astype(bool)
        d = statistics.mean(
            dice(p, y.astype(bool)) for p, y in zip(pred, ys[n_train:], strict=True)
        )
        rows = []
        for i in range(n_train, len(xs)):
            got, _ = assess(
                net, xs[i], ys[i], METHODS, case=str(i), seeds=(1,), random_seeds=2, extras=False
            )
            rows += got
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method]
            means = {c: statistics.mean(float(r[c]) for r in mine) for c in COLUMNS}
            ratio = statistics.median(float(r["morf_aopc"]) / float(r["random_aopc"]) for r in mine)
            cells = " | ".join(f"{means[c]:.3f}" for c in COLUMNS)
            print(f"| {kind} | {d:.3f} | {method} | {cells} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
