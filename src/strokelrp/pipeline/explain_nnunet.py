"""Explain an nnU-Net v2 model folder on whole volumes (``strokelrp explain --nnunet ...``).

One case (:class:`strokelrp.families.nnunet.cases.NnUNetCase`: ``--image`` files, or a case
of a data set in any layout the data layer reads, its channels mapped onto the model's by
name): nnU-Net's preprocessing, the prediction as ``nnUNetv2_predict`` computes it (float16
stitching, written as ``prediction.nii.gz`` on the native grid), the target weights W on that
prediction (or on the ground truth, brought to the network's grid as nnU-Net brings a training
segmentation), and the maps of S = sum(W * exactly stitched logits) through the sliding window
(:mod:`strokelrp.sliding_window`; LRP with every filter setting in one batched walk per patch,
or any other method), each mapped back to the native grid as nnU-Net exports its logits and
written as a 4-D NIfTI (x, y, z, channel) with the first image's affine and header, with a
JSON sidecar naming its volumes by ``dataset.json``'s ``channel_names``
(:func:`strokelrp.report.nifti.write_relevance_companions`, also its per-channel and normalised
copies when asked). Figure 1 (``figure1.png``) shows the native-grid maps over the input
images read in RAS order (:func:`strokelrp.pipeline.explain_images.read_images`) and the
case's ground truth when it has one. ``explanation.json`` records the model, folds,
checkpoint, the channels' sources, score, Dice against the ground truth, relevance sums, the
conservation, the sidecars, the figure and the provenance record
(:func:`strokelrp.provenance.provenance`). Everything is written into a hidden folder of the
output folder and moved in when complete; the files of an earlier explanation of the folder
that this one did not rewrite are then removed (:func:`strokelrp.atomic.published_folder`).
A cohort (:func:`explain_cohort`) explains every case of a data set, ``part=(i, N)`` taking
the cases ``i::N`` like ``nnUNetv2_predict -part_id i -num_parts N``; finished cases are
skipped (resumable) and ``cohort.csv`` (with ``cohort.provenance.json``) gathers every
finished case of the output folder.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from strokelrp.atomic import published_folder, write_json, write_text
from strokelrp.errors import StrokeLRPError
from strokelrp.families.nnunet.cases import (
    NnUNetCase,
    case_files,
    image_case,
    list_cases,
    load_nnunet_case,
)
from strokelrp.report.nifti import NIFTI_SUFFIX
from strokelrp.run_files import COHORT_TABLE, EXPLANATION

NNUNET_TARGETS = ("prediction", "ground_truth", "contrastive", "authors")

__all__ = [
    "NNUNET_TARGETS",
    "NnUNetExplanation",
    "case_files",
    "explain_cohort",
    "explain_nnunet",
    "explain_nnunet_case",
    "list_cases",
    "parse_part",
]


@dataclass
class NnUNetExplanation:
    """What :func:`explain_nnunet_case` wrote; ``row``: the case's line of ``cohort.csv``."""

    case_id: str
    out: Path
    relevance: dict[str, Path]
    prediction: Path
    figure: Path
    summary: Path
    row: dict[str, Any]
    companions: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def paths(self) -> list[Path]:
        return [
            *self.relevance.values(),
            *self.companions,
            self.prediction,
            self.figure,
            self.summary,
        ]

    def moved_to(self, out: Path) -> NnUNetExplanation:
        """The same files after they were moved from ``self.out`` into ``out``."""

        def moved(path: Path) -> Path:
            return out / path.name

        return NnUNetExplanation(
            self.case_id,
            out,
            {k: moved(v) for k, v in self.relevance.items()},
            moved(self.prediction),
            moved(self.figure),
            moved(self.summary),
            self.row,
            [moved(p) for p in self.companions],
            self.notes,
        )


