"""Which randomisation read-out sees the model? Issue 20's measurement (docs/method.md, section 7).

Usage: python benchmarks/randomisation_survey.py PHASE RUN DATA OUT [CASE ...]
       python benchmarks/randomisation_survey.py table OUT
       python benchmarks/randomisation_survey.py readout-cost RUN DATA CASE

PHASE ``readouts`` assesses :data:`METHODS` on the cases (default: the run's held-out cases)
with one full re-initialisation (seed 1) and writes OUT/readouts/<case>/assess.csv; PHASE
``cascades`` runs :data:`CASCADE_METHODS` with every cascade order and sMPRT (4 noisy inputs)
into OUT/cascades/<case>/ (assess.csv, cascade.csv). Integrated gradients (16 gradients a map)
and occlusion (about 250 forwards a map) are left out of the cascades on this shared CPU.
Only the randomisation and contrast columns are read here, so the perturbation curves run at
one fraction and one random order (they enter no read-out below). ``table`` prints the
markdown tables of docs/method.md: per method the mean [95 % bootstrap interval] over cases
of every read-out, and per cascade order and step the logit change, how many cases skipped
it and the mean signed / shell / SSIM read-outs. ``readout-cost`` times, in CPU seconds and
one-map times (one ``explain(rules="epsilon")`` map of the case), the read-outs of one
trained / re-initialised map pair and the gradient's class contrast.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

METHODS: tuple[str, ...] = (
    "lrp:epsilon",
    "lrp:paper",
    "gradient",
    "gradient_x_input",
    "integrated_gradients(steps=16)",
    "occlusion",
    "locality_prior",
)
"""The methods of issue 20's randomisation measurement."""

CASCADE_METHODS: tuple[str, ...] = (
    "lrp:epsilon",
    "lrp:paper",
    "gradient",
    "gradient_x_input",
    "locality_prior",
)
"""The methods of the cascades phase."""

READOUTS: tuple[str, ...] = (
    "randomisation_rho",
    "randomisation_signed",
    "randomisation_shell",
    "randomisation_ssim",
    "emprt",
    "smprt",
    "contrast_rho",
    "contrast_gradient",
    "contrast_gap",
)


def measure(phase: str, run: Path, data: Path, out: Path, cases: list[str]) -> None:
    from strokelrp.atomic import write_text
    from strokelrp.data.layouts import load_case
    from strokelrp.data.preprocess import prepare_case
    from strokelrp.report.assess_run import table_text
    from strokelrp.run_files import RunDir
    from strokelrp.train.checkpoint import load_trained
    from strokelrp.trust.assess import CASCADES, assess

    torch.set_num_threads(1)
    model, ckpt = load_trained(run, checkpoint="last", device="cpu")
    chosen = cases or RunDir(run).validation_ids() or []
    for case_id in chosen:
        case = load_case(data, case_id, **ckpt.config.data_options)
        x, y = prepare_case(case, ckpt.config)
        rows, steps = [], []
        if phase == "readouts":
            groups = [(list(METHODS), (), 0)]
        else:
            groups = [(list(CASCADE_METHODS), CASCADES, 4)]
        for group, cascades, smprt in groups:
            t0 = time.perf_counter()
            got, got_steps = assess(
                model,
                torch.from_numpy(x),
                y,
                group,
                case=case_id,
                seeds=(1,),
                random_seeds=1,
                fractions=(0.1,),
                extras=False,
                cascade=bool(cascades),
                cascades=cascades,
                smprt_samples=smprt,
                channels=case.channels,
            )
            print(f"case {case_id} {group}: {time.perf_counter() - t0:.0f} s", flush=True)
            rows += got
            steps += got_steps
        folder = out / phase / case_id
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "assess.csv", table_text(list(rows[0]), rows))
        if steps:
            columns = list(dict.fromkeys(k for s in steps for k in s))
            write_text(folder / "cascade.csv", table_text(columns, steps))


def _num(v: object) -> float:
    return math.nan if v in (None, "") else float(v)  # type: ignore[arg-type]


def _cell(values: list[float]) -> str:
    from strokelrp.analysis.statistics import bootstrap_interval

    mean, low, high = bootstrap_interval([v for v in values if not math.isnan(v)])
    return "-" if math.isnan(mean) else f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def cost(out: Path) -> None:
    """Per method of the cascades phase, mean over cases: its own map's time, both phases'
    ``seconds`` in one-map times (the unit: the lrp:epsilon map of the same case, as in
    docs/benchmarks.md), and what the three cascades and sMPRT added (their difference: the
    curves are the same in both phases), beside the maps they computed (steps not skipped
    + 2 x 4 sMPRT maps). Wall times on a shared CPU: an estimate."""
    from strokelrp.run_files import read_csv

    base = {
        (r["case"], r["method"]): r
        for p in sorted(out.glob("readouts/*/assess.csv"))
        for r in read_csv(p)
    }
    more = [r for p in sorted(out.glob("cascades/*/assess.csv")) for r in read_csv(p)]
    steps = [r for p in sorted(out.glob("cascades/*/cascade.csv")) for r in read_csv(p)]
    print(
        "\n| method | own map (s) | readouts phase (one-map times) | cascades + sMPRT phase "
        "| added | maps added |"
    )
    print("|---" * 6 + "|")
    for method in dict.fromkeys(r["method"] for r in more):
        unit, plain, full, maps = [], [], [], []
        for r in (r for r in more if r["method"] == method):
            b = base[(r["case"], method)]
            one = _num(base[(r["case"], "lrp:epsilon")]["map_seconds"])
            unit.append(_num(b["map_seconds"]))
            plain.append(_num(b["seconds"]) / one)
            full.append(_num(r["seconds"]) / one)
            done = [s for s in steps if s["case"] == r["case"] and s["method"] == method]
            maps.append(sum(1 for s in done if not int(s["skipped"])) + 8)
        n = len(unit)
        print(
            f"| {method} | {sum(unit) / n:.2f} | {sum(plain) / n:.0f} | {sum(full) / n:.0f} "
            f"| {(sum(full) - sum(plain)) / n:.0f} | {sum(maps) / n:.0f} |"
        )


