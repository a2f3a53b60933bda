"""A self-contained HTML report over one or more runs (readable offline, no scripts): a
renderer of tables already read (:class:`RunTables`, filled by
:func:`strokelrp.pipeline.report.read_run_tables`); it reads no run folder.

Sections, each skipped with a note when its inputs are missing: run configuration
(``config.toml``), table 1 (``table1.csv``) and training curves (``train_log.csv``,
and ``assess_log.csv``: trust measures per N epochs),
metrics per case (``metrics.csv``), the sweep's figures and tables
(``sweep/sweep.csv``: paper fig. 4, fig. 5 D1/D2, annex fig. 2, the sweet spot, where the
relevance goes; per filter setting, and at the sweet spot alpha_0, inclusivity next to
faithfulness and randomisation), the trust section (``assess/assess.csv`` of
``strokelrp assess``: measures and a verdict per method, the MoRF/LeRF/random curves of
``assess_curves.csv``, the randomisation cascade), the per-case explanations (the PNG
figures of ``explanations/CASE/`` embedded, with relative links to the NIfTI files beside
them, and a frame of the case's interactive viewer page when one was written:
:mod:`strokelrp.report.viewer`), and the provenance of every table and explanation shown (from their
``*.provenance.json`` sidecars and ``explanation.json``: data root, checkpoint path and epoch,
rules with overrides, versions; outputs written before strokelrp recorded provenance are named
as such). Figures are embedded as base64 PNG; their PNG and SVG files are also written to the
figure folder given.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from strokelrp import __version__
from strokelrp.analysis.table import ordered_settings
from strokelrp.errors import StrokeLRPError
from strokelrp.report.assess_run import passed_checks, verdict_line

Rows = list[dict[str, Any]]
"""Rows of a table as read: one dict per line, column name -> value."""

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc;
     padding-bottom: 0.2em; margin-top: 2em; } h3 { margin-top: 1.4em; }
nav ul { columns: 2; } .meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
tr.mean td { font-weight: bold; background: #fafafa; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 60em; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; font-size: 0.85em; }
.note { background: #fff8e1; border-left: 4px solid #E69F00; padding: 0.4em 0.8em; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; } .cards figure { flex: 1 1 45%; }
"""


@dataclass(frozen=True)
class CaseFigures:
    """One explained case of a run: its PNG figures (embedded) and NIfTI volumes (linked)."""

    case: str
    folder: Path | None = None
    pngs: tuple[Path, ...] = ()
    niftis: tuple[Path, ...] = ()
    viewer: Path | None = None
    """Its interactive viewer page (:mod:`strokelrp.report.viewer`), shown in a frame."""
    viewer_note: str = ""
    """Why there is no viewer page, when there is none."""


@dataclass
class RunTables:
    """Everything the report shows of one run, read once (by
    :func:`strokelrp.pipeline.report.read_run_tables`); a missing file is an empty field.

    ``train_logs`` / ``assess_logs``: network label (``A``, or ``A/net-2`` in a repeats
    run) -> its log rows. ``metrics``: None when there is no ``metrics.csv`` (its would-be
    path ``metrics_path`` names it in the note). ``sweep``: the sweep table's rows, None when
    the run has none. ``assess``, ``curves``, ``cascade``: the rows of ``assess.csv``
    (found at ``assess_path``, None when absent), ``assess_curves.csv`` and ``cascade.csv``
    beside it. ``provenance``: (output path, its record or None) per output shown.
    ``training``: a training run (False: a folder of results only, e.g. of an nnU-Net model,
    which has no configuration, training or metrics to show).
    """

    name: str
    config: str = ""
    table1: Rows = field(default_factory=list)
    train_logs: dict[str, Rows] = field(default_factory=dict)
    assess_logs: dict[str, Rows] = field(default_factory=dict)
    metrics_path: Path = Path("metrics.csv")
    metrics: Rows | None = None
    sweep: Rows | None = None
    assess_path: Path | None = None
    assess: Rows = field(default_factory=list)
    curves: Rows = field(default_factory=list)
    cascade: Rows = field(default_factory=list)
    explained: list[CaseFigures] = field(default_factory=list)
    provenance: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    training: bool = True


@dataclass
class Section:
    """One part of the report: an anchor id, a title and its HTML body."""

    anchor: str
    title: str
    body: str


