"""The tables of ``strokelrp assess`` as text, and their summaries for the terminal and report.

:func:`strokelrp.pipeline.assess.assess_run` writes ``assess.csv``, ``assess_curves.csv`` and
``cascade.csv`` with :func:`table_text`; :func:`summary_lines` and :func:`mean_curves` read
their rows back for the terminal and the HTML report. File names: :mod:`strokelrp.run_files`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from strokelrp.run_files import csv_text

CASCADE_COLUMNS = (
    "case",
    "method",
    "order",
    "step",
    "layer",
    "logit_change",
    "skipped",
    "rho",
    "signed_rho",
    "shell_rho",
    "ssim",
)
"""The columns of ``cascade.csv``: one row per (case, method, order, step); a skipped step
(its blocks barely change the logits) has empty read-outs (docs/assess.md,
"Randomisation")."""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table_text(columns: Sequence[str], rows: list[dict[str, Any]]) -> str:
    """CSV text of ``rows`` with ``columns`` (NaN and None as empty cells)."""
    return csv_text(columns, rows, _cell)


def passed_checks(summary: Mapping[str, Any]) -> int:
    """How many of the checks a summary of :func:`summarize_methods` passes."""
    from strokelrp.analysis.assess import CHECKS

    return sum(bool(summary[f"{key}_ok"]) for key in CHECKS)


def _interval(summary: Mapping[str, Any], measure: str) -> str:
    mean, low, high = (float(summary[k]) for k in (measure, f"{measure}_low", f"{measure}_high"))
    if math.isnan(mean):
        return "undefined"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def verdict_line(summary: Mapping[str, Any]) -> str:
    """One line for a :func:`strokelrp.analysis.assess.summarize_methods` entry: each check
    passed and each failed by name, with the mean and 95 % interval it read; randomisation
    beside the locality prior."""
    from strokelrp.analysis.assess import CHECK_MEASURES, CHECKS

    passed = [key for key in CHECKS if summary[f"{key}_ok"]]
    failed = [key for key in CHECKS if not summary[f"{key}_ok"]]
    text = f"{summary['method']} ({summary['cases']} case(s)): "
    text += "passes " + (", ".join(passed) if passed else "no check")
    if failed:
        text += "; fails " + "; ".join(
            f"{key}: {CHECKS[key]} (got {_interval(summary, CHECK_MEASURES[key])})"
            for key in failed
        )
    rho, signed, prior = (
        "undefined" if math.isnan(v := float(summary.get(k, math.nan))) else f"{v:.2f}"
        for k in ("randomisation_rho", "randomisation_signed", "prior_rho")
    )
    return text + f". Randomisation ρ {rho} (signed {signed}), locality-prior ρ {prior}"


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Means over cases per method of the main measures and the median MoRF / random AOPC
    ratio, as aligned text lines with whole column names, then one verdict line per method
    against the pass marks (:func:`verdict_line`)."""
    from strokelrp.analysis.assess import summarize_methods
    from strokelrp.trust_measures import MEASURES as measures

    summaries = summarize_methods(rows)
    columns = [*measures, "morf/random"]
    keys = [*measures, "morf_over_random"]
    widths = [max(len(c), 9) for c in columns]
    width = max([len("method"), *(len(s["method"]) for s in summaries)])
    lines = [
        f"{'method':<{width}}  "
        + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    ]
    for s in summaries:
        cells = [
            f"{'-':>{w}}" if math.isnan(v := float(s[k])) else f"{v:>{w}.3f}"
            for k, w in zip(keys, widths, strict=True)
        ]
        lines.append(f"{s['method']:<{width}}  " + "  ".join(cells))
    return lines + [f"verdict {verdict_line(s)}" for s in summaries]


ORDERS: tuple[str, ...] = ("morf", "lerf", "random")
"""The orderings of ``assess_curves.csv``, in the order the report draws them."""


def main_removal(points: Sequence[dict[str, Any]], level: str = "element") -> str | None:
    """The removal kind of an assessment's main curves: that of its first ``level`` point
    (assess writes the main removal's curves before the extras'); None without points."""
    return next((str(p["baseline"]) for p in points if p["level"] == level), None)


def mean_curves(
    points: Sequence[dict[str, Any]], level: str = "element", baseline: str | None = None
) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """Per method (first-seen order) and order (:data:`ORDERS` present): the fractions
    (ascending) and the mean relative drop at each, over cases (and the random seeds).

    ``points``: rows of ``assess_curves.csv`` (strings or numbers); only those of ``level``
    and ``baseline`` (the removal kind; None: the main one, :func:`main_removal`) count;
    empty (NaN) drops are left out; a fraction without any value gets NaN.
    """
    if baseline is None:
        baseline = main_removal(points, level)
    sums: dict[str, dict[str, dict[float, list[float]]]] = {}
    for p in points:
        if p["level"] != level or p["baseline"] != baseline:
            continue
        by_fraction = sums.setdefault(str(p["method"]), {}).setdefault(str(p["order"]), {})
        values = by_fraction.setdefault(float(p["fraction"]), [])
        if p["drop"] not in (None, "") and not math.isnan(drop := float(p["drop"])):
            values.append(drop)
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for method, orders in sums.items():
        out[method] = {}
        for order in (o for o in ORDERS if o in orders):
            fractions = sorted(orders[order])
            means = [sum(v) / len(v) if (v := orders[order][f]) else math.nan for f in fractions]
            out[method][order] = (fractions, means)
    return out
