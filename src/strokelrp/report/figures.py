"""The paper's figures from tidy tables (matplotlib, Agg): PNG + SVG, written atomically.

- :func:`figure4_inclusivity`: inclusivity box plots per filter setting, grouped by series, pass
  and clamp panels, input and ground-truth inclusivity, each with the table of means
  (paper fig. 4; the highest mean of each series in bold);
- :func:`figure5_signal`: mean normalised signal per setting and series, jittered scatter (D1)
  and box plots (D2) (paper fig. 5 D1/D2 for ``kind="pass"``, annex fig. 2 for ``"clamp"``);
- :func:`sweet_spot_figure`: the spread of mu across data points against alpha, with alpha_0;
- :func:`training_curves`: loss and training Dice per epoch for each run;
- :func:`assess_curves`: the trust measures recorded during training (``assess_log.csv``);
- :func:`cascade_figure`: the cascading randomisation curves (``cascade.csv``);
- :func:`perturbation_figure`: MoRF, LeRF and random-order curves per method
  (``assess_curves.csv``).

Every function returns the paths written (``name.png``, ``name.svg``) under ``out_dir``.
Colours are the Okabe-Ito palette (safe for colour-blind readers).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from strokelrp.analysis.calculus import SweetSpot
from strokelrp.analysis.table import (
    group_values,
    mean_table,
    ordered_settings,
)
from strokelrp.atomic import atomic_write
from strokelrp.errors import StrokeLRPError

OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
SERIES_COLOURS: dict[str, str] = {"A": OKABE_ITO[0], "B": OKABE_ITO[1], "C": OKABE_ITO[2]}
SERIES_COLOURS["X"] = OKABE_ITO[3]
DPI = 150
STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",
}
VALUE_LABELS: dict[str, str] = {
    "input_inclusivity": "input inclusivity D(LRP, x)",
    "gt_inclusivity": "ground-truth inclusivity D(LRP, OT)",
    "mean_signal": "mean normalised signal (mean of R_c / max|R_c|)",
}


def series_colour(series: str, order: Sequence[str]) -> str:
    """The series' fixed colour (A, B, C, X), else the next free Okabe-Ito colour."""
    if series in SERIES_COLOURS:
        return SERIES_COLOURS[series]
    free = [c for c in OKABE_ITO if c not in SERIES_COLOURS.values()]
    others = [s for s in order if s not in SERIES_COLOURS]
    return free[others.index(series) % len(free)] if series in others else free[0]


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.png`` (150 dpi) and ``.svg`` atomically; close it."""
    out_dir = Path(out_dir)
    paths = []
    try:
        engine = fig.get_layout_engine()
        if engine is not None:  # lay out once, not once per format
            engine.execute(fig)
            fig.set_layout_engine("none")
        for fmt in ("png", "svg"):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=DPI, metadata=_metadata(fmt))
            data = buf.getvalue()
            path = out_dir / f"{name}.{fmt}"
            paths.append(atomic_write(path, lambda fh, data=data: fh.write(data), "wb"))
    finally:
        plt.close(fig)
    return paths


def _metadata(fmt: str) -> dict[str, Any]:
    # no timestamps: the same data gives the same files
    return {"Software": "strokelrp"} if fmt == "png" else {"Date": None, "Creator": "strokelrp"}


def _series_in(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({str(r["series"]) for r in rows})


def _settings_of(rows: Sequence[Mapping[str, Any]], kind: str) -> list[str]:
    """raw first, then the settings of ``kind`` in the paper's order."""
    return ordered_settings([r for r in rows if r["kind"] in ("raw", kind)])


def _grouped_boxes(
    ax: Any,
    rows: Sequence[Mapping[str, Any]],
    settings: Sequence[str],
    series: Sequence[str],
    value: str,
) -> None:
    """Box plots of ``value`` per setting (x) with one box per series side by side."""
    groups = group_values(rows, ("series", "setting"), value)
    width = 0.8 / max(len(series), 1)
    for i, s in enumerate(series):
        positions, data = [], []
        for j, setting in enumerate(settings):
            vals = groups.get((s, setting), [])
            if vals:
                positions.append(j - 0.4 + width * (i + 0.5))
                data.append(vals)
        if not data:
            continue
        colour = series_colour(s, series)
        ax.boxplot(
            data,
            positions=positions,
            widths=width * 0.85,
            patch_artist=True,
            showfliers=True,
            manage_ticks=False,
            boxprops={"facecolor": colour, "alpha": 0.55, "edgecolor": colour},
            medianprops={"color": "black", "linewidth": 1.0},
            whiskerprops={"color": colour},
            capprops={"color": colour},
            flierprops={"marker": ".", "markersize": 3, "markeredgecolor": colour},
        )
        ax.plot([], [], "s", color=colour, alpha=0.7, label=f"series {s}")
    ax.set_xticks(range(len(settings)))
    ax.set_xticklabels(settings, rotation=40, ha="right")
    ax.set_xlim(-0.6, len(settings) - 0.4)
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)