def esc(value: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    """A highlighted remark (e.g. a part that is missing)."""
    return f'<p class="note">{esc(text)}</p>'


def fmt(value: Any) -> str:
    """A table cell: numbers to 4 significant digits, NaN as a dash."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if value.strip().lower() in ("nan", ""):
            return "–"
        return value if number.is_integer() and "." not in value else f"{number:.4g}"
    return str(value)


def html_table(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    mean_row: Mapping[str, Any] | None = None,
) -> str:
    """A table with one column per name in ``columns``; text columns left-aligned."""

    def is_text(col: str) -> bool:
        for r in rows:
            v = r.get(col)
            if isinstance(v, (int, float)):
                return False
            if isinstance(v, str) and v.strip():
                try:
                    float(v)
                    return False
                except ValueError:
                    return True
        return True

    text_cols = {c for c in columns if is_text(c)}

    def cell(tag: str, col: str, value: Any) -> str:
        cls = ' class="text"' if col in text_cols else ""
        return f"<{tag}{cls}>{esc(fmt(value))}</{tag}>"

    head = "".join(cell("th", c, c) for c in columns)
    body = ["<tr>" + "".join(cell("td", c, r.get(c, "")) for c in columns) + "</tr>" for r in rows]
    if mean_row is not None:
        body.append(
            '<tr class="mean">'
            + "".join(cell("td", c, mean_row.get(c, "")) for c in columns)
            + "</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def embed_png(path: Path, alt: str) -> str:
    """An ``<img>`` with the PNG inlined as base64."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def figure_html(png: Path, caption: str, links: Sequence[tuple[str, str]] = ()) -> str:
    """An embedded figure with its caption and optional relative links (label, href)."""
    extra = " ".join(f'<a href="{esc(href)}">{esc(label)}</a>' for label, href in links)
    return (
        f"<figure>{embed_png(png, caption)}<figcaption>{esc(caption)}"
        f"{' ' + extra if extra else ''}</figcaption></figure>"
    )


ID_COLUMNS = frozenset({"run", "network", "case", "case_id", "split", "series", "seed", "epoch"})
"""Columns that name things rather than measure them: numbers there (case ids, seeds) are not
averaged in a mean row."""


def _mean_row(columns: Sequence[str], rows: Sequence[Mapping[str, str]], label: str) -> dict:
    """Means of the numeric measure columns (finite values only); ``label`` in the first."""
    out: dict[str, Any] = {columns[0]: label}
    for c in columns[1:]:
        if c in ID_COLUMNS or c.endswith("_id"):
            continue
        vals = []
        for r in rows:
            try:
                v = float(r.get(c, ""))
            except ValueError:
                break
            if math.isfinite(v):
                vals.append(v)
        else:
            if vals:
                out[c] = sum(vals) / len(vals)
    return out


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


# ------------------------------------------------------------------------------ sections


def config_section(runs: Sequence[RunTables]) -> Section:
    parts = []
    for run in runs:
        parts.append(f"<h3>{esc(run.name)}</h3>")
        parts.append(f"<pre>{esc(run.config)}</pre>")
    return Section("config", "Run configuration", "".join(parts))


def training_section(runs: Sequence[RunTables], fig_dir: Path) -> Section:
    from strokelrp.report import figures

    parts = []
    table = [{"run": run.name, **row} for run in runs for row in run.table1]
    if table:
        columns = list(dict.fromkeys(c for r in table for c in r))
        parts.append(html_table(columns, table))
        parts.append(
            "<p>Table 1: one row per network, as written by <code>strokelrp evaluate</code> "
            "(time per network and mean Dice, as in the paper's table 1).</p>"
        )
    else:
        parts.append(note("No table1.csv in any run: `strokelrp evaluate RUN DATA` writes it."))
    logs = {label: rows for run in runs for label, rows in run.train_logs.items() if rows}
    if logs:
        png = figures.training_curves(logs, fig_dir)[0]
        parts.append(
            figure_html(
                png,
                "Training curves, one colour per network: (A) mean training loss per epoch, "
                "(B) Dice of the training steps (solid) and, with a held-out split, of the "
                "held-out cases (dashed).",
            )
        )
    else:
        parts.append(note("No train_log.csv: training curves are not shown."))
    parts.append(assess_log_html(runs, fig_dir))
    return Section("training", "Training: table 1 and curves", "".join(parts))


def assess_log_html(runs: Sequence[RunTables], fig_dir: Path) -> str:
    """The trust measures recorded during training (``assess_log.csv``), if any run has them."""
    from strokelrp.report import figures

    logs = {label: rows for run in runs for label, rows in run.assess_logs.items() if rows}
    if not logs:
        return ""
    splits = sorted({r.get("split", "") for rows in logs.values() for r in rows})
    png = figures.assess_curves(logs, fig_dir)[0]
    return figure_html(
        png,
        "Interpretability during training (train --assess-every N): the trust measures of one "
        "attribution method on a few "
        + ("held-out" if splits == ["held-out"] else "/".join(splits))
        + " cases every N epochs, mean over the cases (strokelrp assess defines them; here "
        "with one re-initialisation, two random orderings and a coarse perturbation grid, so "
        "values compare between epochs, not with a full assess table). Dashed in (C): the "
        "random-order AOPC, the floor MoRF should clear by far.",
    )


def metrics_section(runs: Sequence[RunTables]) -> Section:
    parts = []
    for run in runs:
        path, rows = run.metrics_path, run.metrics
        parts.append(f"<h3>{esc(run.name)}</h3>")
        if rows is None:
            parts.append(note(f"{path} not found: run `strokelrp evaluate` to write it."))
            continue
        if not rows:
            parts.append(note(f"{path} has no rows."))
            continue
        columns = list(rows[0].keys())
        parts.append(html_table(columns, rows, _mean_row(columns, rows, "mean")))
    parts.append(
        "<p>Per-case segmentation metrics of each network on its data (Dice, 95th-percentile "
        "Hausdorff distance and average symmetric surface distance in mm, precision, recall, "
        "volumes in ml), the official ISLES 2017 measures; the bold row is the mean over "
        "cases with a defined value.</p>"
    )
    return Section("metrics", "Segmentation metrics per case", "".join(parts))


def sweep_section(runs: Sequence[RunTables], fig_dir: Path) -> Section:
    from strokelrp.analysis.calculus import mu_matrix, row_scope, sweet_spot
    from strokelrp.analysis.shares import share_summary
    from strokelrp.report import figures

    tables = [run.sweep for run in runs if run.sweep is not None]
    if not tables:
        body = note("No sweep yet: run `strokelrp sweep RUN DATA` to add figures 4 and 5.")
        return Section("sweep", "Inclusivity and signal distribution", body)
    rows = [row for table in tables for row in table]
    if not rows:
        return Section("sweep", "Inclusivity and signal distribution", note("The sweep is empty."))
    n_cases = len({(r["run"], r["case"]) for r in rows})
    settings = ordered_settings(rows)
    parts = [
        f"<p>{len(tables)} sweep table(s), {n_cases} (network, case) pairs, "
        f"{len(settings)} filter settings; relevance from the "
        f"{esc(', '.join(sorted({str(r['target']) for r in rows})))} with rules "
        f"{esc(', '.join(sorted({str(r['rules']) for r in rows})))}.</p>"
    ]
    png = figures.figure4_inclusivity(rows, fig_dir)[0]
    parts.append(
        figure_html(
            png,
            "Figure 4: inclusivity of the binarised relevance (|R_c|/max|R_c| > 0.5) per filter "
            "setting. Top: input inclusivity D(LRP, x), the fraction of the bright input "
            "(|x_c|/max|x_c| > 0.1) the heatmap covers; bottom: ground-truth inclusivity "
            "D(LRP, OT), the fraction of the lesion it covers. Each box pools networks, cases "
            "and the input channels of one series; the tables give the means (largest in bold).",
        )
    )
    for kind, caption in (
        (
            "pass",
            "Figure 5 (D1, D2): mean normalised signal, the mean over the volume of R_c/max|R_c|, "
            "per pass-filter setting; one point per network, case and modality (D1, jittered), "
            "box plots of the same values (D2). A wider spread of this mean is the paper's proxy "
            "for information content.",
        ),
        (
            "clamp",
            "Annex figure 2: the same as figure 5 for clamp filters.",
        ),
    ):
        if any(r["kind"] == kind for r in rows):
            png = figures.figure5_signal(rows, fig_dir, kind=kind)[0]
            parts.append(figure_html(png, caption))
    spots = {}
    scopes = sorted({row_scope(r) for r in rows if r["kind"] in ("pass", "clamp")}, reverse=True)
    for kind in ("pass", "clamp"):
        for scope in scopes:  # "sample" first; per-channel settings get a curve of their own
            mu, alphas, _ = mu_matrix(rows, kind=kind, scope=scope)
            if len(alphas) >= 2:
                suffix = "" if scope == "sample" else f"/{scope}"
                spots[f"{kind} (0, α){suffix}"] = sweet_spot(mu, alphas)
    if spots:
        png = figures.sweet_spot_figure(spots, fig_dir)[0]
        text = "; ".join(
            f"{label}: α₀ = {s.alpha0:g}, largest spread at α = {s.peak_alpha:g}"
            for label, s in spots.items()
        )
        parts.append(
            figure_html(
                png,
                "Sweet spot: standard deviation of the mean normalised signal μ_α over all "
                "(network, case, modality) points against the filter's upper bound α (the raw "
                "map counts as α = 1); α₀ is the smallest α whose spread is still at least half "
                f"of the largest, below it the variability collapses. {text}.",
            )
        )
    parts.append(shares_html(share_summary(rows), settings))
    parts.append(filter_truth_html(runs, rows, settings))
    return Section("sweep", "Inclusivity and signal distribution", "".join(parts))


def _setting_of_method(method: str) -> tuple[str, str] | None:
    """``lrp:paper+pass:0,0.4`` -> ("paper", "pass(0,0.4)"); ``lrp:paper`` -> ("paper", "raw");
    None for methods that are not LRP presets (or carry options)."""
    from strokelrp.lrp.filters import filter_label, parse_filter

    if not method.startswith("lrp:") or "(" in method.split("+", 1)[0]:
        return None
    preset, _, filt = method[4:].partition("+")
    try:
        return preset, filter_label(parse_filter(filt)) if filt else "raw"
    except StrokeLRPError:
        return None


def filter_truth_html(
    runs: Sequence[RunTables], rows: Sequence[Mapping[str, Any]], settings: Sequence[str]
) -> str:
    """Per filter setting: inclusivity (sweep) next to faithfulness and randomisation (assess)."""
    from strokelrp.analysis.assess import CHECKS, summarize_methods
    from strokelrp.analysis.table import mean_table

    table = []
    spots: list[dict[str, Any]] = []
    order = {s: i for i, s in enumerate(settings)}
    for run in runs:
        mine = [r for r in rows if r["run"] == run.name]
        if run.assess_path is None or not mine:
            continue
        rules = {str(r["rules"]) for r in mine}
        inc_x = mean_table(mine, "input_inclusivity", by=("setting",))
        inc_gt = mean_table(mine, "gt_inclusivity", by=("setting",))
        summary = summarize_methods(run.assess)
        spots += sweet_spot_truth(run.name, mine, summary, inc_x, inc_gt)
        for s in summary:
            found = _setting_of_method(s["method"])
            if found is None or found[0] not in rules or (found[1],) not in inc_x:
                continue
            table.append(
                {
                    "run": run.name,
                    "setting": found[1],
                    "input_inclusivity": inc_x[(found[1],)],
                    "gt_inclusivity": inc_gt[(found[1],)],
                    "morf_aopc": s["morf_aopc"],
                    "prior_gap": s["prior_gap"],
                    "randomisation_rho": s["randomisation_rho"],
                    "lesion_share": s["lesion_share"],
                    "checks": f"{passed_checks(s)}/{len(CHECKS)}",
                }
            )
    if not table:
        return note(
            "Faithfulness per filter setting needs an assess.csv with the swept settings, e.g. "
            "`strokelrp assess RUN DATA --methods lrp:paper --methods lrp:paper+pass:0,0.4 ... "
            "--out RUN/assess`."
        )
    table.sort(key=lambda r: (r["run"], order.get(r["setting"], 99)))
    columns = list(table[0].keys())
    caption = (
        "Inclusivity alone rewards saturated maps (a filter whose mask covers nearly "
        "everything covers the lesion too), so each setting's inclusivity is shown next to "
        "what the map is worth: MoRF AOPC (mean relative drop of the lesion logit when the "
        "most relevant elements go first) and its median ratio to a random order, the "
        "randomisation ρ (high: the map barely depends on the learnt weights), the share of "
        "positive relevance on the target, and the number of pass marks met (trust section)."
    )
    return (
        f"<h3>Filters: inclusivity against faithfulness</h3>{html_table(columns, table)}"
        f"<p>{esc(caption)}</p>{sweet_spot_truth_html(spots)}"
    )


def _assessed_alphas(
    summary: Sequence[Mapping[str, Any]], rules: set[str], kind: str
) -> dict[float, Mapping[str, Any]]:
    """alpha -> the summary of the assessed (0, alpha) setting of ``kind`` (the raw map as
    alpha = 1), for the LRP presets in ``rules``."""
    from strokelrp.lrp.filters import parse_filter

    found: dict[float, Mapping[str, Any]] = {}
    for s in summary:
        setting = _setting_of_method(s["method"])
        if setting is None or setting[0] not in rules:
            continue
        f = parse_filter(setting[1])
        if f is None:
            found[1.0] = s
        elif f.kind == kind and f.low == 0.0 and f.scope == "sample":
            found[f.high] = s
    return found


def sweet_spot_truth(
    run: str,
    sweep_rows: Sequence[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]],
    inc_x: Mapping[tuple[str], float],
    inc_gt: Mapping[tuple[str], float],
) -> list[dict[str, Any]]:
    """Per filter kind: the run's sweet spot alpha_0 (from its own sweep rows) with the trust
    measures of the (0, alpha_0) setting itself when it was assessed, else "not assessed" and
    the command that would assess it (a neighbouring setting's score is not alpha_0's).
    ``summary``: :func:`strokelrp.analysis.assess.summarize_methods` of the run's assess
    table; ``inc_x``/``inc_gt``: mean inclusivity per setting label."""
    from strokelrp.analysis.assess import CHECKS
    from strokelrp.analysis.calculus import sweet_spots
    from strokelrp.lrp.filters import filter_label, parse_filter

    rules = {str(r["rules"]) for r in sweep_rows}
    out = []
    for kind, alpha0 in sweet_spots(sweep_rows).items():
        if not math.isfinite(alpha0):
            continue
        assessed = _assessed_alphas(summary, rules, kind)
        label = "raw" if alpha0 >= 1.0 else filter_label(parse_filter(f"{kind}:0,{alpha0:g}"))
        base = {
            "run": run,
            "filter": f"{kind} (0, α)",
            "alpha0": alpha0,
            "input_inclusivity": inc_x.get((label,), math.nan),
            "gt_inclusivity": inc_gt.get((label,), math.nan),
        }
        s = next((v for a, v in assessed.items() if math.isclose(a, alpha0, rel_tol=1e-6)), None)
        if s is None:
            preset = sorted(rules)[0] if rules else "PRESET"
            command = (
                f"strokelrp assess RUN DATA --methods lrp:{preset}+{kind}:0,{alpha0:g} "
                "--out RUN/assess"
            )
            out.append(base | {"assessed": "not assessed", "faithful": "not assessed",
                               "checks": f"not assessed: {command}"})  # fmt: skip
            continue
        out.append(
            base
            | {
                "assessed": label,
                "morf_aopc": s["morf_aopc"],
                "prior_gap": s["prior_gap"],
                "randomisation_rho": s["randomisation_rho"],
                "lesion_share": s["lesion_share"],
                "faithful": "yes" if s["faithful_ok"] else "no",
                "checks": f"{passed_checks(s)}/{len(CHECKS)}",
            }
        )
    return out


