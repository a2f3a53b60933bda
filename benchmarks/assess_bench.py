"""Cost of a full assessment of one case, in one-map times (docs/benchmarks.md).

Usage: python benchmarks/assess_bench.py RUN DATA CASE [--cascade] [--no-extras]
       [--profile quick|full] [--methods M ...] [--occlusion-patch D,H,W] [--ig-steps N]
       [--random-orders N]

The unit is one map of the default LRP preset (``strokelrp.explain(model, x)``, the engine's
public call; ``strokelrp.attribute(model, x, "lrp:<default>")`` is printed beside it) on the
same case, measured in the same run before and after the assessment; the smaller of the two
is used (the stricter ratio). The assessment is :func:`strokelrp.trust.assess.assess`'s
work split into its phases: the shared per-case part (target, ablation, prior, the random
curves of every variant), then each method (its maps, re-initialised and contrast maps, its
curves). ``--profile quick`` uses :data:`strokelrp.trust.assess.PROFILES` ``["quick"]``
(:func:`strokelrp.trust.assess.profile_settings`);
``--occlusion-patch``, ``--ig-steps`` and ``--random-orders`` replace the profile's values (to
measure a candidate profile). One torch thread; wall and CPU seconds; load averages printed.

It also counts the inputs the model (and its re-initialised copies) scores without a gradient
(perturbed, occluded and ablated inputs and S(x)) and times one batch of the assessment's
size in the same run, so that the table shows what those forwards alone cost: the part of
the total that the measures' definitions fix (docs/assess.md, "Cost").
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import strokelrp
from strokelrp.analysis.assess import FRACTIONS, variants
from strokelrp.device import batched_layout
from strokelrp.lrp.presets import DEFAULT_PRESET
from strokelrp.trust.assess import (
    ASSESS_OPTIONS,
    DEFAULT_METHODS,
    PROFILES,
    assess_method,
    prepare_context,
    profile_settings,
)


def timed(fn, repeat: int = 3) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall and CPU seconds of ``repeat`` calls after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return sorted(walls)[repeat // 2], sorted(cpus)[repeat // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("data")
    parser.add_argument("case")
    parser.add_argument("--cascade", action="store_true")
    parser.add_argument("--no-extras", dest="extras", action="store_false")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--occlusion-patch", type=lambda t: tuple(int(v) for v in t.split(",")))
    parser.add_argument("--ig-steps", type=int)
    parser.add_argument("--random-orders", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, config = strokelrp.load_run(args.run)
    x, y = strokelrp.prepare_case(strokelrp.load_case(args.data, args.case), config)
    xt = torch.from_numpy(x)[None]

    def unit() -> tuple[float, float]:
        return timed(lambda: strokelrp.explain(model, xt, rules=DEFAULT_PRESET))

    scored = [0]  # inputs through a copy of the model without a gradient

    def count(module: torch.nn.Module, inputs: tuple, _out: object) -> None:  # type: ignore[type-arg]
        if type(module) is type(model) and not torch.is_grad_enabled():
            scored[0] += inputs[0].shape[0]

    load0 = os.getloadavg()
    unit0 = unit()
    attr = timed(lambda: strokelrp.attribute(model, x, f"lrp:{DEFAULT_PRESET}"))
    hook = torch.nn.modules.module.register_module_forward_hook(count)
    phases: list[tuple[str, float, float, float | None]] = []  # name, wall, cpu, own map (s)
    w, c = time.perf_counter(), time.process_time()
    settings = {"seeds": (1, 2, 3), "random_seeds": 5, "extras": args.extras}
    settings |= {"fractions": FRACTIONS, "options": ASSESS_OPTIONS}
    settings = profile_settings(args.profile, settings)
    options = {k: dict(v) for k, v in settings["options"].items()}
    if args.occlusion_patch is not None:
        options["occlusion"] = {"patch": args.occlusion_patch}
    if args.ig_steps is not None:
        options["integrated_gradients"] = {"steps": args.ig_steps}
    if args.random_orders is not None:
        settings["random_seeds"] = args.random_orders
    ctx = prepare_context(
        model, xt, y, settings["random_seeds"], settings["fractions"], options=options
    )
    phases.append(("per case: target, ablation, prior", *_since(w, c), None))
    w, c = time.perf_counter(), time.process_time()
    names = tuple(variants()) if settings["extras"] else ("element",)
    for variant in names:
        ctx.random_aopc(model, ctx.weights, "prediction", variant)
    seeds = settings["random_seeds"]
    name = f"per case: {seeds * len(names)} random curves ({len(names)} variants x {seeds} seeds)"
    phases.append((name, *_since(w, c), None))
    for method in args.methods:
        w, c = time.perf_counter(), time.process_time()
        row, _ = assess_method(
            model,
            ctx,
            method,
            settings["seeds"],
            cascade=args.cascade,
            extras=settings["extras"],
        )
        phases.append((method, *_since(w, c), row["map_seconds"]))
    hook.remove()
    batch = batched_layout(xt.repeat(ctx.batch, 1, 1, 1, 1))
    with torch.no_grad():
        per_input = timed(lambda: model.eval()(batch))
    per_input = (per_input[0] / ctx.batch, per_input[1] / ctx.batch)
    unit1 = unit()
    load1 = os.getloadavg()
    one_wall, one_cpu = min(unit0[0], unit1[0]), min(unit0[1], unit1[1])
    print(
        f"case {args.case}, x {tuple(x.shape)}, torch threads 1, cascade {args.cascade}, "
        f"profile {args.profile}, extras {settings['extras']}, "
        f"batch {ctx.batch}, options {ctx.options}"
    )
    print(f"load average before {load0[0]:.1f} / after {load1[0]:.1f}")
    print(
        f"unit: explain(rules={DEFAULT_PRESET!r}) {unit0[0]:.3f} s before, {unit1[0]:.3f} s "
        f"after (CPU {unit0[1]:.3f} / {unit1[1]:.3f}); attribute('lrp:{DEFAULT_PRESET}') "
        f"{attr[0]:.3f} s"
    )
    print("| part | own map (s) | wall (s) | CPU (s) | one-map times (wall) | (CPU) |")
    print("|---|---|---|---|---|---|")
    total_w = total_c = 0.0
    for name, wall, cpu, own in phases:
        total_w, total_c = total_w + wall, total_c + cpu
        own_text = "" if own is None else f"{own:.2f}"
        print(
            f"| {name} | {own_text} | {wall:.1f} | {cpu:.1f} | {wall / one_wall:.1f} "
            f"| {cpu / one_cpu:.1f} |"
        )
    print(
        f"| **all ({len(args.methods)} methods)** | | **{total_w:.1f}** | **{total_c:.1f}** "
        f"| **{total_w / one_wall:.0f}** | **{total_c / one_cpu:.0f}** |"
    )
    fw, fc = scored[0] * per_input[0], scored[0] * per_input[1]
    print(
        f"| of which {scored[0]} inputs scored without a gradient, at "
        f"{1000 * per_input[1]:.1f} ms CPU each (a batch of {ctx.batch}) | | {fw:.1f} | "
        f"{fc:.1f} | {fw / one_wall:.0f} | {fc / one_cpu:.0f} |"
    )


def _since(wall: float, cpu: float) -> tuple[float, float]:
    return time.perf_counter() - wall, time.process_time() - cpu


if __name__ == "__main__":
    main()
