"""The outputs of one explained case: relevance per setting in the native grid, figure 1, summary.

:func:`write_case_explanation` is a function of arrays (the maps and logits at model scale, the
case as read) and writes into ``out``; :func:`strokelrp.pipeline.explain.explain_case` (what
``strokelrp explain`` and the demo call) loads the run and the case, computes the maps and
calls it. The files (default folder ``RUN/explanations/CASE``)::

    relevance_raw.nii.gz           4-D float32 (x, y, z, 6 modalities), native grid and affine
    relevance_pass_0-0.4.nii.gz    one file per filter setting (label pass(0,0.4)), same layout
    relevance_gradient.nii.gz      instead, for a method other than LRP: its one map
    prediction.nii.gz              3-D uint8 lesion mask (native grid)
    figure1.png                    the paper's figure 1 for this case
    explanation.json               what was computed: run, method, rules, target, settings, files,
                                   max |R_c| per setting and channel, slice, Dice, the
                                   case's stored orientation and the provenance record
                                   (data root and files, checkpoint path and epoch, rules
                                   with overrides, versions: strokelrp.provenance)

The case is computed in RAS voxel order (``Case``); the NIfTI files are written back in the
files' own voxel order and affine; the figure and its slice index use the RAS grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from strokelrp import run_files
from strokelrp.analysis.table import Setting, describe
from strokelrp.atomic import write_json
from strokelrp.core.metrics import dice_score
from strokelrp.core.orientation import CANONICAL
from strokelrp.errors import StrokeLRPError
from strokelrp.report.nifti import NIFTI_SUFFIX

PAPER_FIGURE1_FILTERS: tuple[str, ...] = ("pass:0,0.4", "clamp:0,0.2")
"""The two filtered settings of the paper's figure 1 (raw is always added first)."""


@dataclass
class CaseExplanation:
    """Paths written by :func:`explain_case` and the numbers shown in the figure."""

    case_id: str
    out: Path
    relevance: dict[str, Path]
    prediction: Path
    figure: Path
    summary: Path
    slice_index: int
    dice: float | None
    checkpoint: Path | None = None
    epoch: int | None = None
    """The epoch of the checkpoint actually used (read from its sidecar)."""
    peaks: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    companions: list[Path] = field(default_factory=list)
    """The relevance files' JSON sidecars, per-modality and normalised copies."""

    def paths(self) -> list[Path]:
        paths = [
            *self.relevance.values(),
            *self.companions,
            self.prediction,
            self.figure,
            self.summary,
        ]
        return list(dict.fromkeys(paths))  # without a figure, ``figure`` is the summary