def _means_table(
    ax: Any,
    rows: Sequence[Mapping[str, Any]],
    settings: Sequence[str],
    series: Sequence[str],
    value: str,
) -> None:
    """The mean per series (rows) and setting (columns); each series' largest mean in bold."""
    means = mean_table(rows, value)
    cells = [[means.get((s, st), float("nan")) for st in settings] for s in series]
    text = [["–" if math.isnan(v) else f"{v:.3f}" for v in row] for row in cells]
    ax.axis("off")
    table = ax.table(
        cellText=text,
        rowLabels=[f"mean {s}" for s in series],
        colLabels=[st[st.index("(") :] if "(" in st else st for st in settings],
        loc="center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    for cell in table.get_celld().values():
        cell.set_linewidth(0.3)
    for i, row in enumerate(cells):
        finite = [v for v in row if not math.isnan(v)]
        if finite:
            best = row.index(max(finite))
            table[i + 1, best].set_text_props(fontweight="bold")


def figure4_inclusivity(
    rows: Sequence[Mapping[str, Any]], out_dir: str | Path, name: str = "figure4_inclusivity"
) -> list[Path]:
    """Paper fig. 4: input and ground-truth inclusivity per setting, pass and clamp panels.

    Each box: the values of all (network, case, modality) of one series under one setting.
    """
    if not rows:
        raise StrokeLRPError("figure 4 needs sweep rows; the table is empty")
    series = _series_in(rows)
    kinds = [k for k in ("pass", "clamp") if any(r["kind"] == k for r in rows)] or ["raw"]
    values = ("input_inclusivity", "gt_inclusivity")
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(6.0 * len(kinds), 8.6), layout="constrained")
        grid = fig.add_gridspec(4, len(kinds), height_ratios=[3, 1.1, 3, 1.1])
        for col, kind in enumerate(kinds):
            settings = _settings_of(rows, kind)
            for r, value in enumerate(values):
                ax = fig.add_subplot(grid[2 * r, col])
                _grouped_boxes(ax, rows, settings, series, value)
                ax.set_ylim(-0.03, 1.03)
                ax.set_ylabel(VALUE_LABELS[value])
                letter = "ABCD"[2 * r + col] if len(kinds) == 2 else "AB"[r]
                ax.set_title(f"({letter}) {kind} filters: {VALUE_LABELS[value].split(' D(')[0]}")
                if r == 0 and col == 0:
                    handles, labels = ax.get_legend_handles_labels()
                    fig.legend(handles, labels, loc="outside upper right", frameon=False, ncols=4)
                _means_table(fig.add_subplot(grid[2 * r + 1, col]), rows, settings, series, value)
        fig.suptitle("Inclusivity of the binarised relevance per filter setting (α = (α₁, α₂))")
        return save_figure(fig, out_dir, name)