def parse_part(spec: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError as err:
        raise StrokeLRPError(f"--part must look like i/N (e.g. 0/2), got {spec!r}") from err
    if not 0 <= i < n:
        raise StrokeLRPError(f"--part {spec}: need 0 <= i < N")
    return i, n


def _settings(
    method: str | None, rules: str, filters: Sequence[str] | None
) -> tuple[str, list[Any]]:
    from strokelrp.analysis.table import baseline_setting
    from strokelrp.attribution import parse_method
    from strokelrp.report.explain_case import parse_settings

    if method is None or method.startswith("lrp:"):
        if method is not None:
            name, _, filt = parse_method(method)
            rules = name[4:]
            filters = [*(filters or []), *([filt] if filt else [])]
        return f"lrp:{rules}", parse_settings(filters)
    if filters:
        raise StrokeLRPError("--filter applies to LRP methods only")
    return method, [baseline_setting(method)]


def explain_nnunet_case(
    model: Any,
    case: NnUNetCase | Sequence[str | Path],
    out: str | Path,
    *,
    case_id: str | None = None,
    method: str | None = None,
    rules: str = "epsilon",
    filters: Sequence[str] | None = None,
    target: str = "prediction",
    class_index: int = 1,
    mirror: bool = True,
    slice_index: int | None = None,
    modality: str | None = None,
    per_modality: bool = False,
    normalised: bool = False,
    log: Callable[[str], None] | None = None,
) -> NnUNetExplanation:
    """Explain one case (a :class:`NnUNetCase`, or its channel files in ``dataset.json`` order
    named ``case_id``) with a loaded :class:`strokelrp.families.nnunet.NnUNetModel`; write the
    native-grid maps with their sidecars, the prediction, figure 1 (``modality``: the channel
    shown, by name, default the first; ``slice_index``: axial slice z in RAS order, default
    the largest ground-truth, else predicted, area) and ``explanation.json`` into ``out``."""
    if not isinstance(case, NnUNetCase):
        files = [Path(f) for f in case]
        name = case_id or (files[0].name.split(".")[0] if files else "case")
        case = image_case(files, name, channels=model.channel_names)
    if target not in NNUNET_TARGETS:
        raise StrokeLRPError(f"with --nnunet, --target must be one of {', '.join(NNUNET_TARGETS)}")
    if target == "ground_truth" and case.label is None:
        raise StrokeLRPError(
            f"case {case.case_id}: --target ground_truth needs a ground truth: the data set has "
            "no label for this case (with --image, give --label)"
        )
    out_dir = Path(out)
    from strokelrp.report.explain_case import previous_outputs

    stale = previous_outputs(out_dir)
    with published_folder(out_dir, stale, last=EXPLANATION) as work:
        done = _explain_into(
            model,
            case,
            work,
            method=method,
            rules=rules,
            filters=filters,
            target=target,
            class_index=class_index,
            mirror=mirror,
            slice_index=slice_index,
            modality=modality,
            per_modality=per_modality,
            normalised=normalised,
            log=log,
        )
    return done.moved_to(out_dir)


def _explain_into(
    model: Any,
    case: NnUNetCase,
    out_dir: Path,
    *,
    method: str | None,
    rules: str,
    filters: Sequence[str] | None,
    target: str,
    class_index: int,
    mirror: bool,
    slice_index: int | None,
    modality: str | None,
    per_modality: bool,
    normalised: bool,
    log: Callable[[str], None] | None,
) -> NnUNetExplanation:
    """:func:`explain_nnunet_case`'s work, every file written into ``out_dir``."""
    import dataclasses

    import torch

    from strokelrp import run_files
    from strokelrp.core.metrics import dice_score
    from strokelrp.core.orientation import to_canonical, to_file_order
    from strokelrp.data.dataset import case_fingerprint
    from strokelrp.data.layouts import shown_channel
    from strokelrp.families.nnunet.predict import nnunet_window
    from strokelrp.families.nnunet.preprocess import (
        model_grid_mask,
        native_labels,
        preprocess_case,
        to_native,
        write_native,
    )
    from strokelrp.lrp.engine import target_weights
    from strokelrp.pipeline.explain_images import read_images
    from strokelrp.provenance import case_record, nnunet_provenance
    from strokelrp.report.explain_case import setting_entries
    from strokelrp.report.figure1 import default_slice, plot_figure1
    from strokelrp.report.nifti import sidecar_path, write_relevance_companions
    from strokelrp.sliding_window import window_attribute, window_explain, window_logits

    say = log if log is not None else (lambda _line: None)
    case_id = case.case_id
    name, settings = _settings(method, rules, filters)
    pre = preprocess_case(model, case.files, case_id)
    # the inputs as stored, in RAS order, for the sidecars and figure 1; channel names from
    # dataset.json (the reader's arrays are the files' (z, y, x) order, as the Case's before
    # its reorientation)
    shown_case = dataclasses.replace(
        read_images(pre.files), case_id=case_id, channels=tuple(model.channel_names)
    )
    truth = case.label
    if truth is not None and truth.shape != shown_case.image.shape[1:]:
        raise StrokeLRPError(
            f"case {case_id}: the ground truth's grid {truth.shape} is not the images' "
            f"{shown_case.image.shape[1:]}"
        )
    try:
        shown = shown_channel(shown_case.channels, modality)
    except StrokeLRPError as err:
        raise StrokeLRPError(f"case {case_id}: {err}") from None
    depth = shown_case.image.shape[1]
    if slice_index is not None and not 0 <= slice_index < depth:
        raise StrokeLRPError(f"case {case_id}: slice {slice_index} is outside 0..{depth - 1}")
    window = nnunet_window(model, mirror)
    x = torch.from_numpy(pre.data)
    say(
        f"{case_id}: {len(window.tiles(x.shape[1:]))} patch(es) x {len(window.mirrorings)} "
        f"mirroring(s) x {len(model.networks)} fold(s), {name}"
    )
    nnunet_logits = window_logits(model.networks, x, window, stitch_dtype=torch.float16)
    seg, _ = native_labels(model, nnunet_logits, pre.properties)
    nnunet_logits = nnunet_logits.float()
    label = None
    if target == "ground_truth" and truth is not None:
        native_truth = to_file_order(truth, shown_case.orientation)
        label = torch.from_numpy(model_grid_mask(model, native_truth, pre.properties, x.shape[1:]))
    weights, _ = target_weights(target, nnunet_logits[None], label, class_index)
    weights = weights[0]
    exact = window_logits(model.networks, x, window)
    score = float((weights.double() * exact.double()).sum())
    notes: list[str] = list(case.notes)
    if name.startswith("lrp:"):
        from strokelrp.lrp.presets import preset

        result = window_explain(
            model.networks, x, window, weights, preset(name[4:]), [s.filter for s in settings]
        )
        maps = result.relevance.detach().float().numpy()
        notes += result.notes
        conservation = float(result.conservation.max_deviation())
    else:
        maps = (
            window_attribute(model.networks, x, window, name, weights)
            .detach()
            .float()
            .numpy()[None]
        )
        conservation = None
    written: dict[str, Path] = {}
    sums: dict[str, dict[str, float]] = {}
    companions: dict[str, dict[str, str]] = {}
    extra: list[Path] = []
    shown_maps: list[tuple[str, np.ndarray]] = []
    for k, setting in enumerate(settings):
        native = to_native(model, maps[k], pre.properties)
        path = write_native(
            out_dir / f"{setting.stem}{NIFTI_SUFFIX}",
            native,
            pre.files[0],
            description=f"strokelrp {name} {setting.label}",
        )
        written[setting.label] = path
        ras = to_canonical(native, shown_case.orientation)
        shown_maps.append((setting.label, ras))
        companions[setting.label] = write_relevance_companions(
            path,
            ras,
            shown_case,
            setting=setting.label,
            rules=name.removeprefix("lrp:"),
            per_modality=per_modality,
            normalised=normalised,
        )["files"]
        extra.append(sidecar_path(path))
        extra += [out_dir / n for key, n in companions[setting.label].items() if key != "relevance"]
        sums[setting.label] = {
            "model_grid": float(maps[k].sum(dtype=np.float64)),
            "native_grid": float(native.sum(dtype=np.float64)),
        }
    pred_path = write_native(
        out_dir / f"prediction{NIFTI_SUFFIX}",
        seg.astype(np.uint8),
        pre.files[0],
        description="nnU-Net prediction",
    )
    lesion = int((seg == class_index).sum())
    explained = (to_canonical(seg, shown_case.orientation) == class_index).astype(np.uint8)
    dice = None if truth is None else dice_score(explained, truth)
    z = default_slice(truth, explained, depth) if slice_index is None else slice_index
    folds = ", ".join(map(str, model.folds))
    figure = plot_figure1(
        out_dir / run_files.FIGURE1,
        shown_maps,
        shown_case.image,
        explained,
        label=truth,
        truth_name=case.label_name or None,
        dice=dice,
        spacing=shown_case.spacing,
        slice_index=z,
        modality=shown,
        channels=shown_case.channels,
        case_id=case_id,
        subtitle=f"nnU-Net {model.configuration} fold(s) {folds}, {name}, start from {target}",
        affine=shown_case.affine,
    )
    sources = case.source_files()
    root = case.data if case.data is not None else Path(case.files[0]).parent
    record = nnunet_provenance(
        model,
        "explain",
        cases={
            case_id: case_record(sources, root, case_fingerprint(sources), shown_case.orientation)
        },
        data_root=root,
        rules=name[4:] if name.startswith("lrp:") else None,
        target=target,
        class_index=class_index,
        settings=[s.label for s in settings],
    )
    summary = {
        "case": case_id,
        "nnunet": {
            "folder": str(model.folder),
            "configuration": model.configuration,
            "trainer": model.trainer,
            "plans": model.plans_name,
            "folds": [str(f) for f in model.folds],
            "checkpoint": model.checkpoint,
            "checkpoint_files": [str(p) for p in model.checkpoint_files],
            "channels": model.channel_names,
        },
        "data": None if case.data is None else {"root": str(case.data), "layout": case.layout},
        "images": [str(s.file) for s in case.sources] or [str(f) for f in case.files],
        "inputs": [s.as_dict() for s in case.sources],
        "ground_truth": None
        if case.label_file is None
        else {"file": str(case.label_file), "name": case.label_name},
        "method": name,
        "target": target,
        "class_index": class_index,
        "window": {
            "patch_size": list(window.patch_size),
            "step": window.step,
            "mirror_axes": list(window.mirror_axes),
            "patches": len(window.tiles(x.shape[1:])),
        },
        "score": score,
        "predicted_voxels": lesion,
        "dice": dice,
        "conservation_max_deviation": conservation,
        "settings": setting_entries(settings, written, companions, "relevance_sum", sums),
        "prediction": pred_path.name,
        "figure": figure.name,
        "figure_modality": shown,
        "slice": z,
        "slice_grid": "RAS",
        "notes": notes,
        "provenance": record,
    }
    path = write_json(out_dir / EXPLANATION, summary)
    return NnUNetExplanation(
        case_id, out_dir, written, pred_path, figure, path, _row_of(summary), extra, notes
    )


ROW_FIELDS = ("case", "method", "target", "score", "predicted_voxels", "dice")
"""The columns of ``cohort.csv`` before the relevance sums (one per setting)."""


def _row_of(summary: dict[str, Any]) -> dict[str, Any]:
    row = {k: summary.get(k) for k in ROW_FIELDS}
    for s in summary["settings"]:
        row[f"sum_{s['label']}"] = s["relevance_sum"]["model_grid"]
    return row


def write_cohort_table(out: Path, model: Any = None, data: Path | None = None) -> Path:
    """``cohort.csv``: one row per finished case folder of ``out`` (sorted by case id), with
    ``cohort.provenance.json`` (the model's record and every row's case) when ``model`` is
    given."""
    from strokelrp.provenance import nnunet_provenance, write_sidecar

    rows, cases = [], {}
    for summary_path in sorted(out.glob(f"*/{EXPLANATION}")):
        summary = json.loads(summary_path.read_text())
        rows.append(_row_of(summary))
        cases.update(((summary.get("provenance") or {}).get("data") or {}).get("cases") or {})
    if not rows:
        raise StrokeLRPError(f"{out}: no explained case to tabulate")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {k: (f"{v:.9g}" if isinstance(v, float) else ("" if v is None else v))
             for k, v in r.items()}
        )  # fmt: skip
    table = write_text(out / COHORT_TABLE, buf.getvalue())
    if model is not None:
        write_sidecar(table, nnunet_provenance(model, "explain", cases=cases, data_root=data))
    return table


