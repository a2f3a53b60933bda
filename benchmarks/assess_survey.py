"""Which rules pass? Assess a list of methods on a run's held-out cases (docs/method.md).

Usage: python benchmarks/assess_survey.py RUN DATA OUT GROUP [CASE ...] [--seeds N] [--extras]
       python benchmarks/assess_survey.py table OUT [OUT ...] [--only METHOD ...] [--per-case]
       python benchmarks/assess_survey.py removal-table OUT [OUT ...]  (issue 20's tables)
       python benchmarks/assess_survey.py compare FULL QUICK  (the profiles' verdicts side by side)
         (the markdown table of OUT/*/assess.csv: means over cases; --per-case adds a row per case)
  (GROUP: main, presets, default, lrp, filters, grid-epsilon, grid-paper, variants, baselines,
occlusion, reference, choice). Writes OUT/GROUP[-CASES]/assess.csv through strokelrp.pipeline.assess
(one thread; the voxel-level and other-removal extras only with ``--extras``); default cases:
the run's held-out cases. ``--seeds N``:
N re-initialisations for randomisation_rho (default 3; randomisation is not one of the five
checks, so a large grid may use 1).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from strokelrp.lrp.filters import PAPER_GRID
from strokelrp.lrp.presets import DEFAULT_PRESET, PRESETS
from strokelrp.pipeline.assess import assess_run


def grid_methods(preset: str) -> list[str]:
    """``lrp:<preset>`` with each of the paper's 16 filter settings (raw first)."""
    return [
        f"lrp:{preset}" if f is None else f"lrp:{preset}+{f.kind}:{f.low:g},{f.high:g}"
        for f in PAPER_GRID
    ]


BASELINES: tuple[str, ...] = (
    "gradient_x_input",
    "gradient",
    "integrated_gradients(steps=16)",
    "gradcam",
    "locality_prior",
)
"""The baselines every survey group with baselines covers, in the survey's order."""

GROUPS: dict[str, list[str]] = {
    "main": [
        "lrp:paper",
        "lrp:epsilon",
        "lrp:composite",
        "lrp:gamma",
        "lrp:recommended",
        "lrp:zplus",
        "lrp:epsilon(target=contrastive)",
        "lrp:composite(target=contrastive)",
        *BASELINES,
    ],
    "presets": [  # every registered preset from the prediction start, the survey's contrastives
        *(f"lrp:{p}" for p in PRESETS),
        f"lrp:{DEFAULT_PRESET}(target=contrastive)",
        "lrp:composite(target=contrastive)",
        *BASELINES,
    ],
    "default": [f"lrp:{DEFAULT_PRESET}"],
    "grid-epsilon": grid_methods(DEFAULT_PRESET),
    "grid-paper": grid_methods("paper"),
    "lrp": [m for p in PRESETS for m in (f"lrp:{p}", f"lrp:{p}(target=contrastive)")],
    "filters": [
        "lrp:paper+pass:0,0.4",
        "lrp:paper+clamp:0,0.2",
        "lrp:recommended+pass:0,0.2",
        "lrp:epsilon+pass:0,0.4",
        "lrp:epsilon+clamp:0,0.2",
    ],
    "variants": [
        "lrp:epsilon(epsilon=0.01)",
        "lrp:epsilon(batchnorm=pass,epsilon=1e-9)",
        "lrp:composite(first=flat)",
        "lrp:composite(first=w2)",
        "lrp:gamma(gamma=1.0)",
    ],
    "baselines": [
        "gradient",
        "gradient_x_input",
        "integrated_gradients(steps=16)",
        "gradcam",
        "locality_prior",
    ],
    "occlusion": ["occlusion"],
    "reference": [  # issue 20: zero-referenced maps beside their healthy / mirror versions
        "lrp:epsilon",
        "lrp:epsilon(reference=healthy)",
        "lrp:epsilon(reference=mirror)",
        "lrp:paper",
        "gradient",
        "gradient_x_input",
        "gradient_x_input(reference=healthy)",
        "integrated_gradients(steps=16)",
        "integrated_gradients(steps=16,reference=healthy)",
        "occlusion",
        "occlusion(reference=healthy)",
        "locality_prior",
    ],
    "choice": [  # issue 20's default on run B and seed 1: the default set, healthy reference
        "lrp:epsilon",
        "lrp:epsilon(reference=healthy)",
        "lrp:epsilon(reference=mirror)",
        "gradient",
        "gradient_x_input(reference=healthy)",
        "integrated_gradients(steps=16,reference=healthy)",
        "occlusion(reference=healthy)",
        "gradcam",
        "locality_prior",
    ],
}


