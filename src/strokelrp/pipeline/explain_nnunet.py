"""Explain an nnU-Net v2 model folder on whole volumes (``strokelrp explain --nnunet ...``).

One case: nnU-Net's preprocessing, the prediction as ``nnUNetv2_predict`` computes it (float16
stitching, written as ``prediction.nii.gz`` on the native grid), the target weights W on that
prediction, and the maps of S = sum(W * exactly stitched logits) through the sliding window
(:mod:`strokelrp.sliding_window`; LRP with every filter setting in one batched walk per patch,
or any other method), each mapped back to the native grid as nnU-Net exports its logits and
written as a 4-D NIfTI (x, y, z, channel) with the first image's affine and header, with a
JSON sidecar naming its volumes by ``dataset.json``'s ``channel_names``
(:func:`strokelrp.report.nifti.write_relevance_companions`, also its per-channel and normalised
copies when asked). Figure 1 (``figure1.png``) shows the native-grid maps over the input
images read in RAS order (:func:`strokelrp.pipeline.explain_images.read_images`).
``explanation.json`` records the model, folds, checkpoint, files, score, relevance sums, the
conservation, the sidecars and the figure. A cohort (:func:`explain_cohort`) explains every
case of an nnU-Net raw folder, ``part=(i, N)`` taking the cases ``i::N`` like
``nnUNetv2_predict -part_id i -num_parts N``; finished cases are skipped (resumable) and
``cohort.csv`` gathers every finished case of the output folder.
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

from strokelrp.atomic import write_json, write_text
from strokelrp.errors import StrokeLRPError
from strokelrp.report.nifti import NIFTI_SUFFIX
from strokelrp.run_files import COHORT_TABLE, EXPLANATION

NNUNET_TARGETS = ("prediction", "contrastive", "authors")


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


def case_files(data: Path, case_id: str, dataset: dict[str, Any]) -> list[Path]:
    """A case's channel files in an nnU-Net raw folder (``imagesTr`` or ``imagesTs``):
    ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``, ... in ``dataset.json``'s channel order."""
    ending = str(dataset.get("file_ending", NIFTI_SUFFIX))
    channels = len(dataset.get("channel_names") or dataset.get("modality") or {})
    for sub in ("imagesTs", "imagesTr", "."):
        files = [data / sub / f"{case_id}_{c:04d}{ending}" for c in range(channels)]
        if files and all(f.is_file() for f in files):
            return files
    raise StrokeLRPError(
        f"case {case_id}: no {case_id}_0000{ending} ... _{channels - 1:04d}{ending} under "
        f"{data}/imagesTs or {data}/imagesTr"
    )


def list_cases(data: Path, dataset: dict[str, Any]) -> list[str]:
    """Every case id with a first channel file under ``imagesTs`` (else ``imagesTr``), sorted."""
    ending = str(dataset.get("file_ending", NIFTI_SUFFIX))
    for sub in ("imagesTs", "imagesTr", "."):
        ids = sorted(p.name[: -len(f"_0000{ending}")] for p in (data / sub).glob(f"*_0000{ending}"))
        if ids:
            return ids
    raise StrokeLRPError(f"{data}: no nnU-Net raw images (*_0000{ending} in imagesTs or imagesTr)")


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
    files: Sequence[str | Path],
    case_id: str,
    out: str | Path,
    *,
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
    """Explain one case (its channel files in ``dataset.json`` order) with a loaded
    :class:`strokelrp.families.nnunet.NnUNetModel`; write the native-grid maps with their
    sidecars, the prediction, figure 1 (``modality``: the channel shown, by name, default the
    first; ``slice_index``: axial slice z in RAS order, default the largest predicted area) and
    ``explanation.json`` into ``out``."""
    import dataclasses

    import torch

    from strokelrp import run_files
    from strokelrp.core.orientation import to_canonical
    from strokelrp.data.layouts import shown_channel
    from strokelrp.families.nnunet.predict import nnunet_window
    from strokelrp.families.nnunet.preprocess import (
        native_labels,
        preprocess_case,
        to_native,
        write_native,
    )
    from strokelrp.lrp.engine import target_weights
    from strokelrp.pipeline.explain_images import read_images
    from strokelrp.report.explain_case import setting_entries
    from strokelrp.report.figure1 import default_slice, plot_figure1
    from strokelrp.report.nifti import sidecar_path, write_relevance_companions
    from strokelrp.sliding_window import window_attribute, window_explain, window_logits

    say = log if log is not None else (lambda _line: None)
    if target not in NNUNET_TARGETS:
        raise StrokeLRPError(f"with --nnunet, --target must be one of {', '.join(NNUNET_TARGETS)}")
    name, settings = _settings(method, rules, filters)
    out_dir = Path(out)
    case = preprocess_case(model, files, case_id)
    # the inputs as stored, in RAS order, for the sidecars and figure 1; channel names from
    # dataset.json (the reader's arrays are the files' (z, y, x) order, as the Case's before
    # its reorientation)
    shown_case = dataclasses.replace(
        read_images(case.files), case_id=case_id, channels=tuple(model.channel_names)
    )
    try:
        shown = shown_channel(shown_case.channels, modality)
    except StrokeLRPError as err:
        raise StrokeLRPError(f"case {case_id}: {err}") from None
    depth = shown_case.image.shape[1]
    if slice_index is not None and not 0 <= slice_index < depth:
        raise StrokeLRPError(f"case {case_id}: slice {slice_index} is outside 0..{depth - 1}")
    window = nnunet_window(model, mirror)
    x = torch.from_numpy(case.data)
    say(
        f"{case_id}: {len(window.tiles(x.shape[1:]))} patch(es) x {len(window.mirrorings)} "
        f"mirroring(s) x {len(model.networks)} fold(s), {name}"
    )
    nnunet_logits = window_logits(model.networks, x, window, stitch_dtype=torch.float16)
    seg, _ = native_labels(model, nnunet_logits, case.properties)
    nnunet_logits = nnunet_logits.float()
    weights, _ = target_weights(target, nnunet_logits[None], None, class_index)
    weights = weights[0]
    exact = window_logits(model.networks, x, window)
    score = float((weights.double() * exact.double()).sum())
    notes: list[str] = []
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
        native = to_native(model, maps[k], case.properties)
        path = write_native(
            out_dir / f"{setting.stem}{NIFTI_SUFFIX}",
            native,
            case.files[0],
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
        case.files[0],
        description="nnU-Net prediction",
    )
    lesion = int((seg == class_index).sum())
    explained = (to_canonical(seg, shown_case.orientation) == class_index).astype(np.uint8)
    z = default_slice(None, explained, depth) if slice_index is None else slice_index
    folds = ", ".join(map(str, model.folds))
    figure = plot_figure1(
        out_dir / run_files.FIGURE1,
        shown_maps,
        shown_case.image,
        explained,
        spacing=shown_case.spacing,
        slice_index=z,
        modality=shown,
        channels=shown_case.channels,
        case_id=case_id,
        subtitle=f"nnU-Net {model.configuration} fold(s) {folds}, {name}, start from {target}",
        affine=shown_case.affine,
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
        "images": [str(f) for f in case.files],
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
        "conservation_max_deviation": conservation,
        "settings": setting_entries(settings, written, companions, "relevance_sum", sums),
        "prediction": pred_path.name,
        "figure": figure.name,
        "figure_modality": shown,
        "slice": z,
        "slice_grid": "RAS",
        "notes": notes,
    }
    path = write_json(out_dir / EXPLANATION, summary)
    row = {
        "case": case_id,
        "method": name,
        "target": target,
        "score": score,
        "predicted_voxels": lesion,
    }
    for s in settings:
        row[f"sum_{s.label}"] = sums[s.label]["model_grid"]
    return NnUNetExplanation(case_id, out_dir, written, pred_path, figure, path, row, extra, notes)


