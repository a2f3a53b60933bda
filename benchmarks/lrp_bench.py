"""Cost of relevance maps relative to a plain input-gradient pass, and of the 16-setting grid.

For each series scale (width-32 U-Net by default, or ``--model monai-basicunet``: MONAI's
``BasicUNet`` with its default features, 6 -> 2 channels; random weights, random input):

- gradient: forward + backward to the input (``torch.autograd.grad(out, x, start)``, the
  same starting tensor as the maps). For ``UNet3D`` this also computes the weight gradients
  of its batch-1 oneDNN convolutions (``strokelrp.model.conv``: a custom autograd function
  sees that the weights require gradients, not that only ``x``'s is asked for);
- input gradient: the same with the parameters' ``requires_grad`` off for the pass (only the
  input gradient is computed, whatever the network's convolution modules);
- one map: ``explain(model, x, target, rules="paper")`` (the benchmark's map since 0.1.0);
- default map: ``explain(model, x, target)`` with the default preset
  (``strokelrp.lrp.presets.DEFAULT_PRESET``; timed only, no memory run);
- 16 settings: ``explain(..., filters=PAPER_GRID, filter_at="all")`` under the default memory
  budget (``strokelrp.lrp.budget.default_budget``: the settings may be walked in chunks);
- 16 unlimited: the same with ``memory_budget="unlimited"`` (all 16 in one walk). Skipped
  (reported as not measured) when its estimated peak does not fit in the memory available
  now with 2 GB to spare.

Timings are medians over rounds that run the methods back to back (so a shared, noisy
machine slows all of them alike); the ratios are medians of the per-round ratios. With
``--rounds 0`` (series X on a small machine) the times are those of the fresh-process runs
below, one each, run back to back. Peak memory: on CPU the peak resident set during the
run (``VmHWM``, reset before it) minus the resident set just before it (model and input
built), each method once in a fresh subprocess; on CUDA ``torch.cuda.max_memory_allocated``.
The load average (``os.getloadavg``) is printed before and after each series.

    PYTHONPATH=src python benchmarks/lrp_bench.py --series A B
    PYTHONPATH=src python benchmarks/lrp_bench.py --model monai-basicunet --shape 16 64 64
    PYTHONPATH=src python benchmarks/lrp_bench.py --series X --rounds 0
    PYTHONPATH=src python benchmarks/lrp_bench.py --series X --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from strokelrp.attribution import input_gradients_only
from strokelrp.config import SERIES
from strokelrp.lrp.budget import available_bytes, format_bytes
from strokelrp.lrp.engine import explain, plan_memory
from strokelrp.lrp.filters import PAPER_GRID
from strokelrp.model import UNet3D

METHODS = ("gradient", "input gradient", "one map", "16 settings", "16 unlimited")
"""The methods timed and run in fresh processes for their peak memory."""
TIMED_ONLY = ("default map",)
"""Timed in the rounds only."""
SPARE = 2 * 10**9
"""Memory left free when deciding whether the unlimited run may start."""
MODELS = ("unet3d", "monai-basicunet")
_MODEL_ENV = "LRP_BENCH_MODEL"  # the model, passed on to the memory subprocesses


def build_model(width: int) -> torch.nn.Module:
    """The benchmarked network (``$LRP_BENCH_MODEL``, default ``unet3d``)."""
    name = os.environ.get(_MODEL_ENV, "unet3d")
    if name == "monai-basicunet":
        from monai.networks.nets import BasicUNet

        return BasicUNet(spatial_dims=3, in_channels=6, out_channels=2)
    return UNet3D(width=width)


def may_run_unlimited(model: torch.nn.Module, x: torch.Tensor) -> tuple[bool, str]:
    """Whether the unlimited 16-setting walk fits in the memory available now (+ 2 GB) and
    was not switched off (``$LRP_BENCH_NO_UNLIMITED``, set by ``--no-unlimited``)."""
    if os.environ.get("LRP_BENCH_NO_UNLIMITED"):
        return False, "not measured (--no-unlimited)"
    need = plan_memory(model, x, len(PAPER_GRID), "paper", memory_budget="unlimited").estimate
    free = available_bytes(x.device)
    if need + SPARE > free:
        return False, f"not measured: needs ~{format_bytes(need)}, {format_bytes(free)} available"
    return True, ""


def setup(series: str, width: int, device: str) -> tuple[dict[str, Callable[[], object]], tuple]:
    """The methods as closures, and (model, x) for memory checks."""
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

    def input_gradient() -> object:
        with input_gradients_only(model):
            return gradient()

    def one_map() -> object:
        return explain(model, x, target=start, rules="paper").relevance

    def default_map() -> object:
        return explain(model, x, target=start).relevance

    def grid() -> object:
        return explain(model, x, target=start, rules="paper", filters=PAPER_GRID).relevance

    def unlimited() -> object:
        return explain(
            model, x, target=start, rules="paper", filters=PAPER_GRID, memory_budget="unlimited"
        ).relevance

    fns = {
        "gradient": gradient,
        "input gradient": input_gradient,
        "one map": one_map,
        "default map": default_map,
        "16 settings": grid,
        "16 unlimited": unlimited,
    }
    return fns, (model, x)


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
    """(In a subprocess) time and peak resident-set rise of one run of ``method``, as JSON:
    the peak during the run minus the resident set just before it (model and input built).
    The peak is reset first (``clear_refs`` 5), so earlier peaks (imports, setup) don't count."""
    fns, (model, x) = setup(series, width, "cpu")
    if method == "16 unlimited":
        ok, why = may_run_unlimited(model, x)
        if not ok:
            print(json.dumps({"skipped": why}))
            return
    before = status_mib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        peak = lambda: status_mib("VmHWM")  # noqa: E731
    except OSError:  # no reset possible: fall back to the process's all-time peak
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731
    seconds = timed(fns[method], "cpu")
    print(json.dumps({"peak_mib": peak() - before, "seconds": seconds}))


