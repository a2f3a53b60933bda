"""The sweep's measures: one explained case's relevance maps -> rows of the sweep table.

Pure functions of arrays and rows (no run folder, no model, no processes): per setting and
channel the measures of :mod:`inclusivity`, :mod:`distribution` and :mod:`shares` as rows of
``sweep.csv`` (columns in :mod:`strokelrp.analysis.table`), which (network, case) pairs a table
already holds, how new rows replace old ones, and the terminal summary. The orchestration
(loading the run and the cases, resume, provenance, ``torchrun``) is
:mod:`strokelrp.pipeline.sweep`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from strokelrp.analysis._arrays import to_float64, to_numpy
from strokelrp.analysis.distribution import mean_normalized_signal
from strokelrp.analysis.inclusivity import ground_truth_inclusivity, input_inclusivity
from strokelrp.analysis.shares import abs_modality_shares, lesion_shares, modality_shares
from strokelrp.analysis.table import Row, Setting, describe, sort_rows
from strokelrp.errors import StrokeLRPError

# ------------------------------------------------------------------------------ settings


def paper_grid() -> list[Setting]:
    """The paper's 16 settings (raw, pass (0, a), pass (a, 1), clamp (0, a))."""
    from strokelrp.lrp.filters import PAPER_GRID

    return [describe(f) for f in PAPER_GRID]


# ------------------------------------------------------------------------------ measures


def case_rows(
    relevance: Any,
    x: Any,
    label: np.ndarray | None,
    settings: Sequence[Setting],
    meta: dict[str, Any],
    informative: Sequence[str] | None,
    ablation_drop: Sequence[float] | None = None,
    *,
    channels: Sequence[str],
) -> list[Row]:
    """The table rows of one explained case.

    ``relevance`` (K, C, D, H, W) for the K ``settings``; ``x`` (C, D, H, W) the model input;
    ``label`` (D, H, W) or None; ``meta`` the run/series/network/case/case_dice/target/rules
    columns; ``informative`` the case's informative modalities (None: unknown);
    ``ablation_drop`` (C,) the Dice drop per mean-filled modality (None: not measured);
    ``channels`` the C channel names (the data set's), one row each.
    """
    k = len(settings)
    if getattr(relevance, "shape", (None,))[0] != k:
        raise StrokeLRPError(f"relevance holds {relevance.shape[0]} maps for {k} settings")
    xs = to_numpy(x, "x")
    if xs.shape[0] != len(channels):
        raise StrokeLRPError(f"{len(channels)} channel names for an input of {xs.shape[0]}")
    nan = np.full(len(channels), np.nan)
    measures = []
    for i in range(k):  # one map at a time: float64 copies of (C, D, H, W), not of the batch
        r = to_float64(relevance[i], "relevance")
        measures.append(
            (
                input_inclusivity(r, xs),
                ground_truth_inclusivity(r, label) if label is not None else nan,
                mean_normalized_signal(r),
                modality_shares(r),
                lesion_shares(r, label) if label is not None else nan,
                abs_modality_shares(r),
            )
        )
    inc_x, inc_gt, mean, share, lesion, abs_share = (
        np.stack(m) for m in zip(*measures, strict=True)
    )
    wanted = {m.lower() for m in informative} if informative is not None else None
    rows = []
    for i, s in enumerate(settings):
        for c, modality in enumerate(channels):
            rows.append(
                {
                    **meta,
                    "kind": s.kind,
                    "a1": s.a1,
                    "a2": s.a2,
                    "setting": s.label,
                    "modality": modality,
                    "input_inclusivity": float(inc_x[i, c]),
                    "gt_inclusivity": float(inc_gt[i, c]),
                    "mean_signal": float(mean[i, c]),
                    "relevance_share": float(share[i, c]),
                    "lesion_share": float(lesion[i, c]),
                    "informative": None if wanted is None else modality.lower() in wanted,
                    "ablation_drop": math.nan if ablation_drop is None else float(ablation_drop[c]),
                    "abs_share": float(abs_share[i, c]),
                }
            )
    return rows


