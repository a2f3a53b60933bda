"""Which rules pass? Assess a list of methods on a run's held-out cases (docs/method.md).

Usage: python benchmarks/assess_survey.py RUN DATA OUT GROUP [CASE ...]
       python benchmarks/assess_survey.py table OUT      (the markdown table of OUT/*/assess.csv)
  (GROUP: main, lrp,
filters, variants, baselines, occlusion). Writes OUT/GROUP[-CASES]/assess.csv through
strokelrp.report.assess_run (one thread, no voxel/mean-baseline extras); default cases: the
run's held-out cases.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from strokelrp.lrp.presets import PRESETS
from strokelrp.report.assess_run import assess_run

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
        "gradient_x_input",
        "gradient",
        "integrated_gradients(steps=16)",
        "gradcam",
        "locality_prior",
    ],
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
}


def table(folder: Path) -> None:
    """Print the markdown table of every assess.csv under ``folder`` (means over cases)."""
    from strokelrp.analysis.assess import summarize_methods
    from strokelrp.run_files import read_csv

    rows = [r for path in sorted(folder.glob("*/assess.csv")) for r in read_csv(path)]
    cases = sorted({r["case"] for r in rows}, key=lambda c: int(c) if c.isdigit() else c)
    print(f"cases {', '.join(cases)}")
    print(
        "| method | brain | lesion | MoRF | LeRF | random | MoRF/random (median) "
        "| rand. rho | prior rho | contrast rho | ablation rho | passes |"
    )
    print("|---" * 12 + "|")
    for s in summarize_methods(rows):
        keys = ("brain_share", "lesion_share", "faithful", "contrast", "ablation")
        marks = {k: ("" if s[f"{k}_ok"] else " ✗") for k in keys}
        print(
            f"| {s['method']} ({s['cases']}) | {s['brain_share']:.2f}{marks['brain_share']} "
            f"| {s['lesion_share']:.2f}{marks['lesion_share']} | {s['morf_aopc']:.2f} "
            f"| {s['lerf_aopc']:.2f} | {s['random_aopc']:.3f} "
            f"| {s['morf_over_random']:.1f}{marks['faithful']} | {s['randomisation_rho']:.2f} "
            f"| {s['prior_rho']:.2f} | {s['contrast_rho']:.2f}{marks['contrast']} "
            f"| {s['ablation_rho']:.2f}{marks['ablation']} | {'yes' if s['passes'] else 'no'} |"
        )


def main() -> None:
    if sys.argv[1] == "table":
        table(Path(sys.argv[2]))
        return
    run, data, out, group, *cases = sys.argv[1:]
    torch.set_num_threads(1)
    path = assess_run(
        run,
        data,
        Path(out) / "-".join([group, *cases]),
        cases=cases or None,
        methods=GROUPS[group],
        extras=False,
        log=lambda s: print(s, flush=True),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