def previous_outputs(out_dir: str | Path) -> set[Path]:
    """The files an earlier explanation wrote into ``out_dir`` (from its ``explanation.json``:
    relevance files, sidecars, companions, prediction, figure); empty when there is none."""
    import json

    out_dir = Path(out_dir)
    try:
        old = json.loads((out_dir / run_files.EXPLANATION).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(old, dict):
        return set()
    names: list[Any] = [old.get("prediction"), old.get("figure")]
    for s in old.get("settings") or []:
        if isinstance(s, dict):
            names += [s.get("file"), s.get("sidecar"), *(s.get("companions") or {}).values()]
    return {out_dir / n for n in names if isinstance(n, str) and n and Path(n).name == n}


def remove_stale(old: set[Path], written: Sequence[Path]) -> None:
    """Delete the files of an earlier explanation of the folder that this one did not rewrite,
    so the folder holds one explanation, the one ``explanation.json`` and figure 1 describe."""
    keep = {Path(p) for p in written}
    for path in sorted(old - keep):
        path.unlink(missing_ok=True)


def parse_settings(specs: Sequence[str] | None) -> list[Setting]:
    """Raw first, then one setting per spec ("pass:0,0.4"); the paper's figure 1 when none."""
    from strokelrp.lrp.filters import parse_filter

    specs = list(specs) if specs else list(PAPER_FIGURE1_FILTERS)
    settings = [describe(None)]
    for spec in specs:
        setting = describe(parse_filter(spec))
        if setting.stem not in {s.stem for s in settings}:
            settings.append(setting)
    return settings


@dataclass
class SettingFiles:
    """The relevance files of one case's settings (by setting label): the 4-D NIfTIs, their
    companions (sidecar, per-channel and normalised names), every other path written, and max
    |R| per channel."""

    written: dict[str, Path]
    companions: dict[str, dict[str, str]]
    extra: list[Path]
    peaks: dict[str, list[float]]


def write_setting_files(
    out_dir: Path,
    relevance: np.ndarray,
    case: Any,
    settings: Sequence[Setting],
    rules: str | None,
    *,
    per_modality: bool = False,
    normalised: bool = False,
) -> SettingFiles:
    """Write each setting's relevance (K, C, D, H, W) as a native-grid 4-D NIfTI with its JSON
    sidecar (and per-channel / normalised copies when asked) into ``out_dir``."""
    from strokelrp.report.nifti import (
        sidecar_path,
        write_relevance_companions,
        write_relevance_nifti,
    )

    files = SettingFiles({}, {}, [], {})
    channels = relevance.shape[1]
    for k, setting in enumerate(settings):
        path = out_dir / f"{setting.stem}{NIFTI_SUFFIX}"
        files.written[setting.label] = write_relevance_nifti(
            path, relevance[k], case, setting=setting.label, rules=rules
        )
        companions = write_relevance_companions(
            path,
            relevance[k],
            case,
            setting=setting.label,
            rules=rules,
            per_modality=per_modality,
            normalised=normalised,
        )["files"]
        files.companions[setting.label] = companions
        files.extra.append(sidecar_path(path))
        files.extra += [out_dir / n for key, n in companions.items() if key != "relevance"]
        files.peaks[setting.label] = [
            float(v) for v in np.abs(relevance[k]).reshape(channels, -1).max(1)
        ]
    return files


def setting_entries(
    settings: Sequence[Setting],
    written: Mapping[str, Path],
    companions: Mapping[str, Mapping[str, str]],
    key: str,
    values: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """explanation.json's ``settings``: per setting its label, relevance file, sidecar and
    companions, and ``key`` with the setting's entry of ``values`` (e.g. max |R| per channel)."""
    from strokelrp.report.nifti import sidecar_path

    return [
        {
            "label": s.label,
            "file": written[s.label].name,
            "sidecar": sidecar_path(written[s.label]).name,
            "companions": dict(companions[s.label]),
            key: values[s.label],
        }
        for s in settings
    ]


def write_case_explanation(
    out_dir: str | Path,
    case: Any,
    relevance: np.ndarray,
    logits: Any,
    settings: Sequence[Setting],
    *,
    fields: Mapping[str, Any],
    method: str,
    rules: str | None,
    target: str,
    provenance: Mapping[str, Any],
    slice_index: int | None = None,
    modality: str | None = None,
    per_modality: bool = False,
    normalised: bool = False,
    notes: Sequence[str] = (),
    epoch: int | None = None,
    reference: str = "zero",
) -> CaseExplanation:
    """Write the relevance NIfTIs (+ JSON sidecars), the prediction, figure 1 and the summary.

    ``case``: the :class:`strokelrp.data.layouts.Case` as read (RAS order, native grid,
    affine); ``relevance`` (K, C, D, H, W) at model scale, one map per setting of ``settings``;
    ``logits`` (num_classes, D, H, W) at model scale. ``fields``: the first keys of
    ``explanation.json`` (e.g. run, checkpoint, epoch, series); ``method`` the attribution
    method's label (``lrp:epsilon``, ``gradient_x_input``), ``rules`` its LRP preset (None for
    another method): they name the maps in the NIfTI headers, the figure and the summary;
    ``provenance`` the record of :func:`strokelrp.provenance.provenance`;
    ``notes``: lines from the computation (an empty target, ...). ``slice_index``: the axial
    slice (RAS) of the figure, default the largest lesion area. ``epoch``: named in the
    prediction's header. Returns the paths and numbers written (notes prefixed by the case).
    """
    from strokelrp.data.layouts import ground_truth_title, shown_channel
    from strokelrp.report.figure1 import default_slice, plot_figure1
    from strokelrp.report.nifti import (
        labels_from_logits,
        to_native_grid,
        write_label_nifti,
    )

    names = tuple(case.channels)
    modality = shown_channel(names, modality)
    if len(relevance) != len(settings):
        raise StrokeLRPError(f"{len(relevance)} relevance maps for {len(settings)} settings")
    case_id = case.case_id
    depth = case.image.shape[1]
    if slice_index is not None and not 0 <= slice_index < depth:
        raise StrokeLRPError(f"case {case_id}: slice {slice_index} is outside 0..{depth - 1}")
    out_dir = Path(out_dir)
    old = previous_outputs(out_dir)
    shape = case.image.shape[1:]
    named = rules if rules is not None else method
    files = write_setting_files(
        out_dir, relevance, case, settings, named, per_modality=per_modality, normalised=normalised
    )
    written, companions, extra, peaks = files.written, files.companions, files.extra, files.peaks
    native = [(s.label, to_native_grid(relevance[k], shape)) for k, s in enumerate(settings)]

    prediction = labels_from_logits(logits, case)
    notes = list(notes)
    empty_prediction = not bool(prediction.any())
    if empty_prediction:
        notes.append("the network predicts no lesion voxel in this case (empty prediction)")
    what = "strokelrp lesion prediction" + ("" if epoch is None else f" (epoch {epoch} checkpoint)")
    pred_path = write_label_nifti(
        out_dir / f"prediction{NIFTI_SUFFIX}", prediction, case, description=what
    )
    dice = None if case.label is None else dice_score(prediction, case.label)
    z = default_slice(case.label, prediction, depth) if slice_index is None else slice_index
    figure = plot_figure1(
        out_dir / run_files.FIGURE1,
        native,
        case.image,
        prediction,
        label=case.label,
        spacing=case.spacing,
        slice_index=z,
        modality=modality,
        channels=names,
        case_id=case_id,
        dice=dice,
        subtitle=f"{'rules ' + rules if rules is not None else method}, start from "
        f"{target.replace('_', ' ')}; N at model scale",
        peaks=[peaks[s.label][names.index(modality)] for s in settings],
        affine=case.affine,
        reference=reference,
        truth_name=ground_truth_title(case) or None,
    )
    summary = write_json(
        out_dir / run_files.EXPLANATION,
        {
            "case": case_id,
            **fields,
            "method": method,
            "rules": rules,
            "target": target,
            "reference": reference,
            "modalities": list(names),
            "layout": case.layout or None,
            "resampled": dict(case.resampled),
            "grid_xyz": [int(s) for s in case.native_grid],
            "spacing_mm": [float(s) for s in case.native_spacing],
            "orientation": {"stored": case.orientation, "computed_in": CANONICAL},
            "slice": z,
            "slice_grid": "RAS",
            "figure_modality": modality,
            "dice": dice,
            "empty_prediction": empty_prediction,
            "settings": setting_entries(
                settings,
                written,
                companions,
                "max_abs_relevance_model_scale",
                {k: dict(zip(names, v, strict=True)) for k, v in peaks.items()},
            ),
            "prediction": pred_path.name,
            "figure": figure.name,
            "notes": notes,
            "provenance": dict(provenance),
        },
    )
    remove_stale(old, [*written.values(), *extra, pred_path, figure, summary])
    return CaseExplanation(
        case_id=case_id,
        out=out_dir,
        relevance=written,
        prediction=pred_path,
        figure=figure,
        summary=summary,
        slice_index=z,
        dice=dice,
        peaks=peaks,
        notes=[f"case {case_id}: {note}" for note in notes],
        epoch=epoch,
        companions=extra,
    )
