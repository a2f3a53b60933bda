"""``strokelrp assess``: the trust measures of every method on the cases of a trained run.

Writes ``OUT/assess.csv`` (one row per case x method, :data:`strokelrp.analysis.assess.COLUMNS`
first, then :data:`~strokelrp.analysis.assess.EXTRA_COLUMNS`) and, with ``cascade``,
``OUT/cascade.csv`` (case, method, step, layer, rho: the cascading randomisation curve, output
side first). Both are written atomically after every case, so an interrupted run leaves
complete tables of the cases done.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from strokelrp.atomic import write_text
from strokelrp.errors import StrokeLRPError
from strokelrp.run_files import ASSESS_TABLE, CASCADE_TABLE, RunDir

CASCADE_COLUMNS = ("case", "method", "step", "layer", "rho")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table_text(columns: Sequence[str], rows: list[dict[str, Any]]) -> str:
    """CSV text of ``rows`` with ``columns`` (NaN and None as empty cells)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def assess_run(
    run: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    cases: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    checkpoint: str = "last",
    device: str = "cpu",
    seeds: Sequence[int] = (1, 2, 3),
    random_seeds: int = 5,
    cascade: bool = False,
    extras: bool = True,
    memory_budget: str | int | float | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Assess ``methods`` (default :data:`~strokelrp.analysis.assess.DEFAULT_METHODS`) on
    ``cases`` of ``data`` (default: the run's held-out cases, else every case) with the
    model of ``run``; write ``out/assess.csv`` (and ``out/cascade.csv``) and return its path.
    ``memory_budget`` and ``options``: as for :func:`strokelrp.analysis.assess.assess`.
    """
    import torch

    from strokelrp.analysis.assess import COLUMNS, DEFAULT_METHODS, EXTRA_COLUMNS, assess
    from strokelrp.attribution import parse_method
    from strokelrp.data.isles2017 import load_case
    from strokelrp.data.preprocess import prepare_case
    from strokelrp.train.checkpoint import load_run

    run, out = Path(run), Path(out)
    methods = list(methods or DEFAULT_METHODS)
    for method in methods:
        parse_method(method)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, config = load_run(run, checkpoint=checkpoint, device=device)
    chosen = list(cases) if cases else RunDir(run).validation_ids()
    if chosen is None:
        from strokelrp.data.isles2017 import discover_cases

        chosen = [f.case_id for f in discover_cases(Path(data))]
    if not chosen:
        raise StrokeLRPError(f"{data}: no case to assess")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    path = out / ASSESS_TABLE
    for case_id in chosen:
        case = load_case(data, case_id)
        x, y = prepare_case(case, config)
        new_rows, new_curves = assess(
            model,
            torch.from_numpy(x),
            y,
            methods,
            case=case_id,
            seeds=seeds,
            random_seeds=random_seeds,
            cascade=cascade,
            extras=extras,
            memory_budget=memory_budget,
            options=options,
            progress=log,
        )
        rows += new_rows
        curves += new_curves
        write_text(path, table_text((*COLUMNS, *EXTRA_COLUMNS), rows))
        if cascade:
            write_text(out / CASCADE_TABLE, table_text(CASCADE_COLUMNS, curves))
    return path


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Means over cases per method of the main measures, as aligned text lines."""
    from strokelrp.trust_measures import MEASURES as measures

    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_method.setdefault(str(row["method"]), []).append(row)
    width = max([len("method"), *(len(m) for m in by_method)])
    lines = [f"{'method':<{width}}  " + "  ".join(f"{m[:12]:>12}" for m in measures)]
    for method, group in by_method.items():
        cells = []
        for m in measures:
            vals = [float(r[m]) for r in group if r.get(m) not in (None, "")]
            vals = [v for v in vals if not math.isnan(v)]
            cells.append(f"{sum(vals) / len(vals):>12.3f}" if vals else f"{'-':>12}")
        lines.append(f"{method:<{width}}  " + "  ".join(cells))
    return lines