def table(out: Path) -> None:
    from strokelrp.run_files import read_csv

    rows = [r for p in sorted(out.glob("readouts/*/assess.csv")) for r in read_csv(p)]
    rows += [
        r | {"method": f"{r['method']} (sMPRT run)"}
        for p in sorted(out.glob("cascades/*/assess.csv"))
        for r in read_csv(p)
    ]
    steps = [r for p in sorted(out.glob("cascades/*/cascade.csv")) for r in read_csv(p)]
    print(f"cases: {', '.join(sorted({r['case'] for r in rows}))}")
    print("| method | " + " | ".join(READOUTS) + " |")
    print("|---" * (len(READOUTS) + 1) + "|")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        print(
            f"| {method} | "
            + " | ".join(_cell([_num(r[k]) for r in mine]) for k in READOUTS)
            + " |"
        )
    cost(out)
    for order in dict.fromkeys(s["order"] for s in steps):
        print(f"\n{order}: mean over cases (skipped: steps whose logit change < threshold)")
        mine = [s for s in steps if s["order"] == order]
        methods = list(dict.fromkeys(s["method"] for s in mine))
        print("| step | block | logit change | skipped | " + " | ".join(methods) + " |")
        print("|---" * (len(methods) + 4) + "|")
        for k in sorted({int(s["step"]) for s in mine}):
            at = [s for s in mine if int(s["step"]) == k]
            block = at[0]["layer"]
            change = [_num(s["logit_change"]) for s in at if s["method"] == methods[0]]
            skipped = sum(int(s["skipped"]) for s in at if s["method"] == methods[0])
            cells = []
            for m in methods:
                got = [s for s in at if s["method"] == m and not int(s["skipped"])]
                cells.append(
                    "-"
                    if not got
                    else "/".join(
                        f"{sum(_num(s[c]) for s in got) / len(got):.2f}"
                        for c in ("signed_rho", "shell_rho", "ssim")
                    )
                )
            lo, hi = min(change), max(change)
            print(
                f"| {k} | {block} | {lo:.3f}-{hi:.3f} | {skipped} of {len(change)} | "
                + " | ".join(cells)
                + " |"
            )


def readout_cost(run: Path, data: Path, case_id: str) -> None:
    from strokelrp.analysis.assess import within
    from strokelrp.analysis.randomisation import emprt
    from strokelrp.attribution import attribution_input, gradient, reinitialised
    from strokelrp.data.layouts import load_case
    from strokelrp.data.preprocess import prepare_case
    from strokelrp.lrp.engine import explain, target_weights
    from strokelrp.train.checkpoint import load_trained
    from strokelrp.trust.assess import prepare_context

    torch.set_num_threads(1)
    model, ckpt = load_trained(run, checkpoint="last", device="cpu")
    case = load_case(data, case_id, **ckpt.config.data_options)
    x, y = prepare_case(case, ckpt.config)
    xt = attribution_input(model, torch.from_numpy(x))
    ctx = prepare_context(model, xt, y)
    w = target_weights("prediction", model(xt).detach())[0]

    def cpu(f, n: int = 5) -> float:  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        for _ in range(n):
            f()
        return (time.process_time() - t0) / n

    unit = cpu(lambda: explain(model, xt, rules="epsilon", target=w))
    r = explain(model, xt, rules="epsilon", target=w).relevance[0].detach()
    other = explain(reinitialised(model, 1).eval(), xt, rules="epsilon", target=w)
    o = other.relevance[0].detach()

    bg = torch.zeros_like(w)
    bg[:, 0] = w[:, 1]
    parts = {
        "Spearman of R and of abs(R), shell-wise Spearman, SSIM (one pair)": lambda: (
            ctx.randomisation(r, o)
        ),
        "eMPRT (one pair)": lambda: emprt(within(ctx.brain, r, False), within(ctx.brain, o, False)),
        "gradient's class contrast (2 gradients, per case)": lambda: (
            gradient(model, xt, w),
            gradient(model, xt, bg),
        ),
    }
    print(f"case {case_id}, x {tuple(x.shape)}, one map (explain epsilon) {unit:.3f} s CPU")
    print("| part | CPU (s) | one-map times |")
    print("|---|---|---|")
    for name, f in parts.items():
        t = cpu(f)
        print(f"| {name} | {t:.3f} | {t / unit:.2f} |")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "table":
        table(Path(args[1]))
    elif args and args[0] == "readout-cost":
        readout_cost(Path(args[1]), Path(args[2]), args[3])
    elif len(args) >= 4 and args[0] in ("readouts", "cascades"):
        measure(args[0], Path(args[1]), Path(args[2]), Path(args[3]), args[4:])
    else:
        raise SystemExit(__doc__)