def figure5_signal(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    kind: str = "pass",
    name: str | None = None,
    seed: int = 0,
) -> list[Path]:
    """Paper fig. 5 D1/D2 (``kind="pass"``) or annex fig. 2 (``"clamp"``).

    D1: every (network, case, channel) as a point, jittered horizontally within its setting and
    coloured by series; D2: box plots of the same values. NaN values (channels without any
    relevance) are left out and counted in the caption line.
    """
    selected = [r for r in rows if r["kind"] in ("raw", kind)]
    if not selected:
        raise StrokeLRPError(f"no sweep rows for {kind} filters")
    name = name or ("figure5_signal_pass" if kind == "pass" else f"annex2_signal_{kind}")
    series = _series_in(selected)
    settings = _settings_of(selected, kind)
    groups = group_values(selected, ("series", "setting"), "mean_signal")
    invalid = sum(1 for r in selected if not math.isfinite(float(r["mean_signal"])))
    rng = np.random.default_rng(seed)
    width = 0.8 / max(len(series), 1)
    with plt.rc_context(STYLE):
        fig, (ax1, ax2) = plt.subplots(
            2, 1, figsize=(max(6.0, 0.55 * len(settings) + 2.5), 7.2), layout="constrained"
        )
        for i, s in enumerate(series):
            colour = series_colour(s, series)
            for j, setting in enumerate(settings):
                vals = groups.get((s, setting), [])
                centre = j - 0.4 + width * (i + 0.5)
                jitter = rng.uniform(-0.4 * width, 0.4 * width, len(vals))
                ax1.scatter(centre + jitter, vals, s=7, color=colour, alpha=0.6, linewidths=0)
            ax1.scatter([], [], s=14, color=colour, label=f"series {s}")
        ax1.set_xticks(range(len(settings)))
        ax1.set_xticklabels(settings, rotation=40, ha="right")
        ax1.set_xlim(-0.6, len(settings) - 0.4)
        ax1.grid(axis="y", color="0.9", linewidth=0.6)
        ax1.axhline(0.0, color="0.6", linewidth=0.6)
        ax1.legend(loc="best", frameon=False)
        ax1.set_title("(D1) every network, case and channel (jittered)")
        _grouped_boxes(ax2, selected, settings, series, "mean_signal")
        ax2.axhline(0.0, color="0.6", linewidth=0.6)
        ax2.set_title("(D2) box plots of D1")
        for ax in (ax1, ax2):
            ax.set_ylabel(VALUE_LABELS["mean_signal"])
            ax.set_xlabel("filter setting α = (α₁, α₂)")
        note = f"; {invalid} invalid value(s) (no relevance) left out" if invalid else ""
        fig.suptitle(f"Signal distribution under {kind} filters{note}")
        return save_figure(fig, out_dir, name)