def _explain_data_case(
    model: Any, data: Path, case_id: str, out: Path, log: Any, **options: Any
) -> NnUNetExplanation:
    """One case of the data set ``data``: its channels (copies staged in a hidden folder of
    ``out`` where nnU-Net cannot read the data's own files) explained into ``out``."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".strokelrp-inputs-", dir=out) as stage:
        case = load_nnunet_case(
            data, case_id, model.dataset, class_index=options.get("class_index", 1), stage=stage
        )
        return explain_nnunet_case(model, case, out, log=log, **options)


def explain_cohort(
    model: Any,
    data: str | Path,
    out: str | Path,
    *,
    part: tuple[int, int] = (0, 1),
    cases: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> Path:
    """Explain the cases ``part[0]::part[1]`` of a data set (any layout) into ``out/CASE``;
    a case whose ``explanation.json`` exists is skipped. Returns ``out/cohort.csv``."""
    say = log if log is not None else (lambda _line: None)
    data, out = Path(data), Path(out)
    ids = list(cases) if cases else list_cases(data, model.dataset)
    mine = ids[part[0] :: part[1]]
    say(f"part {part[0]}/{part[1]}: {len(mine)} of {len(ids)} case(s)")
    for case_id in mine:
        if (out / case_id / EXPLANATION).is_file():
            say(f"{case_id}: done before, skipped")
            continue
        _explain_data_case(model, data, case_id, out / case_id, log, **options)
    return write_cohort_table(out, model, data)


def explain_nnunet(
    model_dir: str | Path,
    *,
    data: str | Path | None = None,
    case_id: str | None = None,
    images: Sequence[str | Path] = (),
    label: str | Path | None = None,
    out: str | Path | None = None,
    folds: str | Sequence[int | str] = "all",
    checkpoint: str = "final",
    part: str = "0/1",
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> list[Path]:
    """What ``strokelrp explain --nnunet`` does: one case from ``images`` (needs ``out``;
    ``label``: its ground truth) or from ``data`` (any layout) + ``case_id`` (default ``out``:
    ``MODEL_DIR/explanations/CASE``), or every case of ``data`` (part ``i/N``) into ``out``.
    Returns the paths written."""
    from strokelrp.families import family_loader
    from strokelrp.families.nnunet.model_folder import parse_folds

    folds = parse_folds(folds)
    say = log if log is not None else (lambda _line: None)
    model = family_loader("nnunet")(model_dir, folds=folds, checkpoint=checkpoint)
    say(
        f"{model.folder.name}: folds {', '.join(map(str, model.folds))}, channels "
        f"{', '.join(model.channel_names)}"
    )
    if images:
        if data is not None or case_id is not None:
            raise StrokeLRPError("give --image files or DATA --case ID, not both")
        if out is None:
            raise StrokeLRPError("--image needs --out")
        stem = Path(images[0]).name.split(".")[0]
        name = stem[:-5] if stem[-5:-4] == "_" and stem[-4:].isdigit() else stem
        case = image_case(images, name, label, model.channel_names)
        return explain_nnunet_case(model, case, out, log=log, **options).paths()
    if label is not None:
        raise StrokeLRPError("--label goes with --image; DATA's own labels are read by its layout")
    if data is None:
        raise StrokeLRPError("--nnunet needs --image files or DATA (a data set in any layout)")
    data = Path(data)
    if case_id is not None:
        target = Path(out) if out is not None else model.folder / "explanations" / case_id
        return _explain_data_case(model, data, case_id, target, log, **options).paths()
    if out is None:
        raise StrokeLRPError("explaining every case of DATA needs --out DIR")
    return [explain_cohort(model, data, out, part=parse_part(part), log=log, **options)]
