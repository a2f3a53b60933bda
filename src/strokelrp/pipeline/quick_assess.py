"""A small trust assessment of one run, for the demo's report: which maps can be trusted?

:func:`quick_assess` runs :func:`strokelrp.pipeline.assess.assess_run` (the public
``strokelrp assess``) on two cases of a run with a few methods: the default LRP preset, the
paper's preset, gradient x input, the model-free locality prior and, when the run has a sweep,
the default preset filtered at the sweep's sweet spots pass (0, alpha_0) and clamp
(0, alpha_0), so that the report can say whether a sweet spot is faithful. It uses
``assess --profile quick`` (:data:`strokelrp.trust.assess.PROFILES`) and the cascade. It writes
``RUN/assess/`` (assess.csv, assess_curves.csv, cascade.csv), where the report looks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from strokelrp import run_files
from strokelrp.lrp.presets import DEFAULT_PRESET

METHODS: tuple[str, ...] = (
    f"lrp:{DEFAULT_PRESET}",
    "lrp:paper",
    "gradient_x_input",
    "locality_prior",
)
"""The methods every quick assessment covers: the default preset first."""


def sweet_spot_methods(run: Path, rules: str) -> list[str]:
    """``lrp:<rules>+<kind>:0,<alpha_0>`` for the sweet spot of each filter kind (pass, clamp)
    in the run's sweep (:func:`strokelrp.analysis.calculus.sweet_spot`, as the report computes
    it); none without a sweep, without a finite alpha_0 or when alpha_0 is the raw map."""
    from strokelrp.analysis.calculus import sweet_spots
    from strokelrp.analysis.table import read_table

    table = run / run_files.SWEEP_TABLE
    if not table.is_file():
        return []
    rows = [r for r in read_table(table) if r["rules"] == rules]
    return [
        f"lrp:{rules}+{kind}:0,{alpha0:g}"
        for kind, alpha0 in sweet_spots(rows).items()
        if math.isfinite(alpha0) and alpha0 < 1.0
    ]


def quick_cases(run: Path, data: Path, n: int = 2) -> tuple[list[str], str]:
    """The first ``n`` held-out cases of the run, else (no held-out split) its first ``n``
    training cases: (ids, ``"held-out"`` or ``"training"``)."""
    from strokelrp.data.layouts import discover_cases
    from strokelrp.run_files import RunDir

    held = RunDir(run).validation_ids()
    if held:
        return held[:n], "held-out"
    found = RunDir(run)
    options = found.read_config().data_options if found.is_run() else {}  # the run's layout
    return [f.case_id for f in discover_cases(data, **options) if not f.split][:n], "training"


def quick_assess(
    run: str | Path,
    data: str | Path,
    *,
    methods: Sequence[str] = METHODS,
    rules: str = DEFAULT_PRESET,
    n_cases: int = 2,
    cascade: bool = True,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[Path, list[str], str]:
    """Assess ``methods`` (plus the sweet-spot settings of ``rules``) on ``n_cases`` cases of
    ``run`` into ``RUN/assess/``: (path of assess.csv, the cases, ``held-out``/``training``)."""
    from strokelrp.pipeline.assess import assess_run

    run, data = Path(run), Path(data)
    cases, kind = quick_cases(run, data, n_cases)
    chosen = list(methods)
    chosen += [m for m in sweet_spot_methods(run, rules) if m not in chosen]
    path = assess_run(
        run,
        data,
        run / run_files.ASSESS_DIR,
        cases=cases,
        methods=chosen,
        device=device,
        cascade=cascade,
        profile="quick",
        log=log,
    )
    return path, cases, kind
