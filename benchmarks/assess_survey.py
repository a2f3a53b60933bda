"""Which rules pass? Assess a list of methods on a run's held-out cases (docs/method.md).

Usage: python benchmarks/assess_survey.py RUN DATA OUT GROUP  (GROUP: lrp, filters, baselines,
occlusion). Writes OUT/GROUP/assess.csv through strokelrp.report.assess_run (one thread).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from strokelrp.lrp.presets import PRESETS
from strokelrp.report.assess_run import assess_run

GROUPS: dict[str, list[str]] = {
    "lrp": [m for p in PRESETS for m in (f"lrp:{p}", f"lrp:{p}(target=contrastive)")],
    "filters": [
        "lrp:paper+pass:0,0.4",
        "lrp:paper+clamp:0,0.2",
        "lrp:paper+pass:0,0.2",
        "lrp:recommended+pass:0,0.2",
        "lrp:epsilon+pass:0,0.4",
        "lrp:epsilon+clamp:0,0.2",
        "lrp:composite+pass:0,0.4",
        "lrp:composite+clamp:0,0.2",
        "lrp:epsilon(epsilon=0.01)",
        "lrp:epsilon(epsilon=1.0)",
        "lrp:epsilon(batchnorm=pass)",
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


def main() -> None:
    run, data, out, group = sys.argv[1:5]
    torch.set_num_threads(1)
    path = assess_run(
        run,
        data,
        Path(out) / group,
        methods=GROUPS[group],
        extras=False,
        log=lambda s: print(s, flush=True),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
