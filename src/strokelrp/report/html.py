"""A self-contained HTML report over one or more runs (readable offline, no scripts).

Sections, each skipped with a note when its inputs are missing: run configuration
(``RUN/config.toml``), table 1 (``RUN/table1.csv``) and training curves (``RUN/train_log.csv``,
and ``RUN/assess_log.csv``: trust measures per N epochs),
metrics per case (``RUN/metrics.csv``), the sweep's figures and tables
(``RUN/sweep/sweep.csv``: paper fig. 4, fig. 5 D1/D2, annex fig. 2, the sweet spot, where the
relevance goes), the trust section (``RUN/assess/assess.csv`` of ``strokelrp assess``: measures
and a verdict per method, the randomisation cascade), the per-case explanations
(``RUN/explanations/CASE/*.png`` embedded, with relative links to the NIfTI files beside
them), and the provenance of every table and explanation shown (from their
``*.provenance.json`` sidecars and ``explanation.json``: data root, checkpoint path and epoch,
rules with overrides, versions; outputs written before strokelrp recorded provenance are named
as such). ``report.provenance.json`` beside the report lists the same. Figures are embedded as
base64 PNG; their PNG and SVG files are also written to ``figures/`` next to the report.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from strokelrp import __version__, run_files
from strokelrp.analysis.table import ordered_settings, read_tables
from strokelrp.atomic import atomic_write
from strokelrp.errors import StrokeLRPError
from strokelrp.run_files import RunDir, read_csv, read_explanation

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


def config_section(runs: Sequence[Path]) -> Section:
    parts = []
    for run in runs:
        cfg = RunDir(run).config
        parts.append(f"<h3>{esc(run.name)}</h3>")
        parts.append(f"<pre>{esc(cfg.read_text(encoding='utf-8', errors='replace'))}</pre>")
    return Section("config", "Run configuration", "".join(parts))


def training_section(runs: Sequence[Path], fig_dir: Path) -> Section:
    from strokelrp.report import figures

    parts = []
    table: list[dict[str, Any]] = []
    for run in map(RunDir, runs):
        if run.table1.is_file():
            table.extend({"run": run.name, **row} for row in run.read_table1())
    if table:
        columns = list(dict.fromkeys(c for r in table for c in r))
        parts.append(html_table(columns, table))
        parts.append(
            "<p>Table 1: one row per network, as written by <code>strokelrp evaluate</code> "
            "(time per network and mean Dice, as in the paper's table 1).</p>"
        )
    else:
        parts.append(note("No table1.csv in any run: `strokelrp evaluate RUN DATA` writes it."))
    logs = {}
    for run in map(RunDir, runs):
        for net in run.logged_networks(run_files.TRAIN_LOG):  # RUN, or its net-K of repeats
            logs[run.label(net)] = net.read_train_log()
    logs = {k: v for k, v in logs.items() if v}
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


def assess_log_html(runs: Sequence[Path], fig_dir: Path) -> str:
    """The trust measures recorded during training (``assess_log.csv``), if any run has them."""
    from strokelrp.report import figures

    logs = {}
    for run in map(RunDir, runs):
        for net in run.logged_networks(run_files.ASSESS_LOG):
            logs[run.label(net)] = net.read_assess_log()
    logs = {k: v for k, v in logs.items() if v}
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


def metrics_section(runs: Sequence[Path]) -> Section:
    parts = []
    for run in runs:
        path = RunDir(run).metrics
        parts.append(f"<h3>{esc(run.name)}</h3>")
        if not path.is_file():
            parts.append(note(f"{path} not found: run `strokelrp evaluate` to write it."))
            continue
        rows = read_csv(path)
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


def sweep_section(runs: Sequence[Path], fig_dir: Path) -> Section:
    from strokelrp.analysis.calculus import mu_matrix, sweet_spot
    from strokelrp.analysis.shares import share_summary
    from strokelrp.report import figures

    tables = [t for t in (RunDir(run).sweep_table for run in runs) if t.is_file()]
    if not tables:
        body = note("No sweep yet: run `strokelrp sweep RUN DATA` to add figures 4 and 5.")
        return Section("sweep", "Inclusivity and signal distribution", body)
    rows = read_tables(tables)
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
            "and the 6 modalities of one series; the tables give the means (largest in bold).",
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
    for kind in ("pass", "clamp"):
        mu, alphas, _ = mu_matrix(rows, kind=kind)
        if len(alphas) >= 2:
            spots[f"{kind} (0, α)"] = sweet_spot(mu, alphas)
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
    runs: Sequence[Path], rows: Sequence[Mapping[str, Any]], settings: Sequence[str]
) -> str:
    """Per filter setting: inclusivity (sweep) next to faithfulness and randomisation (assess)."""
    from strokelrp.analysis.assess import CHECKS, summarize_methods
    from strokelrp.analysis.table import mean_table

    table = []
    order = {s: i for i, s in enumerate(settings)}
    for run in runs:
        path = RunDir(run).assess_table
        mine = [r for r in rows if r["run"] == run.name]
        if path is None or not mine:
            continue
        rules = {str(r["rules"]) for r in mine}
        inc_x = mean_table(mine, "input_inclusivity", by=("setting",))
        inc_gt = mean_table(mine, "gt_inclusivity", by=("setting",))
        for s in summarize_methods(read_csv(path)):
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
                    "morf_over_random": s["morf_over_random"],
                    "randomisation_rho": s["randomisation_rho"],
                    "lesion_share": s["lesion_share"],
                    "checks": f"{_passed(s)}/{len(CHECKS)}",
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
    return f"<h3>Filters: inclusivity against faithfulness</h3>{html_table(columns, table)}" + (
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
            "of a map's 6 modality shares with the 6 drops (1: the map ranks the modalities "
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


_CHECK_VALUES = {
    "brain_share": "brain_share",
    "lesion_share": "lesion_share",
    "faithful": "morf_over_random",
    "contrast": "contrast_rho",
    "ablation": "ablation_rho",
}
"""The statistic of each check of :data:`strokelrp.analysis.assess.CHECKS`, for the text."""


def _passed(summary: Mapping[str, Any]) -> int:
    return sum(bool(summary[f"{key}_ok"]) for key in _CHECK_VALUES)


def verdict_line(summary: Mapping[str, Any]) -> str:
    """One line for a :func:`strokelrp.analysis.assess.summarize_methods` entry: the checks
    passed, those failed with their values, randomisation beside the locality prior."""
    from strokelrp.analysis.assess import CHECKS

    failed = [key for key in CHECKS if not summary[f"{key}_ok"]]
    text = f"{summary['method']}: "
    if not failed:
        text += f"passes all {len(CHECKS)} checks"
    else:
        text += f"passes {len(CHECKS) - len(failed)} of {len(CHECKS)} checks; fails "
        text += "; ".join(
            f"{CHECKS[key]} (got {float(summary[_CHECK_VALUES[key]]):.3g})" for key in failed
        )
    rho, prior = float(summary["randomisation_rho"]), float(summary["prior_rho"])
    return text + f". Randomisation ρ {rho:.2f}, locality-prior ρ {prior:.2f}"


def trust_section(runs: Sequence[Path], fig_dir: Path) -> Section:
    """Per run: the assess table's means per method, pass marks, verdicts, the cascade."""
    from strokelrp.analysis.assess import CHECKS, summarize_methods
    from strokelrp.report import figures

    parts = []
    for run in runs:
        path = RunDir(run).assess_table
        if path is None:
            continue
        rows = read_csv(path)
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
            "morf_over_random",
            "lerf_aopc",
            "contrast_rho",
            "ablation_rho",
            "randomisation_rho",
            "prior_rho",
            "checks",
        ]
        table = [s | {"checks": f"{_passed(s)}/{len(CHECKS)}"} for s in summary]
        parts.append(html_table(columns, table))
        lines = "".join(f"<li>{esc(verdict_line(s))}</li>" for s in summary)
        parts.append(f"<ul>{lines}</ul>")
        cascade = path.parent / run_files.CASCADE_TABLE
        if cascade.is_file() and (steps := read_csv(cascade)):
            png = figures.cascade_figure(steps, fig_dir, name=f"cascade_{run.name}")[0]
            parts.append(
                figure_html(
                    png,
                    "Cascading model randomisation: Spearman of |R| within the brain between "
                    "the trained model and copies whose layers are re-initialised from the "
                    "output side down (step k: the k last parameterised blocks), mean over "
                    "cases. A map that depends on the learnt weights falls quickly.",
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
        "(prior_rho), the share of a map that a model-free |x|·exp(−d/λ) already explains. "
        "MoRF/LeRF curves per perturbed fraction are not recorded by assess, only their areas "
        "(AOPC).</p>",
    )
    return Section("trust", "Can the maps be trusted?", "".join(parts))


def explanations_section(runs: Sequence[Path], report_dir: Path) -> Section:
    parts = []
    for run in runs:
        for case_dir in RunDir(run).explained_cases():
            pngs = sorted(case_dir.glob("*.png"))
            niftis = sorted([*case_dir.glob("*.nii"), *case_dir.glob("*.nii.gz")])
            if not pngs and not niftis:
                continue
            parts.append(f"<h3>{esc(run.name)} / {esc(case_dir.name)}</h3>")
            if niftis:
                links = ", ".join(
                    f'<a href="{esc(_rel(p, report_dir))}">{esc(p.name)}</a>' for p in niftis
                )
                parts.append(
                    "<p>Relevance volumes in the case's native grid (signed float32, one volume "
                    f"per modality; open over the inputs in ITK-SNAP or 3D Slicer): {links}</p>"
                )
            cards = "".join(
                figure_html(p, f"{case_dir.name}: {p.stem.replace('_', ' ')}") for p in pngs
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


def provenance_records(runs: Sequence[Path]) -> list[tuple[str, dict[str, Any] | None]]:
    """(output path, its provenance record or None) for every output of ``runs`` the report
    shows: table1, metrics, sweep tables and explanations."""
    from strokelrp.provenance import read_sidecar

    found: list[tuple[str, dict[str, Any] | None]] = []
    for run in map(RunDir, runs):
        found.extend((str(path), read_sidecar(path)) for path in run.outputs())
        for summary in run.explanation_summaries():
            try:
                record = read_explanation(summary).get("provenance")
            except StrokeLRPError:
                record = None
            found.append((str(summary), record if isinstance(record, dict) else None))
    return found


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


def render(title: str, runs: Sequence[Path], sections: Sequence[Section]) -> str:
    """The whole HTML document."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    run_list = ", ".join(esc(r.name) for r in runs)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p class='meta'>Runs: {run_list}. Written {stamp} by strokelrp "
        f"{esc(__version__)}. Method: Tjoa et al. 2020, LRP with amplitude filters on a 3-D "
        f"U-Net (ISLES 2017).</p><nav><ul>{nav}</ul></nav>{body}</body></html>\n"
    )


def _run_problem(run: Path) -> str | None:
    """Why ``run`` is not a training run folder (None when it is one)."""
    if not run.is_dir():
        return f"{run}: run directory not found"
    if RunDir(run).is_run():
        return None
    hint = ""
    if any(run.glob("training_*")) or (run / "synth_manifest.json").is_file():
        hint = "; it looks like a data folder: give the run folder that `strokelrp train` wrote"
    return f"{run}: not a training run (no config.toml){hint}"


def report_path(out: str | Path | None, first_run: Path) -> Path:
    """Where the report goes: ``out`` ending in .html/.htm is the file (its folder must exist),
    an existing folder gets ``report.html`` inside, None gives ``FIRST_RUN/report.html``;
    anything else is an error (no folders are created)."""
    if out is None:
        return RunDir(first_run).report
    path = Path(out)
    if path.is_dir():
        return path / run_files.REPORT
    if path.suffix.lower() in (".html", ".htm"):
        if not path.parent.is_dir():
            raise StrokeLRPError(
                f"--out {out}: the folder {path.parent} does not exist (create it first)"
            )
        return path
    if path.exists():
        raise StrokeLRPError(f"--out {out}: exists and is not an .html file or a folder")
    raise StrokeLRPError(
        f"--out {out}: neither an existing folder nor a file name ending in .html "
        "(create the folder first, or name the file)"
    )


def build_report(runs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the report for ``runs`` to ``out`` (see :func:`report_path`; default: the first
    run's ``report.html``).

    Each run must be a training run folder (``config.toml``); a run named twice is shown once.
    Figures are written to ``figures/`` beside the report and embedded. Returns the path.
    """
    from strokelrp.pipeline.sweep import unique_runs

    if not runs:
        raise StrokeLRPError("report needs at least one run directory")
    run_dirs = [Path(r) for r in unique_runs(runs)]
    problems = [p for p in map(_run_problem, run_dirs) if p is not None]
    if problems:
        raise StrokeLRPError("\n".join(problems))
    out_path = report_path(out, run_dirs[0])
    report_dir = out_path.parent
    fig_dir = report_dir / run_files.FIGURES
    records = provenance_records(run_dirs)
    builders: list[Callable[[], Section]] = [
        lambda: config_section(run_dirs),
        lambda: training_section(run_dirs, fig_dir),
        lambda: metrics_section(run_dirs),
        lambda: sweep_section(run_dirs, fig_dir),
        lambda: trust_section(run_dirs, fig_dir),
        lambda: explanations_section(run_dirs, report_dir),
        lambda: provenance_section(records),
    ]
    sections = [build() for build in builders]
    title = "strokelrp report: " + ", ".join(r.name for r in run_dirs)
    text = render(title, run_dirs, sections)
    from strokelrp.provenance import provenance, write_sidecar

    write_sidecar(
        out_path,
        provenance(
            "report",
            runs=[str(r.resolve()) for r in run_dirs],
            outputs={output: record for output, record in records},
        ),
    )
    return atomic_write(out_path, lambda fh: fh.write(text))
