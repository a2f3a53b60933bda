"""``strokelrp report``: read what each run folder holds, once, and hand the tables to the
renderer :mod:`strokelrp.report.html`.

:func:`read_run_tables` is the one place the report touches a run folder (through
:class:`~strokelrp.run_files.RunDir`); :func:`build_report` checks the runs, picks the
report's path, renders and writes the report with its provenance sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strokelrp import run_files
from strokelrp.atomic import atomic_write
from strokelrp.errors import StrokeLRPError
from strokelrp.report.html import CaseFigures, RunTables, report_html
from strokelrp.run_files import RunDir, read_csv, read_explanation


def sweep_table_of(folder: Path) -> Path | None:
    """A folder's sweep table: a run's ``sweep/sweep.csv``, else an nnU-Net sweep folder's
    ``sweep.csv``; None when there is neither."""
    for path in (RunDir(folder).sweep_table, folder / run_files.SWEEP_TABLE.name):
        if path.is_file():
            return path
    return None


def explained_folders(folder: Path) -> list[Path]:
    """The explanation folders (holding ``explanation.json``) of a results folder: the folder
    itself (``explain --nnunet --out``), its sub-folders (a cohort) and those under
    ``explanations/`` (the default of ``explain --nnunet DATA --case``), sorted."""
    found = [folder, *folder.glob("*"), *RunDir(folder).explanations.glob("*")]
    return sorted(p for p in found if (p / run_files.EXPLANATION).is_file())


def is_results_folder(folder: Path) -> bool:
    """Whether ``folder`` (not a training run) holds something the report shows: an
    assessment, a sweep table or explanations (e.g. an nnU-Net model folder, or the --out of
    ``explain``, ``assess`` or ``sweep`` with ``--nnunet``)."""
    has_assess = RunDir(folder).assess_table is not None
    return has_assess or sweep_table_of(folder) is not None or bool(explained_folders(folder))


def read_results_tables(folder: Path) -> RunTables:
    """What the report shows of a results folder (:func:`is_results_folder`): its assessment,
    sweep table and explanations with their provenance; no training sections."""
    from strokelrp.analysis.table import read_table
    from strokelrp.provenance import read_sidecar

    run = RunDir(folder)
    assess, sweep = run.assess_table, sweep_table_of(folder)
    beside = assess.parent if assess is not None else None
    cases = explained_folders(folder)
    records: list[tuple[str, dict[str, Any] | None]] = [
        (str(p), read_sidecar(p)) for p in (sweep, assess) if p is not None
    ]
    for case_dir in cases:
        summary = case_dir / run_files.EXPLANATION
        record = read_explanation(summary).get("provenance")
        records.append((str(summary), record if isinstance(record, dict) else None))
    return RunTables(
        name=folder.resolve().name,
        sweep=read_table(sweep) if sweep is not None else None,
        assess_path=assess,
        assess=read_csv(assess) if assess is not None else [],
        curves=_rows_if_present(beside, run_files.ASSESS_CURVES),
        cascade=_rows_if_present(beside, run_files.CASCADE_TABLE),
        explained=[_case_figures(case_dir) for case_dir in cases],
        provenance=records,
        training=False,
    )


def read_run_tables(run: str | Path | RunDir) -> RunTables:
    """Every table and file of ``run`` that the report shows (see :class:`RunTables`); a
    malformed file raises the reader's error naming it. A folder that is no training run
    but holds results (:func:`is_results_folder`) is read by :func:`read_results_tables`."""
    run = RunDir(run)
    if not run.is_run():
        return read_results_tables(run.path)
    assess = run.assess_table
    beside = assess.parent if assess is not None else None
    return RunTables(
        name=run.name,
        config=run.config.read_text(encoding="utf-8", errors="replace"),
        table1=run.read_table1() if run.table1.is_file() else [],
        train_logs={  # RUN, or its net-K folders in a repeats run
            run.label(net): net.read_train_log() for net in run.logged_networks(run_files.TRAIN_LOG)
        },
        assess_logs={
            run.label(net): net.read_assess_log()
            for net in run.logged_networks(run_files.ASSESS_LOG)
        },
        metrics_path=run.metrics,
        metrics=run.read_metrics() if run.metrics.is_file() else None,
        sweep=run.read_sweep() if run.sweep_table.is_file() else None,
        assess_path=assess,
        assess=read_csv(assess) if assess is not None else [],
        curves=_rows_if_present(beside, run_files.ASSESS_CURVES),
        cascade=_rows_if_present(beside, run_files.CASCADE_TABLE),
        explained=[_case_figures(case_dir) for case_dir in run.explained_cases()],
        provenance=provenance_records(run),
    )


def _rows_if_present(folder: Path | None, name: str) -> list[dict[str, str]]:
    path = folder / name if folder is not None else None
    return read_csv(path) if path is not None and path.is_file() else []


def _case_figures(case_dir: Path) -> CaseFigures:
    """The PNG figures and NIfTI volumes of one ``explanations/CASE`` folder, sorted."""
    return CaseFigures(
        case=case_dir.name,
        folder=case_dir,
        pngs=tuple(sorted(case_dir.glob("*.png"))),
        niftis=tuple(sorted([*case_dir.glob("*.nii"), *case_dir.glob("*.nii.gz")])),
    )


def write_viewer(run: str, case: CaseFigures, folder: Path) -> CaseFigures:
    """Write the case's viewer page ``folder/RUN-CASE.html`` (NiiVue copied beside it); the
    case without a page, and the reason, when its folder cannot be shown."""
    from dataclasses import replace

    from strokelrp.pipeline.view import viewer_case
    from strokelrp.report.viewer import copy_assets, viewer_page

    if case.folder is None or not (case.folder / run_files.EXPLANATION).is_file():
        return case
    try:
        script = copy_assets(folder)
        page = viewer_page(viewer_case(case.folder), script.name)
    except StrokeLRPError as err:
        return replace(case, viewer_note=f"no interactive viewer: {err}")
    path = folder / f"{run}-{case.case}.html"
    return replace(case, viewer=atomic_write(path, lambda fh: fh.write(page)))


def provenance_records(run: str | Path | RunDir) -> list[tuple[str, dict[str, Any] | None]]:
    """(output path, its provenance record or None) for every output of ``run`` the report
    shows: table1, metrics, sweep table and explanations."""
    from strokelrp.provenance import read_sidecar

    run = RunDir(run)
    found: list[tuple[str, dict[str, Any] | None]] = [
        (str(path), read_sidecar(path)) for path in run.outputs()
    ]
    for summary in run.explanation_summaries():
        try:
            record = read_explanation(summary).get("provenance")
        except StrokeLRPError:
            record = None
        found.append((str(summary), record if isinstance(record, dict) else None))
    return found


def _run_problem(run: Path) -> str | None:
    """Why ``run`` is not a training run folder (None when it is one)."""
    if not run.is_dir():
        return f"{run}: run directory not found"
    if RunDir(run).is_run() or is_results_folder(run):
        return None
    hint = ""
    if any(run.glob("training_*")) or (run / "synth_manifest.json").is_file():
        hint = "; it looks like a data folder: give the run folder that `strokelrp train` wrote"
    return (
        f"{run}: not a training run (no config.toml) and no results (assess.csv, sweep.csv or "
        f"explanation.json){hint}"
    )


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


def _figure_files(fig_dir: Path) -> dict[Path, int]:
    """The report figures (``.png``, ``.svg``) in ``fig_dir`` -> inode; each figure is written
    by an atomic replace, so a rewritten figure has a new inode."""
    if not fig_dir.is_dir():
        return {}
    return {p: p.stat().st_ino for p in fig_dir.iterdir() if p.suffix in (".png", ".svg")}


def build_report(runs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the report for ``runs`` to ``out`` (see :func:`report_path`; default: the first
    run's ``report.html``).

    Each run must be a training run folder (``config.toml``) or a results folder
    (:func:`is_results_folder`: an nnU-Net model folder, an assess / sweep / explain output);
    a run named twice is shown once.
    Every run is read before anything is written; figures go to ``figures/`` beside the
    report and are embedded, and figures there from an earlier report that this one did not
    draw (an assess/ or sweep/ folder since removed) are deleted. Returns the path.
    """
    from strokelrp.pipeline.sweep import unique_runs
    from strokelrp.provenance import provenance, write_sidecar

    if not runs:
        raise StrokeLRPError("report needs at least one run directory")
    run_dirs = [Path(r) for r in unique_runs(runs)]
    problems = [p for p in map(_run_problem, run_dirs) if p is not None]
    if problems:
        raise StrokeLRPError("\n".join(problems))
    out_path = report_path(out, run_dirs[0])
    tables = [read_run_tables(run) for run in run_dirs]
    for table in tables:
        table.explained = [
            write_viewer(table.name, case, out_path.parent / run_files.VIEWER)
            for case in table.explained
        ]
    fig_dir = out_path.parent / run_files.FIGURES
    earlier = _figure_files(fig_dir)
    text = report_html(tables, out_path.parent, fig_dir)
    now = _figure_files(fig_dir)
    for path, inode in earlier.items():  # not rewritten: a figure of a table no longer there
        if now.get(path) == inode:
            path.unlink(missing_ok=True)
    write_sidecar(
        out_path,
        provenance(
            "report",
            runs=[str(r.resolve()) for r in run_dirs],
            outputs={output: record for table in tables for output, record in table.provenance},
        ),
    )
    return atomic_write(out_path, lambda fh: fh.write(text))
