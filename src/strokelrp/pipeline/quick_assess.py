"""A small trust assessment of one run, for the demo's report: which maps can be trusted?

:func:`quick_assess` runs :func:`strokelrp.report.assess_run.assess_run` (the public
``strokelrp assess``) on two cases of a run with a few methods: the default LRP preset, the
paper's preset, gradient x input, the model-free locality prior and, when the run has a sweep,
the default preset filtered at the sweep's sweet spot pass (0, alpha_0), so that the report
can say whether the sweet spot is faithful. Perturbation fractions are the full grid; the
re-initialisations (3) and random orders (5) are the documented minimum; the voxel-level and
mean-baseline extras are left out. It writes ``RUN/assess/`` (assess.csv, assess_curves.csv,
cascade.csv), where the report looks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from strokelrp import run_files

METHODS: tuple[str, ...] = (
    "lrp:epsilon",
    "lrp:paper",
    "gradient_x_input",
    "locality_prior",
)
"""The methods every quick assessment covers (``lrp:epsilon`` is the default preset)."""


def sweet_spot_method(run: Path, rules: str) -> str | None:
    """``lrp:<rules>+pass:0,<alpha_0>`` for the sweet spot of the run's sweep (pass filters,
    :func:`strokelrp.analysis.calculus.sweet_spot`), None without a sweep, without a finite
    alpha_0 or when alpha_0 is the raw map (alpha = 1)."""
    from strokelrp.analysis.calculus import mu_matrix, sweet_spot
    from strokelrp.analysis.table import read_table

    table = run / run_files.SWEEP_TABLE
    if not table.is_file():
        return None
    rows = [r for r in read_table(table) if r["rules"] == rules]
    mu, alphas, _ = mu_matrix(rows, kind="pass")
    if len(alphas) < 2:
        return None
    alpha0 = sweet_spot(mu, alphas).alpha0
    if not math.isfinite(alpha0) or alpha0 >= 1.0:
        return None
    return f"lrp:{rules}+pass:0,{alpha0:g}"


def quick_cases(run: Path, data: Path, n: int = 2) -> tuple[list[str], str]:
    """The first ``n`` held-out cases of the run, else (no held-out split) its first ``n``
    training cases: (ids, ``"held-out"`` or ``"training"``)."""
    from strokelrp.data.isles2017 import discover_cases
    from strokelrp.report.assess_run import heldout_cases

    held = heldout_cases(run)
    if held:
        return held[:n], "held-out"
    return [f.case_id for f in discover_cases(data)][:n], "training"


def quick_assess(
    run: str | Path,
    data: str | Path,
    *,
    methods: Sequence[str] = METHODS,
    rules: str = "epsilon",
    n_cases: int = 2,
    cascade: bool = True,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[Path, list[str], str]:
    """Assess ``methods`` (plus the sweet-spot setting of ``rules``) on ``n_cases`` cases of
    ``run`` into ``RUN/assess/``: (path of assess.csv, the cases, ``held-out``/``training``)."""
    from strokelrp.report.assess_run import assess_run

    run, data = Path(run), Path(data)
    cases, kind = quick_cases(run, data, n_cases)
    chosen = list(methods)
    spot = sweet_spot_method(run, rules)
    if spot is not None and spot not in chosen:
        chosen.append(spot)
    path = assess_run(
        run,
        data,
        run / run_files.ASSESS_DIR,
        cases=cases,
        methods=chosen,
        device=device,
        seeds=(1, 2, 3),
        random_seeds=5,
        cascade=cascade,
        extras=False,
        log=log,
    )
    return path, cases, kind