def sweet_spot_figure(
    spots: Mapping[str, SweetSpot], out_dir: str | Path, name: str = "sweet_spot"
) -> list[Path]:
    """Spread of mu over data points against alpha per curve label, alpha_0 marked."""
    if not spots:
        raise StrokeLRPError("no sweet-spot curves to plot")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
        for i, (label, spot) in enumerate(spots.items()):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            ax.plot(spot.alphas, spot.spread, "o-", color=colour, label=label, markersize=4)
            if math.isfinite(spot.alpha0):
                ax.axvline(spot.alpha0, color=colour, linestyle="--", linewidth=0.8)
                ax.annotate(
                    f"α₀ = {spot.alpha0:g}",
                    (spot.alpha0, max(spot.spread)),
                    textcoords="offset points",
                    xytext=(3, -10 - 10 * i),
                    color=colour,
                    fontsize=8,
                )
        first = next(iter(spots.values()))
        stat = "standard deviation" if first.statistic == "sd" else "interquartile range"
        ax.set_xscale("log")
        ticks = sorted({a for spot in spots.values() for a in spot.alphas})
        ax.set_xticks(ticks, [f"{a:g}" for a in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("α₂ of the (0, α₂) filter (raw map = 1), log scale")
        ax.set_ylabel(f"{stat} of μ_α over data points")
        ax.set_title(f"Sweet spot: smallest α with spread ≥ {first.fraction:g} × maximum")
        ax.grid(color="0.9", linewidth=0.6)
        ax.legend(frameon=False)
        return save_figure(fig, out_dir, name)


TRAINING_CURVES: dict[str, tuple[str, str]] = {
    "train_dice_trainmode": ("training", "-"),
    "val_dice": ("held-out", "--"),
}
"""The Dice columns of ``train_log.csv`` (:data:`strokelrp.run_files.TRAIN_LOG_COLUMNS`) drawn in
panel B: label and line style."""


def training_curves(
    logs: Mapping[str, Sequence[Mapping[str, Any]]],
    out_dir: str | Path,
    name: str = "training_curves",
) -> list[Path]:
    """Loss and Dice against epoch, one colour per run (``logs``: run -> log rows).

    Rows as :meth:`strokelrp.run_files.RunDir.read_train_log` gives them: ``epoch``, ``loss``
    and the Dice columns of :data:`TRAINING_CURVES` (training steps solid, held-out dashed; a column
    with no value, e.g. ``val_dice`` without a held-out split, is not drawn). A run whose rows
    lack one of these columns is an error naming it.
    """
    if not logs:
        raise StrokeLRPError("no training logs to plot")
    needed = ("epoch", "loss", *TRAINING_CURVES)
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(8.0, 3.2), layout="constrained")
        for i, (run, rows) in enumerate(logs.items()):
            if not rows:
                continue
            missing = [c for c in needed if c not in rows[0]]
            if missing:
                plt.close(fig)
                raise StrokeLRPError(f"{run}: training log without column(s) {', '.join(missing)}")
            x = [float(r["epoch"]) for r in rows]
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            ax_loss.plot(x, [_num(r["loss"]) for r in rows], color=colour, label=run)
            for col, (what, style) in TRAINING_CURVES.items():
                values = [_num(r[col]) for r in rows]
                if all(math.isnan(v) for v in values):
                    continue
                ax_dice.plot(x, values, color=colour, linestyle=style, label=f"{run} ({what})")
        ax_loss.set_ylabel("training loss (mean per epoch)")
        ax_dice.set_ylabel("Dice")
        ax_dice.set_ylim(-0.02, 1.02)
        for ax, title in ((ax_loss, "(A) loss"), (ax_dice, "(B) Dice")):
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.grid(color="0.9", linewidth=0.6)
        ax_loss.legend(frameon=False)
        ax_dice.legend(frameon=False, fontsize=7)
        return save_figure(fig, out_dir, name)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


ASSESS_PANELS: tuple[tuple[str, str], ...] = (
    ("brain_share", "share of |R| in the brain"),
    ("lesion_share", "share of R+ on the target"),
    ("morf_aopc", "MoRF AOPC (dashed: random)"),
    ("lerf_aopc", "LeRF AOPC"),
    ("randomisation_rho", "randomisation ρ (trained vs re-initialised)"),
    ("contrast_rho", "contrast ρ (lesion vs background map)"),
    ("ablation_rho", "ablation ρ (modality shares vs Dice drops)"),
)
"""The measures of ``assess_log.csv`` drawn against epoch, with their panel titles."""


def assess_curves(
    logs: Mapping[str, Sequence[Mapping[str, Any]]],
    out_dir: str | Path,
    name: str = "assess_curves",
) -> list[Path]:
    """Trust measures against epoch, one line per run (the mean over its assessed cases).

    ``logs``: run label -> rows of ``assess_log.csv`` (epoch, case, method and the measures of
    :data:`ASSESS_PANELS`; ``random_aopc`` is drawn dashed in the MoRF panel). NaN values (a
    model that predicts no lesion yet) are left out of the means.
    """
    if not any(logs.values()):
        raise StrokeLRPError("no assessment logs to plot")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 4, figsize=(12.0, 5.6), layout="constrained")
        flat = list(axes.flat)
        for i, (run, rows) in enumerate(logs.items()):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            epochs = sorted({int(_num(r["epoch"])) for r in rows})
            method = ", ".join(sorted({str(r["method"]) for r in rows}))

            for ax, (column, _title) in zip(flat, ASSESS_PANELS, strict=False):
                means = _means_per_epoch(rows, column, epochs)
                ax.plot(epochs, means, "o-", color=colour, markersize=3, label=f"{run} ({method})")
                if column == "morf_aopc":
                    ax.plot(
                        epochs, _means_per_epoch(rows, "random_aopc", epochs), "--", color=colour
                    )
        for k, (ax, (_column, title)) in enumerate(zip(flat, ASSESS_PANELS, strict=False)):
            ax.set_title(f"({'ABCDEFG'[k]}) {title}", fontsize=8.5)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(color="0.9", linewidth=0.6)
        handles, labels = flat[0].get_legend_handles_labels()
        flat[-1].axis("off")
        flat[-1].legend(handles, labels, loc="center", frameon=False, fontsize=7)
        fig.suptitle("Trust measures during training (held-out cases, mean over cases)")
        return save_figure(fig, out_dir, name)


