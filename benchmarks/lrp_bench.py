"""Cost of relevance maps relative to a plain input-gradient pass, and of the 16-setting grid.

For each series scale (width-32 U-Net by default, or ``--model monai-basicunet``: MONAI's
``BasicUNet`` with its default features, 6 -> 2 channels; random weights, random input):

- gradient: forward + backward to the input (``torch.autograd.grad(out, x, start)``: only the
  input gradient is computed; the same starting tensor as the maps);
- one map: ``explain(model, x, target, rules="paper")``;
- 16 settings: ``explain(..., filters=PAPER_GRID, filter_at="all")`` (K = 16 in one walk).

Timings are medians over rounds that run the three methods back to back (so a shared,
noisy machine slows all three alike); the ratios are medians of the per-round ratios.
Peak memory: on CPU the peak resident set during the run (``VmHWM``, reset before it) minus
the resident set just before it (model and input built), each method once in a fresh
subprocess; on CUDA
``torch.cuda.max_memory_allocated``.

    PYTHONPATH=src python benchmarks/lrp_bench.py --series A B
    PYTHONPATH=src python benchmarks/lrp_bench.py --model monai-basicunet --shape 16 64 64
    PYTHONPATH=src python benchmarks/lrp_bench.py --series X --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from strokelrp.config import SERIES
from strokelrp.lrp.engine import explain
from strokelrp.lrp.filters import PAPER_GRID
from strokelrp.model import UNet3D

METHODS = ("gradient", "one map", "16 settings")
MODELS = ("unet3d", "monai-basicunet")
_MODEL_ENV = "LRP_BENCH_MODEL"  # the model, passed on to the memory subprocesses


def build_model(width: int) -> torch.nn.Module:
    """The benchmarked network (``$LRP_BENCH_MODEL``, default ``unet3d``)."""
    name = os.environ.get(_MODEL_ENV, "unet3d")
    if name == "monai-basicunet":
        from monai.networks.nets import BasicUNet

        return BasicUNet(spatial_dims=3, in_channels=6, out_channels=2)
    return UNet3D(width=width)


def setup(series: str, width: int, device: str) -> dict[str, Callable[[], object]]:
    """The model, input and the three methods as closures."""
    torch.manual_seed(0)
    model = build_model(width).to(device).eval()
    x = torch.rand(1, 6, *SERIES[series], device=device)
    with torch.no_grad():
        out = model(x)
    start = torch.zeros_like(out)  # the lesion logit everywhere: every voxel carries relevance
    start[:, 1] = out[:, 1]

    def gradient() -> object:
        xg = x.clone().requires_grad_(True)
        return torch.autograd.grad(model(xg), xg, start)[0]

    def one_map() -> object:
        return explain(model, x, target=start, rules="paper").relevance

    def grid() -> object:
        return explain(model, x, target=start, rules="paper", filters=PAPER_GRID).relevance

    return {"gradient": gradient, "one map": one_map, "16 settings": grid}


def timed(fn: Callable[[], object], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(series: str, width: int, method: str) -> None:
    """(In a subprocess) peak resident-set rise of one run of ``method``, in MiB, as JSON:
    the peak during the run minus the resident set just before it (model and input built).
    The peak is reset first (``clear_refs`` 5), so earlier peaks (imports, setup) don't count."""
    fns = setup(series, width, "cpu")
    before = status_mib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        peak = lambda: status_mib("VmHWM")  # noqa: E731
    except OSError:  # no reset possible: fall back to the process's all-time peak
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731
    fns[method]()
    print(json.dumps({"peak_mib": peak() - before}))


def memory(series: str, width: int, device: str) -> dict[str, float]:
    if device == "cuda":
        fns = setup(series, width, device)
        out = {}
        for method, fn in fns.items():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            out[method] = (torch.cuda.max_memory_allocated() - base) / 2**20
        return out
    out = {}
    for method in METHODS:
        cmd = [sys.executable, __file__, "--child-memory", series, str(width), method]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[method] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
    return out


def timing(series: str, width: int, device: str, rounds: int) -> dict[str, float]:
    fns = setup(series, width, device)
    for fn in fns.values():  # warm-up (allocator, kernels)
        fn()
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(rounds):
        for method, fn in fns.items():
            times[method].append(timed(fn, device))
    one = [o / g for o, g in zip(times["one map"], times["gradient"], strict=True)]
    grid = [k / o for k, o in zip(times["16 settings"], times["one map"], strict=True)]
    result = {m: statistics.median(t) for m, t in times.items()}
    result["ratio one/gradient"] = statistics.median(one)
    result["ratio 16/one"] = statistics.median(grid)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", default=["A", "B"], choices=sorted(SERIES))
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (median)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--model", default="unet3d", choices=MODELS, help="network benchmarked")
    parser.add_argument(
        "--shape", nargs=3, type=int, metavar=("D", "H", "W"), help="an own grid (not a series)"
    )
    parser.add_argument("--child-memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault(_MODEL_ENV, args.model)
    if args.shape:
        SERIES["custom"] = tuple(args.shape)
        args.series = ["custom"]
    shape_env = os.environ.get("LRP_BENCH_SHAPE")
    if shape_env:  # the memory subprocesses' own grid
        SERIES["custom"] = tuple(int(v) for v in shape_env.split(","))
    elif args.shape:
        os.environ["LRP_BENCH_SHAPE"] = ",".join(map(str, args.shape))
    if args.child_memory:
        series, width, method = args.child_memory
        child_memory(series, int(width), method)
        return
    if args.device == "cuda":
        device_name = torch.cuda.get_device_name()
        mem_unit = "CUDA max_memory_allocated"
    else:
        device_name = (
            f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        )
        mem_unit = "peak RSS rise (VmHWM)"
    print(
        f"device: {device_name}; torch {torch.__version__}; model {args.model}; "
        f"width {args.width}; "
        f"{args.rounds} rounds; memory: {mem_unit}\n"
    )
    print(
        "| series | shape (D, H, W) | gradient | one map | one / gradient | 16 settings "
        "| 16 / one | peak MiB: gradient | one map | 16 settings |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for series in args.series:
        t = timing(series, args.width, args.device, args.rounds)
        m = (
            {k: float("nan") for k in METHODS}
            if args.no_memory
            else memory(series, args.width, args.device)
        )
        print(
            f"| {series} | {SERIES[series]} | {t['gradient']:.3f} s | {t['one map']:.3f} s "
            f"| {t['ratio one/gradient']:.2f} | {t['16 settings']:.3f} s "
            f"| {t['ratio 16/one']:.2f} | {m['gradient']:.0f} | {m['one map']:.0f} "
            f"| {m['16 settings']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