def table(folders: list[Path], only: list[str], per_case: bool) -> None:
    """Print the markdown table of the assess.csv files ``folders`` name (means over cases);
    ``only``: these methods alone; ``per_case``: one row per case x method, then the means."""
    from strokelrp.analysis.assess import summarize_methods
    from strokelrp.run_files import read_csv

    paths = []
    for f in folders:  # a file, a folder holding assess.csv, or a folder of such folders
        own = f if f.is_file() else f / "assess.csv"
        paths += [own] if own.is_file() else sorted(f.glob("*/assess.csv"))
    rows = [r for path in paths for r in read_csv(path)]
    rows = [r for r in rows if not only or r["method"] in only]
    seen = [(r["case"], r["method"]) for r in rows]
    if len(set(seen)) < len(seen):
        raise SystemExit("a case x method appears twice under these folders: pick one folder")
    cases = sorted({r["case"] for r in rows}, key=lambda c: int(c) if c.isdigit() else c)
    print(f"cases {', '.join(cases)}")
    print(
        "| method | brain | lesion | MoRF | LeRF | random | MoRF/random (median) "
        "| rand. rho | prior rho | contrast rho | ablation rho | passes |"
    )
    print("|---" * 12 + "|")
    order = {c: i for i, c in enumerate(cases)}
    per_row = sorted(rows, key=lambda r: order[r["case"]]) if per_case else []
    labelled = [(f"case {r['case']}", summarize_methods([r])[0]) for r in per_row]
    labelled += [(str(s["cases"]), s) for s in summarize_methods(rows)]
    for where, s in labelled:
        label = f"{s['method']} ({where})"
        keys = ("brain_share", "lesion_share", "faithful", "contrast", "ablation")
        marks = {k: ("" if s[f"{k}_ok"] else " ✗") for k in keys}
        cells = [
            f"{num(s['brain_share'], 2)}{marks['brain_share']}",
            f"{num(s['lesion_share'], 2)}{marks['lesion_share']}",
            num(s["morf_aopc"], 2),
            num(s["lerf_aopc"], 2),
            num(s["random_aopc"], 3),
            f"{num(s['morf_over_random'], 1)}{marks['faithful']}",
            num(s["randomisation_rho"], 2),
            num(s["prior_rho"], 2),
            f"{num(s['contrast_rho'], 2)}{marks['contrast']}",
            f"{num(s['ablation_rho'], 2)}{marks['ablation']}",
            "yes" if s["passes"] else "no",
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


def removal_table(folders: list[Path]) -> None:
    """Print the markdown tables of issue 20 from OUT/*/assess.csv: per method the mean over
    cases [95 % bootstrap interval] of the AOPC gap to the locality prior under every removal
    kind, the gap to random, LeRF, and how the infarct's evidence reads (positive ADC / rCBF
    share in the lesion), lesion share and mass accuracy; then the cases in which each method
    beats the prior, per removal."""
    from strokelrp.analysis.statistics import bootstrap_interval
    from strokelrp.run_files import read_csv

    paths = [p for f in folders for p in ([f / "assess.csv"] if (f / "assess.csv").is_file()
             else sorted(f.glob("*/assess.csv")))]  # fmt: skip
    rows = [r for path in paths for r in read_csv(path)]
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def val(r: dict, key: str) -> float:
        return float(r[key]) if r.get(key) not in (None, "") else math.nan

    def gap(r: dict, removal: str) -> float:
        if removal == "impute":
            return val(r, "prior_gap")
        return val(r, f"morf_aopc_{removal}") - val(r, f"prior_aopc_{removal}")

    def cell(values: list[float]) -> str:
        mean, low, high = bootstrap_interval(values)
        return "-" if math.isnan(mean) else f"{mean:.3f} [{low:.2f}, {high:.2f}]"

    removals = ("impute", "healthy", "mean", "zero")
    cases = sorted({r["case"] for r in rows})
    print(f"cases: {', '.join(cases)}")
    print("| method | " + " | ".join(f"prior gap ({k})" for k in removals)
          + " | random gap | LeRF | ADC + | rCBF + | lesion share | mass acc. |")  # fmt: skip
    print("|---" * (len(removals) + 7) + "|")
    for m in methods:
        group = [r for r in rows if r["method"] == m]
        cells = [cell([gap(r, k) for r in group]) for k in removals]
        cells += [cell([val(r, k) for r in group]) for k in
                  ("random_gap", "lerf_aopc", "positive_adc", "positive_rcbf", "lesion_share",
                   "mass_accuracy")]  # fmt: skip
        print(f"| {m} | " + " | ".join(cells) + " |")
    print()
    print("| method | " + " | ".join(f"beats prior ({k})" for k in removals) + " |")
    print("|---" * (len(removals) + 1) + "|")
    for m in methods:
        group = [r for r in rows if r["method"] == m]
        counts = []
        for k in removals:
            g = [gap(r, k) for r in group]
            counts.append(f"{sum(v > 0 for v in g)} of {sum(not math.isnan(v) for v in g)}")
        print(f"| {m} | " + " | ".join(counts) + " |")


def _rows(folder: Path) -> list[dict]:
    """The rows of FOLDER/assess.csv, or of every FOLDER/*/assess.csv."""
    from strokelrp.run_files import read_csv

    own = folder / "assess.csv"
    paths = [own] if own.is_file() else sorted(folder.glob("*/assess.csv"))
    return [r for path in paths for r in read_csv(path)]


def compare(full: Path, quick: Path) -> None:
    """Print, per method and check (:data:`strokelrp.analysis.assess.CHECKS`), the verdict of
    the ``full`` and the ``quick`` assessments of the same cases (each on its bootstrap
    interval) and the means they rest on, then how many verdicts agree; only the cases both
    hold count. Methods are matched by their spec without ``steps=16`` (the quick profile sets
    integrated gradients' steps)."""
    from strokelrp.analysis.assess import CHECK_MEASURES, CHECKS, summarize_methods

    def key(method: str) -> str:
        return method.replace("steps=16,", "").replace("(steps=16)", "")

    tables = [_rows(f) for f in (full, quick)]
    common = set.intersection(*({r["case"] for r in rows} for rows in tables))
    print(f"cases in both: {', '.join(sorted(common))}")
    tables = [[r for r in rows if r["case"] in common] for rows in tables]
    sides = [{key(s["method"]): s for s in summarize_methods(rows)} for rows in tables]
    same = total = 0
    print("| method | " + " | ".join(CHECKS) + " |")
    print("|---" * (len(CHECKS) + 1) + "|")
    for method in [m for m in sides[0] if m in sides[1]]:
        cells = []
        for check in CHECKS:
            a, b = (side[method] for side in sides)
            ok_a, ok_b = a[f"{check}_ok"], b[f"{check}_ok"]
            measure = CHECK_MEASURES[check]
            mark = "" if ok_a == ok_b else " **differs**"
            cells.append(
                f"{'pass' if ok_a else 'fail'} / {'pass' if ok_b else 'fail'} "
                f"({a[measure]:.2f} / {b[measure]:.2f}){mark}"
            )
            same, total = same + (ok_a == ok_b), total + 1
        print(f"| {method} | " + " | ".join(cells) + " |")
    print(f"\nverdicts that agree: {same} of {total}")


def num(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals; ``-`` for NaN (undefined in every case)."""
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def main() -> None:
    args = sys.argv[1:]
    if args[0] == "compare":
        compare(Path(args[1]), Path(args[2]))
        return
    if args[0] == "removal-table":
        removal_table([Path(f) for f in args[1:]])
        return
    if args[0] == "table":
        only = [args[i + 1] for i, a in enumerate(args) if a == "--only"]
        folders = [
            a for i, a in enumerate(args[1:], 1) if a != "--only" and args[i - 1] != "--only"
        ]
        per_case = "--per-case" in folders
        table([Path(f) for f in folders if f != "--per-case"], only, per_case)
        return
    seeds = 3
    if "--seeds" in args:
        at = args.index("--seeds")
        seeds = int(args[at + 1])
        del args[at : at + 2]
    extras = "--extras" in args
    args = [a for a in args if a != "--extras"]
    run, data, out, group, *cases = args
    torch.set_num_threads(1)
    path = assess_run(
        run,
        data,
        Path(out) / "-".join([group, *cases]),
        cases=cases or None,
        methods=GROUPS[group],
        seeds=tuple(range(1, seeds + 1)),
        extras=extras,
        log=lambda s: print(s, flush=True),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
