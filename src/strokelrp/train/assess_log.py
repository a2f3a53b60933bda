"""Interpretability during training: the trust measures of one method every N epochs.

``train --assess-every N`` calls :func:`assess_epoch` after epochs N, 2N, ... on rank 0: the
measures of :func:`strokelrp.analysis.assess.assess` for one method (``--assess-method``,
default ``lrp:epsilon``) on the first ``--assess-cases`` held-out cases (the first training
cases when nothing is held out; the ``split`` column says which), appended to
``RUN/assess_log.csv``. The cost is bounded: one method, few cases, one re-initialisation,
two random orderings and a coarse perturbation grid (:data:`FRACTIONS`), so the AOPC values are
comparable between epochs of one run, not with a full ``strokelrp assess``.

The random number streams of training are saved before and restored after, so a run trained
with ``--assess-every`` follows the same trajectory as one without, and resumes exactly.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from strokelrp.atomic import atomic_write
from strokelrp.errors import StrokeLRPError

ASSESS_LOG = "assess_log.csv"
MEASURES: tuple[str, ...] = (
    "brain_share",
    "lesion_share",
    "morf_aopc",
    "lerf_aopc",
    "random_aopc",
    "randomisation_rho",
    "contrast_rho",
    "ablation_rho",
)
"""The measures recorded (the columns of ``assess.csv`` after case and method)."""
LOG_COLUMNS: tuple[str, ...] = ("epoch", "split", "case", "method", *MEASURES, "seconds")
FRACTIONS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.2)
"""The coarse perturbation grid used during training."""


def assess_epoch(
    model: nn.Module,
    cases: Sequence[tuple[str, torch.Tensor, torch.Tensor]],
    method: str,
    epoch: int,
    split: str,
) -> list[dict[str, Any]]:
    """One row per case: ``cases`` are (case id, x (C, D, H, W), y (D, H, W), -1 = no label).

    Global random states (Python, numpy, torch) are restored afterwards and parameter
    gradients cleared, so training continues exactly as it would have without this call.
    """
    from strokelrp.analysis.assess import assess
    from strokelrp.train.checkpoint import capture_rng, restore_rng

    state = capture_rng()
    rows = []
    try:
        for case_id, x, y in cases:
            label = y.cpu().numpy() if bool((y >= 0).all()) else None
            found, _ = assess(
                model,
                x,
                label,
                [method],
                case=case_id,
                seeds=(1,),
                random_seeds=2,
                fractions=FRACTIONS,
            )
            row = found[0]
            rows.append(
                {
                    "epoch": epoch,
                    "split": split,
                    "case": case_id,
                    "method": method,
                    **{m: row[m] for m in MEASURES},
                    "seconds": row.get("seconds", math.nan),
                }
            )
    finally:
        restore_rng(state)
        model.zero_grad(set_to_none=True)
    return rows


def read_assess_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``RUN/assess_log.csv`` (numbers as floats, epoch as int); [] if absent."""
    path = Path(run_dir) / ASSESS_LOG
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in LOG_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise StrokeLRPError(f"{path}: not an assessment log, missing columns {missing}")
            rows = list(reader)
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise StrokeLRPError(f"{path}: cannot read ({err})") from err
    out = []
    for row in rows:
        parsed: dict[str, Any] = {"epoch": int(row["epoch"])}
        parsed.update({c: row[c] for c in ("split", "case", "method")})
        for c in (*MEASURES, "seconds"):
            parsed[c] = float(row[c]) if row[c] not in ("", None) else math.nan
        out.append(parsed)
    return out


def write_assess_log(run_dir: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``RUN/assess_log.csv`` atomically (columns :data:`LOG_COLUMNS`)."""

    def write(fh: Any) -> None:
        writer = csv.DictWriter(fh, fieldnames=list(LOG_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _text(row.get(c)) for c in LOG_COLUMNS})

    return atomic_write(Path(run_dir) / ASSESS_LOG, write)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(float(value)) else repr(float(value))
    return str(value)