SPOT_COLUMNS = (
    "run",
    "filter",
    "alpha0",
    "assessed",
    "input_inclusivity",
    "gt_inclusivity",
    "morf_aopc",
    "prior_gap",
    "randomisation_rho",
    "lesion_share",
    "faithful",
    "checks",
)
"""The columns of the sweet-spot table (a row not assessed leaves the measures empty)."""


def sweet_spot_truth_html(spots: Sequence[Mapping[str, Any]]) -> str:
    """The sweet-spot rows of :func:`sweet_spot_truth` as a table with its caption."""
    if not spots:
        return ""
    from strokelrp.analysis.assess import CHECKS

    caption = (
        "The sweet spot α₀ of each filter kind (the smallest α whose spread of μ_α is at least "
        "half of the largest, computed from this run's sweep alone) with the trust measures of "
        "the (0, α₀) setting itself; a setting that was not assessed says so, with the "
        "command that would assess it. faithful: "
        f"{CHECKS['faithful']}. A sweet spot chosen for inclusivity is worth using only if "
        "its map is faithful. An empty randomisation ρ is undefined, e.g. when the filter "
        "zeroes the whole map of every re-initialised model (no rank correlation with a "
        "constant)."
    )
    return (
        f"<h3>The sweet spot α₀: is it faithful?</h3>{html_table(SPOT_COLUMNS, spots)}"
        f"<p>{esc(caption)}</p>"
    )


