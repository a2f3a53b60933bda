"""``strokelrp assess --nnunet``: the trust assessment of an nnU-Net v2 model folder on whole
volumes.

Each case goes through nnU-Net's preprocessing (:mod:`strokelrp.families.nnunet.preprocess`;
its label file too, when the raw folder has one beside the images: ``labelsTr`` for
``imagesTr``), then :func:`strokelrp.trust.assess.assess` runs on a
:class:`strokelrp.trust.windowed.WindowedModel` of the chosen folds and nnU-Net's window: every
score (the case's, every perturbed input's, the ablation's, the re-initialised folds') is the
exactly stitched whole-volume logits, every map comes through the window. The explained scalar
is ``explain --nnunet``'s: W on the prediction as ``nnUNetv2_predict`` makes it (float16
stitching), S = sum(W * exactly stitched logits).

A cohort is resumable and shardable like ``explain --nnunet``: ``part=(i, N)`` assesses the
cases ``i::N``; each finished case is kept as ``OUT/cases/CASE.json`` (its rows and curve points,
exact floats) and skipped when run again; after every case the tables ``assess.csv``,
``assess_curves.csv`` and ``assess_pairs.csv`` are rebuilt from every finished case of ``OUT``
(sorted by case id), so two shards into one folder give the table one process gives. The
provenance sidecar ``assess.provenance.json`` names the model folder, folds, checkpoint files,
cases and settings.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from strokelrp.atomic import write_json, write_text
from strokelrp.errors import StrokeLRPError
from strokelrp.run_files import ASSESS_CURVES, ASSESS_PAIRS, ASSESS_TABLE

CASES_DIR = "cases"
"""``OUT/cases/CASE.json``: one finished case of an nnU-Net assessment."""


def case_inputs(
    model: Any, data: Path, case_id: str, stage: Path
) -> tuple[list[Path], Path | None, dict[str, Path]]:
    """A case of the data set ``data`` (any layout, :func:`strokelrp.families.nnunet.cases.
    load_nnunet_case`; copies staged under ``stage`` where nnU-Net cannot read the data's own
    files): (channel files in the model's order, the label file nnU-Net preprocesses with them
    or None, the data's own files for provenance). The label is used where it lies on the
    images' grid as nnU-Net reads it (an nnU-Net raw folder's ``labelsTr`` / ``labelsTs``);
    elsewhere the localisation measures stay empty."""
    from strokelrp.families.nnunet.cases import load_nnunet_case

    case = load_nnunet_case(data, case_id, model.dataset, stage=stage)
    label = case.label_file if case.layout == "nnunet" else None
    return list(case.files), label, case.source_files()


def assess_nnunet_case(
    model: Any,
    files: Sequence[str | Path],
    case_id: str,
    methods: Sequence[str],
    *,
    mirror: bool = True,
    label: str | Path | None = None,
    points: list[dict[str, Any]] | None = None,
    log: Callable[[str], None] | None = None,
    **settings: Any,
) -> list[dict[str, Any]]:
    """The rows of :func:`strokelrp.trust.assess.assess` for one case of a loaded
    :class:`strokelrp.families.nnunet.NnUNetModel` (its channel files in ``dataset.json``
    order, ``label`` its label file or None); ``settings`` go to ``assess``."""
    from strokelrp.families.nnunet.predict import windowed_case
    from strokelrp.lrp.engine import LESION, target_weights
    from strokelrp.trust.assess import assess
    from strokelrp.trust.windowed import WindowedModel

    wc = windowed_case(model, files, case_id, label=label, mirror=mirror, log=log)
    case, window, x = wc.case, wc.window, wc.x
    weights = target_weights("prediction", wc.predicted[None], None, LESION)[0]
    y = None if case.label is None else (case.label == LESION).astype("uint8")
    rows, _ = assess(
        WindowedModel(model.networks, window),
        x,
        y,
        methods,
        case=case_id,
        weights=weights,
        channels=model.channel_names,
        points=points,
        progress=log,
        **settings,
    )
    return rows


def _finished(out: Path) -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / CASES_DIR).glob("*.json"))
    ]


def write_tables(out: Path, record: dict[str, Any]) -> Path:
    """``assess.csv``, ``assess_curves.csv``, ``assess_pairs.csv`` (and the provenance
    sidecar, ``record`` with every finished case's files) from every finished case of
    ``out``, in case-id order. Returns ``assess.csv``'s path."""
    from strokelrp.analysis.assess import COLUMNS, CURVE_COLUMNS, EXTRA_COLUMNS
    from strokelrp.analysis.statistics import PAIR_COLUMNS, paired_table
    from strokelrp.provenance import write_sidecar
    from strokelrp.report.assess_run import table_text

    done = _finished(out)
    rows = [r for case in done for r in case["rows"]]
    points = [p for case in done for p in case["points"]]
    path = out / ASSESS_TABLE
    write_text(out / ASSESS_CURVES, table_text(CURVE_COLUMNS, points))
    write_text(path, table_text((*COLUMNS, *EXTRA_COLUMNS), rows))
    write_text(out / ASSESS_PAIRS, table_text(PAIR_COLUMNS, paired_table(rows)))
    record = dict(record)
    record["data"] = dict(record.get("data") or {}) | {
        "cases": {case["case"]: case["record"] for case in done}
    }
    write_sidecar(path, record)
    return path


def assess_nnunet(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    cases: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    folds: str | Sequence[int | str] = "all",
    checkpoint: str = "final",
    mirror: bool = True,
    part: str = "0/1",
    seeds: Sequence[int] = (1, 2, 3),
    random_seeds: int = 5,
    extras: bool = True,
    memory_budget: str | int | float | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    removal: str = "impute",
    profile: str = "full",
    log: Callable[[str], None] | None = None,
) -> Path:
    """What ``strokelrp assess --nnunet MODEL_DIR DATA --out OUT`` does: assess ``methods``
    (default :data:`strokelrp.trust.assess.DEFAULT_METHODS`) on ``cases`` of the nnU-Net raw
    folder ``data`` (default: every case, ``part`` ``i/N`` taking ``i::N``) with the ``folds``
    of ``model_dir`` (nnU-Net's window, mirroring unless ``mirror`` is False); write the tables
    into ``out`` (module docstring) and return ``assess.csv``'s path. ``profile``, ``seeds``,
    ``random_seeds``, ``extras``, ``removal``, ``options``, ``memory_budget``: as for
    :func:`strokelrp.pipeline.assess.assess_run`."""
    from strokelrp.analysis.assess import FRACTIONS
    from strokelrp.data.dataset import case_fingerprint
    from strokelrp.families import family_loader
    from strokelrp.families.nnunet.model_folder import parse_folds
    from strokelrp.pipeline.explain_nnunet import list_cases, parse_part
    from strokelrp.provenance import case_record, nnunet_provenance
    from strokelrp.trust.assess import DEFAULT_METHODS, profile_settings

    say = log if log is not None else (lambda _line: None)
    settings: dict[str, Any] = profile_settings(
        profile,
        {
            "seeds": tuple(seeds),
            "random_seeds": random_seeds,
            "extras": extras,
            "fractions": FRACTIONS,
            "options": options,
        },
    )
    folds = parse_folds(folds)
    i, n = parse_part(part)
    chosen_methods = list(methods or DEFAULT_METHODS)
    model = family_loader("nnunet")(model_dir, folds=folds, checkpoint=checkpoint)
    data, out = Path(data), Path(out)
    ids = list(cases) if cases else list_cases(data, model.dataset)
    mine = ids[i::n]
    say(f"part {i}/{n}: {len(mine)} of {len(ids)} case(s)")
    record = nnunet_provenance(
        model,
        "assess",
        cases={},
        data_root=data,
        mirroring=mirror,
        methods=chosen_methods,
        seeds=list(settings["seeds"]),
        random_orders=settings["random_seeds"],
        extras=settings["extras"],
        fractions=list(settings["fractions"]),
        removal=removal,
        profile=profile,
        options=settings["options"],
    )
    for case_id in mine:
        done = out / CASES_DIR / f"{case_id}.json"
        if done.is_file():
            say(f"{case_id}: done before, skipped")
            continue
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".strokelrp-inputs-", dir=out) as stage:
            files, label, paths = case_inputs(model, data, case_id, Path(stage))
            points: list[dict[str, Any]] = []
            rows = assess_nnunet_case(
                model,
                files,
                case_id,
                chosen_methods,
                mirror=mirror,
                label=label,
                points=points,
                log=log,
                memory_budget=memory_budget,
                removal=removal,
                **settings,
            )
        case = case_record(paths, data, case_fingerprint(paths))
        points = [{"case": case_id, **p} for p in points]
        write_json(done, {"case": case_id, "rows": rows, "points": points, "record": case})
        write_tables(out, record)
    if not (out / CASES_DIR).is_dir():
        raise StrokeLRPError(f"{out}: no case assessed (part {i}/{n} holds none)")
    return write_tables(out, record)