def _means_per_epoch(
    rows: Sequence[Mapping[str, Any]], column: str, epochs: Sequence[int]
) -> list[float]:
    """The mean of the finite values of ``column`` at each epoch (NaN where there are none)."""
    out = []
    for e in epochs:
        vals = [_num(r[column]) for r in rows if int(_num(r["epoch"])) == e]
        vals = [v for v in vals if math.isfinite(v)]
        out.append(sum(vals) / len(vals) if vals else float("nan"))
    return out


def cascade_figure(
    rows: Sequence[Mapping[str, Any]], out_dir: str | Path, name: str = "cascade"
) -> list[Path]:
    """The cascading randomisation: Spearman rho against the step, one line per method.

    ``rows``: ``cascade.csv`` rows (case, method, order, step, layer, rho, ...); the top-down
    order's (rows without ``order`` count as top-down) mean over cases per (method, step) is
    drawn, leaving out skipped steps (empty rho); the x ticks name the layer re-initialised
    last at each step.
    """
    rows = [r for r in rows if str(r.get("order") or "top_down") == "top_down"]
    if not rows:
        raise StrokeLRPError("no top-down cascade rows to plot")
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    steps = sorted({int(_num(r["step"])) for r in rows})
    layers = {int(_num(r["step"])): str(r["layer"]) for r in rows}
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(5.5, 0.5 * len(steps) + 3), 3.8), layout="constrained")
        for i, method in enumerate(methods):
            mine = [r for r in rows if str(r["method"]) == method]
            means = []
            for step in steps:
                vals = [_num(r["rho"]) for r in mine if int(_num(r["step"])) == step]
                vals = [v for v in vals if math.isfinite(v)]
                means.append(sum(vals) / len(vals) if vals else float("nan"))
            style = "-" if i < len(OKABE_ITO) else "--"
            ax.plot(steps, means, "o" + style, color=OKABE_ITO[i % len(OKABE_ITO)],
                    markersize=3, label=method)  # fmt: skip
        ax.set_xticks(steps, [f"{s}: {layers[s]}" for s in steps], rotation=40, ha="right")
        ax.axhline(0.0, color="0.6", linewidth=0.6)
        ax.set_ylim(-1.02, 1.02)
        ax.set_xlabel("re-initialised from the output down to (step: block)")
        ax.set_ylabel("Spearman ρ of |R| with the trained map")
        ax.set_title("Cascading model randomisation (mean over cases)")
        ax.grid(color="0.9", linewidth=0.6)
        ax.legend(frameon=False, fontsize=7, loc="best")
        return save_figure(fig, out_dir, name)


PERTURBATION_STYLES: dict[str, tuple[str, str, str]] = {
    "morf": ("MoRF (most relevant first)", OKABE_ITO[3], "o-"),
    "lerf": ("LeRF (least relevant first)", OKABE_ITO[0], "s-"),
    "random": ("random order", "0.35", "--"),
}
"""Label, colour and line style of each ordering in :func:`perturbation_figure`."""


def perturbation_figure(
    curves: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    out_dir: str | Path,
    name: str = "perturbation",
) -> list[Path]:
    """Region-perturbation curves, one panel per method: the mean relative drop of the target
    score against the fraction of elements removed, for each ordering.

    ``curves``: method -> order (``morf``, ``lerf``, ``random``) -> (fractions, mean drops), as
    :func:`strokelrp.report.assess_run.mean_curves` returns them.
    """
    if not curves:
        raise StrokeLRPError("no perturbation curves to plot")
    n = len(curves)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(2.9 * ncols + 0.4, 2.5 * nrows + 0.6),
            layout="constrained",
            sharey=True,
            squeeze=False,
        )
        flat = list(axes.flat)
        for ax, (method, orders) in zip(flat, curves.items(), strict=False):
            for order, (fractions, drops) in orders.items():
                label, colour, style = PERTURBATION_STYLES[order]
                percent = [100 * f for f in fractions]
                ax.plot(percent, drops, style, color=colour, markersize=2.5, label=label)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_title(method, fontsize=8.5)
            ax.axhline(0.0, color="0.6", linewidth=0.6)
            ax.grid(color="0.9", linewidth=0.6)
            ax.set_xlabel("elements removed (%), log scale")
        for ax in axes[:, 0]:
            ax.set_ylabel("relative drop of S")
        for ax in flat[n:]:
            ax.axis("off")
        handles, labels = flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
        fig.suptitle("Region perturbation (element level, zero baseline; mean over cases)")
        return save_figure(fig, out_dir, name)