def memory(series: str, width: int, device: str) -> dict[str, dict]:
    """Per method: ``peak_mib`` and ``seconds`` of one run in a fresh process (or ``skipped``)."""
    if device == "cuda":
        fns, (model, x) = setup(series, width, device)
        out = {}
        for method, fn in fns.items():
            if method == "16 unlimited":
                ok, why = may_run_unlimited(model, x)
                if not ok:
                    out[method] = {"skipped": why}
                    continue
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            seconds = timed(fn, device)
            out[method] = {
                "peak_mib": (torch.cuda.max_memory_allocated() - base) / 2**20,
                "seconds": seconds,
            }
        return out
    out = {}
    for method in METHODS:
        cmd = [sys.executable, __file__, "--child-memory", series, str(width), method]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[method] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def timing(series: str, width: int, device: str, rounds: int) -> dict[str, float]:
    """Median times over ``rounds`` rounds (after a warm-up) and median per-round ratios; the
    unlimited run only when it fits in the memory available (else NaN)."""
    fns, (model, x) = setup(series, width, device)
    if not may_run_unlimited(model, x)[0]:
        del fns["16 unlimited"]
    for fn in fns.values():  # warm-up (allocator, kernels)
        fn()
    times: dict[str, list[float]] = {m: [] for m in fns}
    for _ in range(rounds):
        for method, fn in fns.items():
            times[method].append(timed(fn, device))
    result = {
        m: statistics.median(times[m]) if m in times else math.nan for m in (*METHODS, *TIMED_ONLY)
    }
    result.update(ratios({m: t for m, t in times.items()}))
    return result


def ratios(times: dict[str, list[float]]) -> dict[str, float]:
    """Medians of the per-round ratios: one map / gradient (and / input gradient), 16 (default
    and unlimited) / one."""

    def med(a: str, b: str) -> float:
        if a not in times or b not in times:
            return math.nan
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    return {
        "ratio one/gradient": med("one map", "gradient"),
        "ratio one/input gradient": med("one map", "input gradient"),
        "ratio default/gradient": med("default map", "gradient"),
        "ratio default/input gradient": med("default map", "input gradient"),
        "ratio 16/one": med("16 settings", "one map"),
        "ratio unlimited/one": med("16 unlimited", "one map"),
    }


def sec(t: dict[str, float], k: str) -> str:
    return "not measured" if math.isnan(t.get(k, math.nan)) else f"{t[k]:.2f} s"


def mib(m: dict[str, dict], k: str) -> str:
    return m[k].get("skipped", f"{m[k].get('peak_mib', math.nan):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", default=["A", "B"], choices=sorted(SERIES))
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--rounds", type=int, default=3, help="timing rounds (median); 0: time the fresh runs"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--model", default="unet3d", choices=MODELS, help="network benchmarked")
    parser.add_argument(
        "--shape", nargs=3, type=int, metavar=("D", "H", "W"), help="an own grid (not a series)"
    )
    parser.add_argument(
        "--no-unlimited", action="store_true", help="skip the unlimited-budget runs"
    )
    parser.add_argument("--child-memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault(_MODEL_ENV, args.model)
    if args.no_unlimited:
        os.environ["LRP_BENCH_NO_UNLIMITED"] = "1"
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
    if args.rounds == 0 and args.no_memory:
        parser.error("--rounds 0 times the fresh-process runs: do not combine with --no-memory")
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
        f"width {args.width}; {args.rounds} rounds; memory: {mem_unit}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print(
        "| series | gradient | input gradient | one map | 16 settings (default budget) "
        "| 16 unlimited | one / gradient | one / input gradient | default map "
        "| default / gradient | default / input gradient | 16 / one | unlimited 16 / one "
        "| peak MiB: gradient | one map "
        "| 16 settings | 16 unlimited | plan (default budget) | load avg before / after |"
    )
    print("|---" * 19 + "|")
    for series in args.series:
        load0 = os.getloadavg()
        t = timing(series, args.width, args.device, args.rounds) if args.rounds > 0 else None
        m = {k: {} for k in METHODS} if args.no_memory else memory(series, args.width, args.device)
        if t is None:  # one fresh run each: their times and ratios
            t = {k: m[k].get("seconds", math.nan) for k in METHODS}
            t.update(ratios({k: [v] for k, v in t.items() if not math.isnan(v)}))
        _, (model, x) = setup(series, args.width, args.device)
        plan = plan_memory(model, x, len(PAPER_GRID), "paper").describe()
        del model, x
        load1 = os.getloadavg()
        print(
            f"| {series} {SERIES[series]} | {sec(t, 'gradient')} | {sec(t, 'input gradient')} "
            f"| {sec(t, 'one map')} | {sec(t, '16 settings')} | {sec(t, '16 unlimited')} "
            f"| {t['ratio one/gradient']:.2f} | {t['ratio one/input gradient']:.2f} "
            f"| {sec(t, 'default map')} | {t.get('ratio default/gradient', math.nan):.2f} "
            f"| {t.get('ratio default/input gradient', math.nan):.2f} "
            f"| **{t['ratio 16/one']:.2f}** "
            f"| {t['ratio unlimited/one']:.2f} | {mib(m, 'gradient')} | {mib(m, 'one map')} "
            f"| **{mib(m, '16 settings')}** | {mib(m, '16 unlimited')} | {plan} "
            f"| {load0[0]:.1f} / {load1[0]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
