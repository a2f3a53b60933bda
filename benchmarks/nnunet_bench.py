"""Whole-volume maps through nnU-Net's sliding window: cost relative to a gradient through the
same window, the 16-setting grid, and peak memory against the volume's size.

The network is a ``PlainConvUNet`` (dynamic_network_architectures, the library nnU-Net
builds its networks with) from a 3d_fullres plan for an ISLES'22-like case: 2 channels
(DWI, ADC) at 1 mm, 2 classes, InstanceNorm (affine), LeakyReLU, strided convolutions,
transposed convolutions, no deep supervision. Widths and the patch are scaled down from a
real plan so that the benchmark runs on a small CPU (``--features``, ``--patch``); the volume
(``--volume``) is several patches large (nnU-Net's tiles at step 0.5). Random weights, a
random smooth input; the target is the stitched prediction's lesion class (``window_weights``).

- gradient: ``window_attribute(net, x, window, "gradient", W)`` (forward + input backward
  per patch, parameters frozen);
- one map: ``window_explain(net, x, window, W)`` (the default preset, one setting);
- 16 settings: the same with ``filters=PAPER_GRID`` (the paper's 16 settings in one walk
  per patch).

Timings: ``--rounds`` rounds run the three back to back (a shared, noisy machine slows all of
them alike); each ratio is the median of the per-round ratios, the times are medians.
Peak memory: the peak resident set (``VmHWM``, reset before the run) minus the resident set
before it, for one map in a fresh process, on a volume of one patch and on the full volume:
bounded by the patch when the two differ by about the volume-sized tensors (input, target,
maps, normaliser) only.

    PYTHONPATH=src python benchmarks/nnunet_bench.py
    PYTHONPATH=src python benchmarks/nnunet_bench.py --volume 96 144 144 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from strokelrp.lrp.filters import PAPER_GRID
from strokelrp.sliding_window import Window, window_attribute, window_explain, window_weights


def plan(features: list[int], patch: list[int]) -> dict:
    """A 3d_fullres configuration as nnU-Net's plans.json writes it (the keys this uses)."""
    stages = len(features)
    return {
        "patch_size": patch,
        "spacing": [1.0, 1.0, 1.0],
        "architecture": {
            "network_class_name": (
                "dynamic_network_architectures.architectures.unet.PlainConvUNet"
            ),
            "arch_kwargs": {
                "n_stages": stages,
                "features_per_stage": features,
                "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": [[3, 3, 3]] * stages,
                "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
                "n_conv_per_stage": [2] * stages,
                "n_conv_per_stage_decoder": [2] * (stages - 1),
                "conv_bias": True,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "dropout_op": None,
                "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": False},
            },
        },
    }


def build(config: dict, channels: int = 2, classes: int = 2) -> nn.Module:
    """The plan's network with random weights (affine InstanceNorm parameters varied)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    kw = dict(config["architecture"]["arch_kwargs"])
    kw.update(
        conv_op=nn.Conv3d,
        norm_op=nn.InstanceNorm3d,
        nonlin=nn.LeakyReLU,
        dropout_op=None,
    )
    torch.manual_seed(0)
    net = PlainConvUNet(channels, num_classes=classes, deep_supervision=False, **kw)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def volume(shape: list[int], channels: int = 2) -> torch.Tensor:
    """A smooth random (C, *S) volume (a blurred noise field per channel)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, channels, *shape, generator=gen)
    x = torch.nn.functional.avg_pool3d(x, 5, stride=1, padding=2)
    return (x / x.std())[0]


def _vmhwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def child(args: argparse.Namespace) -> None:
    """One map in this process; prints {"peak": bytes above the resident set before it}."""
    torch.set_num_threads(args.threads)
    net = build(plan(args.features, args.patch))
    x = volume(args.volume)
    window = Window(tuple(args.patch))
    w = window_weights(net, x, window)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM
    before = _rss()
    window_explain(net, x, window, w)
    print(json.dumps({"peak": _vmhwm() - before}))


def peak(args: argparse.Namespace, shape: list[int]) -> int:
    cmd = [sys.executable, __file__, "--child", "--volume", *map(str, shape), "--patch"]
    cmd += [*map(str, args.patch), "--features", *map(str, args.features)]
    cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64, 80])
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 48, 48])
    parser.add_argument("--volume", type=int, nargs=3, default=[48, 72, 72])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    torch.set_num_threads(args.threads)
    config = plan(args.features, args.patch)
    net = build(config)
    x = volume(args.volume)
    window = Window(tuple(args.patch))
    w = window_weights(net, x, window)
    tiles = len(window.tiles(args.volume))
    print(
        f"# nnU-Net sliding window, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(
        f"PlainConvUNet features {args.features}, patch {args.patch}, volume {args.volume} "
        f"({tiles} tiles at step 0.5), target voxels {int(w[1].sum())}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    runs: dict[str, Callable[[], object]] = {
        "gradient": lambda: window_attribute(net, x, window, "gradient", w),
        "one map": lambda: window_explain(net, x, window, w),
        "16 settings": lambda: window_explain(net, x, window, w, filters=PAPER_GRID),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    r_map = statistics.median(
        m / g for m, g in zip(times["one map"], times["gradient"], strict=True)
    )
    r_16 = statistics.median(
        s / m for s, m in zip(times["16 settings"], times["one map"], strict=True)
    )
    one = peak(args, list(args.patch))
    full = peak(args, list(args.volume))
    voxels = [int(torch.tensor(s).prod()) for s in (args.patch, args.volume)]
    # volume-sized tensors of one map: x, W, relevance (C each), normaliser, padding copies
    extra = (voxels[1] - voxels[0]) * 4 * (2 + 2 + 2 + 1)
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| gradient through the window (s) | {med['gradient']:.2f} |")
    print(f"| one map (s) | {med['one map']:.2f} |")
    print(f"| 16 settings (s) | {med['16 settings']:.2f} |")
    print(f"| one map / gradient | {r_map:.2f}x |")
    print(f"| 16 settings / one map | {r_16:.2f}x |")
    print(f"| peak above start, one map, volume = one patch {args.patch} | {one / 2**20:.0f} MiB |")
    print(f"| peak above start, one map, volume {args.volume} | {full / 2**20:.0f} MiB |")
    print(
        f"| difference / the volume-sized tensors' bytes | {(full - one) / 2**20:.0f} / "
        f"{extra / 2**20:.0f} MiB |"
    )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