def shares_html(summary: Sequence[Mapping[str, Any]], settings: Sequence[str]) -> str:
    """The share summary as a table in the paper's setting order, with its caption."""
    order = {s: i for i, s in enumerate(settings)}
    rows = sorted(summary, key=lambda r: (str(r["series"]), order.get(r["setting"], 99)))
    has_ablation = any(r["n_ablation_maps"] for r in rows)
    has_ignored = any(r["n_ignored_maps"] for r in rows)
    columns = ["series", "setting", "lesion_share", "n_maps"]
    if has_ablation:
        columns[3:3] = ["ablation_rho"]
    if has_ignored:
        columns[4:4] = ["ignored_share", "ignored_uniform"]
    caption = (
        "Where the positive relevance goes, mean over maps: lesion_share is the share of a "
        "map's positive relevance inside the lesion."
    )
    if has_ablation:
        caption += (
            " Modality shares are judged against what the model uses, measured by ablation "
            "(the Dice drop when a modality is mean-filled), not against what the data "
            "generator meant a modality to carry: ablation_rho is the Spearman correlation "
            "of a map's channel shares with the channels' drops (1: the map ranks the channels "
            "as the model relies on them)."
        )
    if has_ignored:
        caption += (
            " ignored_share is the share on modalities whose mean-filling changes the Dice "
            "by less than 0.01 (the model ignores them, e.g. a synthetic noise control); "
            "ignored_uniform is what a map blind to the modalities would put there. A map "
            "that follows the model lies below it."
        )
    return f"<h3>Where relevance goes</h3>{html_table(columns, rows)}<p>{esc(caption)}</p>"


