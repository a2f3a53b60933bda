"""Training-step benchmark: our loop's step vs a bare PyTorch step on the same model.

For each series and width: the median time of one batch-1 training step of
``strokelrp.train.loop.run_epoch`` (with its Dice/loss bookkeeping and the progress bar
callback) and of a bare step (forward, cross-entropy, zero_grad, backward, Adam step), measured
in alternating rounds on the same model and in-memory data; the loop's overhead in %; on the
CPU also the bare step with every convolution on PyTorch's own path
(``strokelrp.model.conv.pytorch_conv_path``, i.e. a plain ``nn.Conv3d`` model); the time
to write one checkpoint; and the projected time of 80 epochs x 43 cases (steps + one checkpoint
per epoch, validation and data loading not included). Prints a markdown table.

    python benchmarks/train_bench.py                       # CPU: A at widths 8 and 32, B at 8
    python benchmarks/train_bench.py --device cuda --precision bf16   # GPU: A, B, C, X at 32
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from strokelrp.config import SERIES, TrainConfig
from strokelrp.device import resolve_device
from strokelrp.model.conv import pytorch_conv_path
from strokelrp.train.cases import CaseTensors
from strokelrp.train.checkpoint import build_model, save_checkpoint
from strokelrp.train.loop import cross_entropy, progress_bar, run_epoch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def toy_data(shape: tuple[int, int, int], n: int, device: torch.device) -> CaseTensors:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 6, *shape, generator=g)
    y = (x[:, 4] > 0.9).long()
    return CaseTensors(x.to(device), y.to(device), [str(i) for i in range(n)])


def bare_steps(model, optimizer, data: CaseTensors, precision: str) -> None:
    """The textbook step, nothing else."""
    model.train()
    device = data.x.device
    for i in range(len(data)):
        x, y = data.x[i : i + 1], data.y[i : i + 1]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bench_one(
    series: str, width: int, device: torch.device, precision: str, rounds: int, cases: int
) -> dict:
    shape = SERIES[series]
    torch.manual_seed(0)
    config = TrainConfig(data="/nonexistent", series=series, width=width)
    model = build_model(config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=2e-4, betas=(0.5, 0.9), fused=True if device.type == "cuda" else None
    )
    data = toy_data(shape, cases, device)
    rows = list(range(cases))
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the bar writes here for the whole run
    bar, on_step = progress_bar(10**9, enabled=True, file=devnull)

    def ours() -> None:
        run_epoch(model, optimizer, cross_entropy, data, rows, precision, on_step)

    def bare() -> None:
        bare_steps(model, optimizer, data, precision)

    def bare_pytorch_conv() -> None:
        with pytorch_conv_path():
            bare_steps(model, optimizer, data, precision)

    runs = [(bare, []), (ours, [])]
    if device.type == "cpu":
        runs.append((bare_pytorch_conv, []))
    for fn, _ in runs:  # warm-up (cudnn autotuning, allocator)
        fn()
    sync(device)
    for _ in range(rounds):  # alternate so that load changes hit all alike
        for fn, sink in runs:
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            sink.append((time.perf_counter() - t0) / cases)
    t_bare, t_ours = runs[0][1], runs[1][1]
    t_plain = runs[2][1] if len(runs) > 2 else [math.nan]
    bar.close()
    devnull.close()
    with tempfile.TemporaryDirectory() as tmp:
        t_ckpt = []
        for epoch in range(1, 4):
            t0 = time.perf_counter()
            save_checkpoint(
                Path(tmp), epoch=epoch, config=config, model=model, optimizer=optimizer, keep=1
            )
            t_ckpt.append(time.perf_counter() - t0)
    bare_s, ours_s = statistics.median(t_bare), statistics.median(t_ours)
    ckpt_s = statistics.median(t_ckpt)
    return {
        "series": f"{series} {'x'.join(map(str, shape))}",
        "width": width,
        "plain": statistics.median(t_plain),
        "bare": bare_s,
        "ours": ours_s,
        "overhead": 100 * (ours_s / bare_s - 1),
        "ckpt": ckpt_s,
        "projected_min": 80 * (43 * ours_s + ckpt_s) / 60,
    }


def fmt_time(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument(
        "--plan",
        nargs="*",
        metavar="SERIES:WIDTH",
        help="e.g. A:8 A:32 B:8 (default: CPU A:8 A:32 B:8; GPU A/B/C/X:32)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--cases", type=int, default=3, help="steps per round")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    plan = args.plan or (
        ["A:32", "B:32", "C:32", "X:32"] if device.type == "cuda" else ["A:8", "A:32", "B:8"]
    )
    results = []
    for item in plan:
        series, width = item.split(":")
        results.append(
            bench_one(series, int(width), device, args.precision, args.rounds, args.cases)
        )
        print(f"done {item}", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print()
    print(
        f"Machine: {device.type} {name or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.precision}; "
        f"date {datetime.date.today()}; load average at the end {load[0]:.1f}"
    )
    print()
    print(
        "| series | width | bare step, nn.Conv3d path | bare step | our loop's step | "
        "overhead | checkpoint | 80 epochs x 43 cases |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['series']} | {r['width']} | {fmt_time(r['plain'])} | {fmt_time(r['bare'])} | "
            f"{fmt_time(r['ours'])} | {r['overhead']:+.1f}% | {fmt_time(r['ckpt'])} | "
            f"{r['projected_min']:.1f} min |"
        )


if __name__ == "__main__":
    main()