def _row_of(summary: dict[str, Any]) -> dict[str, Any]:
    row = {k: summary[k] for k in ("case", "method", "target", "score", "predicted_voxels")}
    for s in summary["settings"]:
        row[f"sum_{s['label']}"] = s["relevance_sum"]["model_grid"]
    return row


def write_cohort_table(out: Path) -> Path:
    """``cohort.csv``: one row per finished case folder of ``out`` (sorted by case id)."""
    rows = []
    for summary_path in sorted(out.glob(f"*/{EXPLANATION}")):
        rows.append(_row_of(json.loads(summary_path.read_text())))
    if not rows:
        raise StrokeLRPError(f"{out}: no explained case to tabulate")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in r.items()})
    return write_text(out / COHORT_TABLE, buf.getvalue())


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
    """Explain the cases ``part[0]::part[1]`` of an nnU-Net raw folder into ``out/CASE``;
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
        explain_nnunet_case(
            model,
            case_files(data, case_id, model.dataset),
            case_id,
            out / case_id,
            log=log,
            **options,
        )
    return write_cohort_table(out)


def explain_nnunet(
    model_dir: str | Path,
    *,
    data: str | Path | None = None,
    case_id: str | None = None,
    images: Sequence[str | Path] = (),
    out: str | Path | None = None,
    folds: str | Sequence[int | str] = "all",
    checkpoint: str = "final",
    part: str = "0/1",
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> list[Path]:
    """What ``strokelrp explain --nnunet`` does: one case from ``images`` (needs ``out``) or
    from ``data`` + ``case_id`` (default ``out``: ``MODEL_DIR/explanations/CASE``), or every
    case of ``data`` (part ``i/N``) into ``out``. Returns the paths written."""
    from strokelrp.families import family_loader

    if isinstance(folds, str):
        folds = "all" if folds == "all" else [f.strip() for f in folds.split(",") if f.strip()]
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
        case = stem[:-5] if stem[-5:-4] == "_" and stem[-4:].isdigit() else stem
        return explain_nnunet_case(model, images, case, out, log=log, **options).paths()
    if data is None:
        raise StrokeLRPError("--nnunet needs --image files or DATA (an nnU-Net raw folder)")
    data = Path(data)
    if case_id is not None:
        target = Path(out) if out is not None else model.folder / "explanations" / case_id
        files = case_files(data, case_id, model.dataset)
        return explain_nnunet_case(model, files, case_id, target, log=log, **options).paths()
    if out is None:
        raise StrokeLRPError("explaining every case of DATA needs --out DIR")
    return [explain_cohort(model, data, out, part=parse_part(part), log=log, **options)]