# ------------------------------------------------------------------------------ tables


def done_pairs(
    rows: Iterable[Row], settings: Sequence[Setting], channels: Sequence[str]
) -> set[tuple[str, str]]:
    """(network, case) pairs with a row for every (setting, channel) of ``settings``."""
    need = {(s.label, m) for s in settings for m in channels}
    have: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for r in rows:
        have.setdefault((str(r["network"]), str(r["case"])), set()).add(
            (str(r["setting"]), str(r["modality"]))
        )
    return {pair for pair, cells in have.items() if need <= cells}


def merge_rows(
    rows: Iterable[Row], new: Sequence[Row], labels: Iterable[str], channels: Sequence[str]
) -> list[Row]:
    """``rows`` with the (network, case) pairs of ``new`` replaced by ``new`` for the settings
    ``labels`` (rows of other settings are kept), ordered by :func:`sort_rows`."""
    fresh = {(str(row["network"]), str(row["case"])) for row in new}
    wanted = set(labels)
    kept = [
        row
        for row in rows
        if (str(row["network"]), str(row["case"])) not in fresh or str(row["setting"]) not in wanted
    ]
    return sort_rows([*kept, *new], channels)


def summary_lines(rows: Sequence[Row], settings: Sequence[str] | None = None) -> list[str]:
    """A few lines for the terminal: per series and setting the mean inclusivities and shares.

    ``settings``: labels to show (default: raw, pass(0,0.2), clamp(0,0.2) when present, then
    every baseline method).
    """
    if not rows:
        return ["the sweep table is empty"]
    lines = []
    for r in summary_records(rows, settings):
        text = (
            f"series {r['series']} {r['setting']:>13}: input inclusivity "
            f"{r['input_inclusivity']:.4f}, ground-truth inclusivity {r['gt_inclusivity']:.4f}, "
            f"lesion share {r['lesion_share']:.3f}"
        )
        if "ablation_rho" in r:
            text += f", ablation rho {r['ablation_rho']:.2f}"
        if "ignored_share" in r:
            text += (
                f", share on ignored modalities {r['ignored_share']:.3f} "
                f"(uniform {r['ignored_uniform']:.3f})"
            )
        lines.append(text)
    return lines


def summary_records(
    rows: list[dict[str, Any]], settings: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """What :func:`summary_lines` prints, one dict per series and setting (``sweep --json``):
    series, setting, the mean input and ground-truth inclusivities, the lesion share, and the
    ablation rho and the share on ignored modalities where measured."""
    from strokelrp.analysis.shares import share_summary
    from strokelrp.analysis.table import mean_table

    present = {str(r["setting"]) for r in rows}
    if settings is None:
        baselines = sorted({str(r["setting"]) for r in rows if r["kind"] == "baseline"})
        settings = ["raw", "pass(0,0.2)", "clamp(0,0.2)", *baselines]
    wanted = [s for s in settings if s in present]
    inc_x = mean_table(rows, "input_inclusivity")
    inc_gt = mean_table(rows, "gt_inclusivity")
    shares = {(str(s["series"]), str(s["setting"])): s for s in share_summary(rows)}
    out = []
    for series in sorted({str(r["series"]) for r in rows}):
        for setting in wanted:
            key = (series, setting)
            sh = shares.get(key, {})
            record: dict[str, Any] = {
                "series": series,
                "setting": setting,
                "input_inclusivity": inc_x.get(key, math.nan),
                "gt_inclusivity": inc_gt.get(key, math.nan),
                "lesion_share": sh.get("lesion_share", math.nan),
            }
            if sh.get("n_ablation_maps"):
                record["ablation_rho"] = sh["ablation_rho"]
            if sh.get("n_ignored_maps"):
                record["ignored_share"] = sh["ignored_share"]
                record["ignored_uniform"] = sh["ignored_uniform"]
            out.append(record)
    return out
