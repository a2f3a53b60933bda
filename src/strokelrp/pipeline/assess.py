"""``strokelrp assess`` on a run: load the model and the cases, assess, write the tables.

Writes ``OUT/assess.csv`` (one row per case x method, :data:`strokelrp.analysis.assess.COLUMNS`
first, then :data:`~strokelrp.analysis.assess.EXTRA_COLUMNS`), ``OUT/assess_curves.csv`` (the
perturbation curves the AOPC columns are the means of, long format:
:data:`~strokelrp.analysis.assess.CURVE_COLUMNS`) and, with ``cascade``, ``OUT/cascade.csv``.
All are written atomically after every case, so an interrupted run leaves complete tables of
the cases done. The assessment of a case is :mod:`strokelrp.trust.assess` (a model and
arrays in, rows out; its pure measures :mod:`strokelrp.analysis.assess`); the text of the
tables is :mod:`strokelrp.report.assess_run`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from strokelrp.atomic import write_text
from strokelrp.errors import StrokeLRPError
from strokelrp.report.assess_run import CASCADE_COLUMNS, table_text
from strokelrp.run_files import ASSESS_CURVES, ASSESS_PAIRS, ASSESS_TABLE, CASCADE_TABLE, RunDir


def target_warnings(case_id: str, rows: Sequence[dict[str, Any]], voxels: int) -> list[str]:
    """Warnings for a case whose explained target is degenerate, so that its measures are not
    read as a method's quality: an empty target (the measures stay empty), a target covering
    more than half of the ``voxels`` of the volume (a network predicting (nearly) every voxel as
    lesion), a negative target score (the perturbation drops are relative to it). One line per
    finding and target, from the rows of :func:`strokelrp.analysis.assess.assess`."""
    out: list[str] = []
    for row in rows:
        n, score = int(row.get("target_voxels") or 0), float(row.get("target_score") or 0.0)
        if n == 0:
            line = "the target is empty (no lesion voxel predicted): its measures stay empty"
        elif n > voxels / 2:
            line = (
                f"the target covers {n} of {voxels} voxels ({100 * n / voxels:.0f} %): the "
                "network predicts (nearly) everything as lesion; the measures describe a "
                "degenerate network, not the method"
            )
        elif score < 0:
            line = (
                f"the target score is negative ({score:.3g}): the perturbation drops (AOPC) are "
                "relative to it and not comparable with other cases"
            )
        else:
            continue
        line = f"case {case_id}: {line} (method {row['method']})"
        if not any(line.rsplit(" (method ", 1)[0] in seen for seen in out):
            out.append(line)
    return out


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
    reference: str | None = None,
    removal: str = "impute",
    profile: str = "full",
    log: Callable[[str], None] | None = None,
) -> Path:
    """Assess ``methods`` (default :data:`~strokelrp.trust.assess.DEFAULT_METHODS`) on
    ``cases`` of ``data`` (default: the run's held-out cases, else every case) with the
    model of ``run``; write ``out/assess.csv``, ``out/assess_curves.csv`` (and
    ``out/cascade.csv``) and return the first's path; ``out/assess_pairs.csv`` compares the
    methods case by case (paired Wilcoxon, :func:`strokelrp.analysis.statistics.paired_table`).
    ``memory_budget`` and ``options``: as for :func:`strokelrp.trust.assess.assess`.
    ``out/assess.provenance.json`` names the data, the cases' files and fingerprints, the
    checkpoint, the methods and settings, and the versions (:mod:`strokelrp.provenance`); it
    is rewritten with the table after each case.
    ``reference``: added to every method that takes one and names none
    (:func:`strokelrp.trust.assess.with_reference`); ``removal``: the main AOPC columns'
    removal kind; ``profile``: ``quick`` replaces seeds, random orders, extras, fractions,
    the cascade orders and sMPRT by :data:`strokelrp.trust.assess.PROFILES` ``["quick"]``
    (``full``: every cascade order of :data:`~strokelrp.trust.assess.CASCADES` with
    ``cascade``, sMPRT with :data:`~strokelrp.trust.assess.SMPRT_SAMPLES` noisy inputs).
    """
    import torch

    from strokelrp.analysis.assess import COLUMNS, CURVE_COLUMNS, EXTRA_COLUMNS, FRACTIONS
    from strokelrp.analysis.statistics import PAIR_COLUMNS, paired_table
    from strokelrp.data.dataset import case_fingerprint
    from strokelrp.data.layouts import load_case
    from strokelrp.data.preprocess import prepare_case
    from strokelrp.device import resolve_device
    from strokelrp.provenance import case_record, checkpoint_record, provenance, write_sidecar
    from strokelrp.train.checkpoint import load_trained
    from strokelrp.trust.assess import (
        CASCADES,
        DEFAULT_METHODS,
        PROFILES,
        SMPRT_SAMPLES,
        assess,
        check_methods,
        with_reference,
    )

    run, out = Path(run), Path(out)
    if profile not in PROFILES:
        raise StrokeLRPError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    settings: dict[str, Any] = {
        "seeds": tuple(seeds),
        "random_seeds": random_seeds,
        "extras": extras,
        "fractions": FRACTIONS,
        "cascades": CASCADES,
        "smprt_samples": SMPRT_SAMPLES,
    } | PROFILES[profile]
    methods = [with_reference(m, reference) for m in (methods or DEFAULT_METHODS)]
    device = str(resolve_device(device))
    model, ckpt = load_trained(run, checkpoint=checkpoint, device=device)
    config = ckpt.config
    check_methods(model, methods)
    chosen = list(cases) if cases else RunDir(run).validation_ids()
    if chosen is None:
        from strokelrp.data.layouts import discover_cases

        chosen = [f.case_id for f in discover_cases(Path(data), **config.data_options)]
    if not chosen:
        raise StrokeLRPError(f"{data}: no case to assess")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    path = out / ASSESS_TABLE
    records: dict[str, Any] = {}
    for case_id in chosen:
        case = load_case(data, case_id, **config.data_options)
        records[case.case_id] = case_record(
            case.paths, data, case_fingerprint(case.paths), case.orientation
        )
        x, y = prepare_case(case, config)
        new_rows, new_curves = assess(
            model,
            torch.from_numpy(x),
            y,
            methods,
            case=case_id,
            cascade=cascade,
            memory_budget=memory_budget,
            options=options,
            removal=removal,
            channels=case.channels,
            **settings,
            progress=log,
            points=points,
        )
        for line in target_warnings(case.case_id, new_rows, int(x[0].size)):
            if log is not None:
                log(f"warning: {line}")
            else:
                warnings.warn(line, RuntimeWarning, stacklevel=2)
        rows += new_rows
        curves += new_curves
        write_text(out / ASSESS_CURVES, table_text(CURVE_COLUMNS, points))
        write_text(path, table_text((*COLUMNS, *EXTRA_COLUMNS), rows))
        write_text(out / ASSESS_PAIRS, table_text(PAIR_COLUMNS, paired_table(rows)))
        record = provenance(
            "assess",
            data_root=data,
            cases=records,
            run=run,
            checkpoints=[checkpoint_record(ckpt)],
            methods=methods,
            seeds=list(settings["seeds"]),
            random_orders=settings["random_seeds"],
            extras=settings["extras"],
            fractions=list(settings["fractions"]),
            cascades=list(settings["cascades"]) if cascade else [],
            smprt_samples=settings["smprt_samples"],
            removal=removal,
            profile=profile,
            cascade=cascade,
            options=options,
        )
        write_sidecar(path, record)
        if cascade:
            write_text(out / CASCADE_TABLE, table_text(CASCADE_COLUMNS, curves))
    return path