def paired_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The paired Wilcoxon tests of prior_gap between methods (assess_pairs.csv's rows for
    that measure), with a caption saying what a few cases can show; empty for one method."""
    from strokelrp.analysis.statistics import paired_table

    table = paired_table([dict(r) for r in rows], ["prior_gap"])
    if not table:
        return ""
    caption = (
        "Paired Wilcoxon signed-rank tests of prior_gap (MoRF AOPC minus the locality "
        "prior's) between methods, over the cases both have (method minus other; exact p). "
        "With n cases the smallest two-sided p is 2 / 2^n (0.125 for 4 cases)."
    )
    columns = ["method", "other", "pairs", "median_difference", "p"]
    return f"{html_table(columns, table)}<p>{esc(caption)}</p>"


def skipped_blocks(cascade: Rows) -> list[str]:
    """``order: block (n)`` for every (order, block) of ``cascade.csv`` rows that some case
    skipped (n: in how many cases), in the file's order; rows without ``skipped`` count as
    computed."""
    seen: dict[tuple[str, str], set[str]] = {}
    for r in cascade:
        if str(r.get("skipped") or "0") == "1":
            key = (str(r.get("order") or "top_down"), str(r["layer"]))
            seen.setdefault(key, set()).add(str(r["case"]))
    return [f"{order}: {block} ({len(cases)})" for (order, block), cases in seen.items()]


def trust_section(runs: Sequence[RunTables], fig_dir: Path) -> Section:
    """Per run: the assess table's means per method, pass marks, verdicts, the cascade (with
    the blocks it skipped)."""
    from strokelrp.analysis.assess import CHECKS, summarize_methods
    from strokelrp.analysis.randomisation import LOGIT_CHANGE_MIN
    from strokelrp.report import figures

    parts = []
    for run in runs:
        path, rows = run.assess_path, run.assess
        if path is None:
            continue
        if not rows:
            parts.append(note(f"{path} has no rows."))
            continue
        summary = summarize_methods(rows)
        cases = sorted({r["case"] for r in rows})
        parts.append(f"<h3>{esc(run.name)}</h3>")
        parts.append(
            f"<p>{len(summary)} method(s) on {len(cases)} case(s) ({esc(', '.join(cases))}), "
            f"from {esc(path.name)}; means over the cases, MoRF / random as the median of the "
            "per-case ratios.</p>"
        )
        columns = [
            "method",
            "brain_share",
            "lesion_share",
            "morf_aopc",
            "random_aopc",
            "prior_aopc",
            "prior_gap",
            "prior_gap_low",
            "prior_gap_high",
            "morf_over_random",
            "lerf_aopc",
            "contrast_rho",
            "contrast_gap",
            "ablation_rho",
            "randomisation_rho",
            "randomisation_signed",
            "randomisation_shell",
            "randomisation_ssim",
            "emprt",
            "prior_rho",
            "checks",
        ]
        table = [s | {"checks": f"{passed_checks(s)}/{len(CHECKS)}"} for s in summary]
        parts.append(html_table(columns, table))
        lines = "".join(f"<li>{esc(verdict_line(s))}</li>" for s in summary)
        parts.append(f"<ul>{lines}</ul>")
        parts.append(paired_html(rows))
        parts.append(perturbation_html(run.curves, fig_dir, run.name))
        if run.cascade:
            png = figures.cascade_figure(run.cascade, fig_dir, name=f"cascade_{run.name}")[0]
            skipped = skipped_blocks(run.cascade)
            parts.append(
                note(
                    "Layer randomisation skipped these blocks, whose re-initialisation moves "
                    f"the logits by less than {LOGIT_CHANGE_MIN:.0%} (order: block (cases)): "
                    + "; ".join(skipped)
                    + ". A map cannot be tested against a block the network barely uses."
                )
                if skipped
                else note("Layer randomisation skipped no block.")
            )
            parts.append(
                figure_html(
                    png,
                    "Cascading model randomisation: Spearman of |R| within the brain between "
                    "the trained model and copies whose layers are re-initialised from the "
                    "output side down (step k: the k last parameterised blocks), mean over "
                    "cases; steps whose blocks barely change the logits are skipped (gaps). "
                    "|R| shares the target's distance pattern with any re-initialised map, so "
                    "read it beside the signed and shell-wise columns of the table "
                    '(docs/assess.md, "Randomisation").',
                )
            )
    if not parts:
        body = note(
            "No assess.csv in any run: run `strokelrp assess RUN DATA --out RUN/assess` "
            "(add --cascade for the randomisation cascade) to add the trust section."
        )
        return Section("trust", "Can the maps be trusted?", body)
    checks = "; ".join(CHECKS.values())
    parts.insert(
        0,
        "<p>The measures of <code>strokelrp assess</code> (docs/assess.md) per attribution "
        f"method, and one verdict line each against the pass marks ({esc(checks)}). Model "
        "randomisation has no pass mark: it is shown beside the locality-prior correlation "
        "(prior_rho), the share of a map that a model-free |x|·exp(−d/λ) already explains."
        "</p>",
    )
    return Section("trust", "Can the maps be trusted?", "".join(parts))


def perturbation_html(points: Sequence[Mapping[str, Any]], fig_dir: Path, run: str) -> str:
    """The MoRF, LeRF and random-order curves of ``assess_curves.csv`` (its rows ``points``;
    element level, the main removal kind, means over cases) as a figure and a table; a note when
    there are none."""
    from strokelrp.report import figures
    from strokelrp.report.assess_run import main_removal, mean_curves

    curves = mean_curves(points)
    removal = main_removal(points)
    if not curves:
        return note(
            "No perturbation curves (assess_curves.csv) beside the assess table: rerun "
            "`strokelrp assess` to draw the MoRF/LeRF curves behind the AOPC columns."
        )
    png = figures.perturbation_figure(curves, fig_dir, name=f"perturbation_{run}")[0]
    fractions = sorted({f for orders in curves.values() for fs, _ in orders.values() for f in fs})
    heads = {f: f"{100 * f:g} %" for f in fractions}
    table = []
    for method, orders in curves.items():
        for order, (fs, drops) in orders.items():
            row: dict[str, Any] = {"method": method, "order": order}
            row.update({heads[f]: d for f, d in zip(fs, drops, strict=True)})
            finite = [d for d in drops if math.isfinite(d)]
            row["AOPC"] = sum(finite) / len(finite) if len(finite) == len(drops) else math.nan
            table.append(row)
    columns = ["method", "order", *heads.values(), "AOPC"]
    return figure_html(
        png,
        "Region perturbation curves (assess_curves.csv): the relative drop of the target score "
        f"S when the given share of the input's elements (channel × voxel) is removed "
        f"({removal} removal, docs/assess.md), most "
        "relevant first (MoRF), least relevant first (LeRF) or in random order (mean over the "
        "seeds), mean over the cases. A faithful map's MoRF curve rises far above the random "
        "one and its LeRF curve stays at or below zero; the AOPC columns are the means of these "
        "points over the fractions.",
    ) + html_table(columns, table)


def explanations_section(runs: Sequence[RunTables], report_dir: Path) -> Section:
    """Each explained case's figures embedded and its NIfTIs linked relative to
    ``report_dir`` (the report's folder)."""
    parts = []
    for run in runs:
        for case in run.explained:
            pngs, niftis = case.pngs, case.niftis
            if not pngs and not niftis:
                continue
            parts.append(f"<h3>{esc(run.name)} / {esc(case.case)}</h3>")
            if niftis:
                links = ", ".join(
                    f'<a href="{esc(_rel(p, report_dir))}">{esc(p.name)}</a>' for p in niftis
                )
                parts.append(
                    "<p>Relevance volumes in the case's native grid (signed float32, one volume "
                    f"per modality; open over the inputs in ITK-SNAP or 3D Slicer): {links}</p>"
                )
            parts.append(viewer_html(case, report_dir))
            cards = "".join(
                figure_html(p, f"{case.case}: {p.stem.replace('_', ' ')}") for p in pngs
            )
            parts.append(f'<div class="cards">{cards}</div>')
    if not parts:
        parts.append(note("No explanations yet: run `strokelrp explain RUN DATA --case ID`."))
    else:
        parts.insert(
            0,
            "<p>Per-case heatmaps as written by <code>strokelrp explain</code>: raw and "
            "filtered relevance per channel normalised to [-1, 1] (red positive, blue negative), "
            "over the modality slice, next to the ground truth and the prediction.</p>",
        )
    return Section("explanations", "Explanations per case", "".join(parts))


def viewer_html(case: CaseFigures, report_dir: Path) -> str:
    """The case's interactive viewer in a frame (its page lies beside the report), or why not."""
    if case.viewer is None:
        return note(case.viewer_note) if case.viewer_note else ""
    href = esc(_rel(case.viewer, report_dir))
    return (
        f'<iframe src="{href}" title="viewer {esc(case.case)}" style="width:100%;height:780px;'
        f'border:1px solid #ccc"></iframe><p class="meta">Interactive viewer (NiiVue): '
        f'<a href="{href}">open it on its own</a>; the figures below are for print.</p>'
    )


def provenance_section(records: Sequence[tuple[str, dict[str, Any] | None]]) -> Section:
    rows = []
    for output, record in records:
        if record is None:
            rows.append({"output": output, "command": "(no provenance recorded)"})
            continue
        checkpoints = "; ".join(
            f"{c.get('network') or ''} {c.get('path')} (epoch {c.get('epoch')} of "
            f"{c.get('epochs_planned')})".strip()
            for c in record.get("checkpoints", [])
        )
        rules = record.get("rules") or {}
        overrides = ", ".join(f"{k}={v}" for k, v in (rules.get("overrides") or {}).items())
        versions = record.get("versions") or {}
        rows.append(
            {
                "output": output,
                "command": record.get("command", ""),
                "data": (record.get("data") or {}).get("root", ""),
                "cases": len((record.get("data") or {}).get("cases") or {}),
                "checkpoints": checkpoints,
                "rules": (rules.get("preset", "") + (f" ({overrides})" if overrides else "")),
                "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
                "written": record.get("written_utc", ""),
            }
        )
    if not rows:
        return Section("provenance", "Provenance", note("No outputs to trace yet."))
    columns = ["output", "command", "data", "cases", "checkpoints", "rules", "versions", "written"]
    body = html_table(columns, rows) + (
        "<p>Where each output shown above came from: the data folder and number of cases "
        "(case files and content fingerprints are in the sidecar files), the checkpoint(s) "
        "with their epoch, the LRP rule preset with any overridden fields, and the versions "
        "of strokelrp, torch and Python.</p>"
    )
    return Section("provenance", "Provenance", body)


# ------------------------------------------------------------------------------ document


def render(
    title: str, run_names: Sequence[str], sections: Sequence[Section], *, training: bool = True
) -> str:
    """The whole HTML document; ``training``: the names are training runs (else results
    folders, e.g. of an nnU-Net model, said so in the header)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    run_list = ", ".join(esc(name) for name in run_names)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p class='meta'>{'Runs' if training else 'Results'}: "
        f"{run_list}. Written {stamp} by strokelrp {esc(__version__)}. Method: LRP with "
        "amplitude filters inside the relevance walk (Tjoa et al. 2020) and the baselines "
        f"it is assessed against.</p><nav><ul>{nav}</ul></nav>{body}</body></html>\n"
    )


def report_html(runs: Sequence[RunTables], report_dir: Path, fig_dir: Path) -> str:
    """The report of ``runs`` as one HTML document: every section in order, figures written
    to ``fig_dir`` and embedded, NIfTI links relative to ``report_dir``. Results folders
    (``training`` False) add no training sections, and a section none of them has data for is
    left out unless a training run is shown."""
    trained = [run for run in runs if run.training]
    builders: list[tuple[bool, Callable[[], Section]]] = [
        (bool(trained), lambda: config_section(trained)),
        (bool(trained), lambda: training_section(trained, fig_dir)),
        (bool(trained), lambda: metrics_section(trained)),
        (
            bool(trained) or any(r.sweep is not None for r in runs),
            lambda: sweep_section(runs, fig_dir),
        ),
        (bool(trained) or any(r.assess for r in runs), lambda: trust_section(runs, fig_dir)),
        (
            bool(trained) or any(r.explained for r in runs),
            lambda: explanations_section(runs, report_dir),
        ),
        (True, lambda: provenance_section([r for run in runs for r in run.provenance])),
    ]
    sections = [build() for shown, build in builders if shown]
    names = [run.name for run in runs]
    title = "strokelrp report: " + ", ".join(names)
    return render(title, names, sections, training=bool(trained))
