"""Cost of a full assessment of one case against one map, per method (docs/benchmarks.md).

Usage: python benchmarks/assess_bench.py RUN DATA CASE [--cascade]
Prints a markdown table: one map (s), the method's assessment (s), their ratio, and the
per-case shared work (target, ablation, locality prior, random orderings). One thread.
"""

from __future__ import annotations

import sys
import time

import torch

import strokelrp
from strokelrp.analysis.assess import DEFAULT_METHODS, assess_method, prepare_context


def main() -> None:
    run, data, case_id = sys.argv[1:4]
    cascade = "--cascade" in sys.argv
    torch.set_num_threads(1)
    model, config = strokelrp.load_run(run)
    x, y = strokelrp.prepare_case(strokelrp.load_case(data, case_id), config)
    xt = torch.from_numpy(x)[None]
    t = time.perf_counter()
    ctx = prepare_context(model, xt, y)
    ctx.random_aopc(model, ctx.weights, "prediction", "element")
    ctx.random_aopc(model, ctx.weights, "prediction", "voxel")
    ctx.random_aopc(model, ctx.weights, "prediction", "mean")
    shared = time.perf_counter() - t
    print(f"case {case_id}, {tuple(x.shape)}, cascade {cascade}, torch threads 1")
    print("| method | one map (s) | assessment (s) | ratio |")
    print("|---|---|---|---|")
    total = 0.0
    for method in DEFAULT_METHODS:
        strokelrp.attribute(model, x, method)  # warm-up
        t = time.perf_counter()
        strokelrp.attribute(model, x, method)
        one = time.perf_counter() - t
        t = time.perf_counter()
        assess_method(model, ctx, method, cascade=cascade)
        full = time.perf_counter() - t
        total += full
        print(f"| {method} | {one:.2f} | {full:.1f} | {full / one:.0f} |", flush=True)
    print(f"| shared per case (target, ablation, prior, 15 random curves) | | {shared:.1f} | |")
    print(f"| all methods | | {total + shared:.1f} | |")


if __name__ == "__main__":
    main()
