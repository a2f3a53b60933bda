"""``strokelrp sweep --nnunet``: the filter grid over the cases of an nnU-Net raw folder, on
whole volumes through nnU-Net's sliding window.

Per case: nnU-Net's preprocessing (and the label file beside the images, when there is one),
the target W on the prediction as ``nnUNetv2_predict`` makes it (float16 stitching, as
``explain --nnunet``), one :func:`strokelrp.sliding_window.window_explain` call with every
setting of the grid batched in each patch walk, one map per ``methods`` baseline
(:func:`strokelrp.sliding_window.window_attribute`), the modality ablation scored through the
window (:class:`strokelrp.trust.windowed.WindowedModel`) and the case's Dice against its label;
:func:`strokelrp.analysis.sweep.case_rows` turns them into the run sweep's rows (same columns:
inclusivities, shares, ablation drops). Measured on the network's grid.

Resumable and shardable as the nnU-Net assessment: ``part=(i, N)`` sweeps the cases ``i::N``;
each finished case is ``OUT/cases/CASE.json`` (its rows) and is skipped when run again;
``OUT/sweep.csv`` is rebuilt after every case from every finished case (the sweep table's
order), with its provenance sidecar.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from strokelrp.atomic import write_json
from strokelrp.errors import StrokeLRPError

SWEEP_FILE = "sweep.csv"
"""The table of an nnU-Net sweep folder (a run keeps it as ``sweep/sweep.csv``)."""
CASES_DIR = "cases"
SWEEP_TARGETS = ("prediction", "contrastive", "authors")


def sweep_nnunet_case(
    model: Any,
    files: Sequence[str | Path],
    case_id: str,
    settings: Sequence[Any],
    baselines: dict[str, Any],
    *,
    rules: str,
    target: str = "prediction",
    mirror: bool = True,
    label: str | Path | None = None,
    memory_budget: str | int | float | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """The sweep rows of one case of a loaded :class:`strokelrp.families.nnunet.NnUNetModel`
    (``settings``: the LRP grid's :class:`strokelrp.analysis.table.Setting`; ``baselines``:
    method spec -> its setting)."""

    from strokelrp.analysis.sweep import case_rows
    from strokelrp.core.metrics import dice_score
    from strokelrp.families.nnunet.predict import windowed_case
    from strokelrp.lrp.engine import LESION, target_weights
    from strokelrp.lrp.presets import preset
    from strokelrp.sliding_window import window_attribute, window_explain
    from strokelrp.trust.ablation import modality_ablation
    from strokelrp.trust.windowed import WindowedModel

    wc = windowed_case(
        model,
        files,
        case_id,
        label=label,
        mirror=mirror,
        log=log,
        detail=f", {len(settings)} setting(s)",
    )
    case, window, x, predicted = wc.case, wc.window, wc.x, wc.predicted
    weights = target_weights(target, predicted[None], None, LESION)[0][0]
    y = None if case.label is None else (case.label == LESION).astype("uint8")
    if y is not None and not y.any():
        y = None
    maps = [
        (
            window_explain(
                model.networks,
                x,
                window,
                weights,
                preset(rules),
                [s.filter for s in settings],
                memory_budget=memory_budget,
            ).relevance,
            list(settings),
            rules,
        )
    ]
    for spec, setting in baselines.items():
        one = window_attribute(model.networks, x, window, spec, weights)
        maps.append((one[None], [setting], ""))
    ablation = modality_ablation(WindowedModel(model.networks, window), x, y)
    pred = (predicted.argmax(0) == LESION).numpy()
    meta = {
        "run": Path(model.folder).name,
        "series": model.configuration,
        "network": "folds " + ",".join(map(str, model.folds)),
        "case": case_id,
        "target": target,
        "case_dice": math.nan if y is None else dice_score(pred, y),
    }
    rows: list[dict[str, Any]] = []
    for relevance, chosen, named in maps:
        rows += case_rows(
            relevance.detach(),
            case.data,
            y,
            chosen,
            meta | {"rules": named},
            None,
            ablation.drop,
            channels=model.channel_names,
        )
    return rows


def write_sweep_table(out: Path, channels: Sequence[str], record: dict[str, Any]) -> Path:
    """``OUT/sweep.csv`` (and its provenance sidecar) from every finished case of ``out``."""
    from strokelrp.analysis.table import sort_rows, write_table
    from strokelrp.provenance import write_sidecar

    done = [json.loads(p.read_text()) for p in sorted((out / CASES_DIR).glob("*.json"))]
    rows = sort_rows([r for case in done for r in case["rows"]], channels)
    record = dict(record)
    record["data"] = dict(record.get("data") or {}) | {
        "cases": {case["case"]: case["record"] for case in done}
    }
    path = out / SWEEP_FILE
    write_sidecar(path, record)
    return write_table(path, rows)


def sweep_nnunet(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    *,
    grid: str | Path | None = "paper",
    cases: Sequence[str] | None = None,
    rules: str = "epsilon",
    target: str = "prediction",
    methods: Sequence[str] = (),
    folds: str | Sequence[int | str] = "all",
    checkpoint: str = "final",
    mirror: bool = True,
    part: str = "0/1",
    memory_budget: str | int | float | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """What ``strokelrp sweep --nnunet MODEL_DIR DATA`` does: sweep ``grid`` (and one map of
    each of ``methods``) over ``cases`` of the nnU-Net raw folder ``data`` (default every case,
    ``part`` ``i/N`` taking ``i::N``) into ``out`` (default ``MODEL_DIR/sweep``); returns
    ``OUT/sweep.csv``."""
    from strokelrp.data.dataset import case_fingerprint
    from strokelrp.families import family_loader
    from strokelrp.families.nnunet.model_folder import parse_folds
    from strokelrp.pipeline.assess_nnunet import case_inputs
    from strokelrp.pipeline.explain_nnunet import list_cases, parse_part
    from strokelrp.pipeline.sweep import baseline_settings, read_grid
    from strokelrp.provenance import case_record, nnunet_provenance

    say = log if log is not None else (lambda _line: None)
    if target not in SWEEP_TARGETS:
        raise StrokeLRPError(f"with --nnunet, --target must be one of {', '.join(SWEEP_TARGETS)}")
    settings = read_grid(grid)
    baselines = baseline_settings(methods)
    folds = parse_folds(folds)
    i, n = parse_part(part)
    model = family_loader("nnunet")(model_dir, folds=folds, checkpoint=checkpoint)
    data = Path(data)
    out = Path(out) if out is not None else Path(model.folder) / "sweep"
    ids = list(cases) if cases else list_cases(data, model.dataset)
    mine = ids[i::n]
    say(f"part {i}/{n}: {len(mine)} of {len(ids)} case(s)")
    record = nnunet_provenance(
        model,
        "sweep",
        cases={},
        data_root=data,
        mirroring=mirror,
        rules=rules,
        target=target,
        settings=[s.label for s in [*settings, *baselines.values()]],
    )
    for case_id in mine:
        done = out / CASES_DIR / f"{case_id}.json"
        if done.is_file():
            previous = json.loads(done.read_text())
            if previous.get("settings") != [s.label for s in settings] or previous.get(
                "methods"
            ) != list(baselines):
                raise StrokeLRPError(
                    f"{done}: swept with other settings or methods; sweep into another --out"
                )
            say(f"{case_id}: done before, skipped")
            continue
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".strokelrp-inputs-", dir=out) as stage:
            files, label, paths = case_inputs(model, data, case_id, Path(stage))
            rows = sweep_nnunet_case(
                model,
                files,
                case_id,
                settings,
                baselines,
                rules=rules,
                target=target,
                mirror=mirror,
                label=label,
                memory_budget=memory_budget,
                log=log,
            )
        write_json(
            done,
            {
                "case": case_id,
                "settings": [s.label for s in settings],
                "methods": list(baselines),
                "rows": rows,
                "record": case_record(paths, data, case_fingerprint(paths)),
            },
        )
        write_sweep_table(out, model.channel_names, record)
    if not (out / CASES_DIR).is_dir():
        raise StrokeLRPError(f"{out}: no case swept (part {i}/{n} holds none)")
    return write_sweep_table(out, model.channel_names, record)
