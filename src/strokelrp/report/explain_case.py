"""Explain one case of a trained run: relevance per filter setting, in the native grid, + figure 1.

``explain_case`` is what ``strokelrp explain`` and the demo call: it loads the run's model and
the case, computes every requested filter setting in ONE batched relevance walk (raw first),
and writes into ``out`` (default ``RUN/explanations/CASE``)::

    relevance_raw.nii.gz           4-D float32 (x, y, z, 6 modalities), native grid and affine
    relevance_pass_0-0.4.nii.gz    one file per filter setting (label pass(0,0.4)), same layout
    prediction.nii.gz              3-D uint8 lesion mask (native grid)
    figure1.png                    the paper's figure 1 for this case
    explanation.json               what was computed: run, rules, target, settings, files,
                                   max |R_c| per setting and channel, slice, Dice, the
                                   case's stored orientation and the provenance record
                                   (data root and files, checkpoint path and epoch, rules
                                   with overrides, versions: strokelrp.provenance)

The case is computed in RAS voxel order (``Case``); the NIfTI files are written back in the
files' own voxel order and affine; the figure and its slice index use the RAS grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from strokelrp import run_files
from strokelrp.analysis.table import Setting, describe
from strokelrp.atomic import write_json
from strokelrp.config import MODALITIES
from strokelrp.data.orientation import CANONICAL
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import DEFAULT_PRESET, TARGETS
from strokelrp.report.nifti import NIFTI_SUFFIX
from strokelrp.train.metrics import dice_score

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

    def paths(self) -> list[Path]:
        paths = [*self.relevance.values(), self.prediction, self.figure, self.summary]
        return list(dict.fromkeys(paths))  # without a figure, ``figure`` is the summary


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


def checkpoint_note(ckpt: Any) -> str:
    """Which checkpoint was used: path and epoch (from the sidecar whose hash matched)."""
    from strokelrp.provenance import checkpoint_record

    planned = ckpt.config.epochs
    text = f"used checkpoint {checkpoint_record(ckpt)['path']} (epoch {ckpt.epoch} of {planned})"
    if ckpt.epoch < planned:
        text += "; the run has not finished training (or was stopped early)"
    return text


def load_case(data: str | Path, case_id: str) -> Any:
    """The one case ``case_id`` (``4`` or its folder name ``training_4``) of the ISLES 2017 tree
    ``data`` (a clear error if absent); its ``case_id`` is the plain id (``4``)."""
    from strokelrp.data.isles2017 import load_isles2017

    root = Path(data)
    if not root.is_dir():
        raise StrokeLRPError(f"data folder {root} does not exist")
    cases = load_isles2017(root, cases=[case_id])  # selects by id or folder name
    if len(cases) != 1:
        raise StrokeLRPError(f"case {case_id}: not found in {root}")
    return cases[0]


def explain_case(
    run: str | Path,
    data: str | Path,
    case_id: str,
    *,
    filters: Sequence[str] | Sequence[Setting] | None = None,
    rules: str = DEFAULT_PRESET,
    target: str = "prediction",
    checkpoint: str = "last",
    slice_index: int | None = None,
    modality: str = "rCBF",
    out: str | Path | None = None,
    device: str = "auto",
    per_modality: bool = False,
    normalised: bool = False,
    memory_budget: str | int | float | None = None,
    log: Callable[[str], None] | None = None,
) -> CaseExplanation:
    """Explain case ``case_id`` of ``data`` with the model of ``run``; write NIfTI + figure 1.

    filters: filter specs ("pass:0,0.4") or :class:`Setting` objects; raw is always computed
    first; None gives the paper's figure 1 (pass (0, 0.4), clamp (0, 0.2)). All settings are
    computed in one batched relevance walk (relevance (K, 6, D, H, W) at model scale), then
    resized back to the case's native grid; each relevance file gets a JSON sidecar naming its
    volumes, plus one 3-D file per modality (``per_modality``) and a copy normalised to
    [-1, 1] per volume (``normalised``) when asked. device: "auto" (CUDA when available), "cpu",
    "cuda" (an error when torch sees no GPU). ``case_id``: ``4`` or ``training_4``.
    memory_budget: bytes the relevance walk may use (``"4GB"``, ``"unlimited"``; None = the
    engine's default, see :mod:`strokelrp.lrp.budget`). ``log``: called with one line per step
    (loading, the relevance pass, writing), e.g. to stderr.
    """
    import torch

    from strokelrp.data.dataset import case_fingerprint
    from strokelrp.data.preprocess import prepare_case
    from strokelrp.device import resolve_device
    from strokelrp.lrp.engine import explain
    from strokelrp.provenance import case_record, checkpoint_record, provenance
    from strokelrp.report.figure1 import default_slice, plot_figure1
    from strokelrp.report.nifti import (
        labels_from_logits,
        sidecar_path,
        to_native_grid,
        write_label_nifti,
        write_relevance_companions,
        write_relevance_nifti,
    )
    from strokelrp.train.checkpoint import load_trained

    say = log if log is not None else (lambda _line: None)
    if target not in TARGETS:
        raise StrokeLRPError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if modality not in MODALITIES:
        raise StrokeLRPError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    run = Path(run)
    if not run.is_dir():
        raise StrokeLRPError(f"run folder {run} does not exist")
    if filters and all(isinstance(f, Setting) for f in filters):
        settings = [describe(None)] + [s for s in filters if s.filter is not None]
    else:
        settings = parse_settings(filters)  # type: ignore[arg-type]

    device = str(resolve_device(device))
    say(f"loading {run} (checkpoint {checkpoint}) on {device}")
    model, ckpt = load_trained(run, checkpoint=checkpoint, device=device)
    config = ckpt.config
    say(f"loading case {case_id} from {data}")
    case = load_case(data, case_id)
    case_id = case.case_id  # "training_4" -> "4"
    depth = case.image.shape[1]
    if slice_index is not None and not 0 <= slice_index < depth:
        raise StrokeLRPError(f"case {case_id}: slice {slice_index} is outside 0..{depth - 1}")
    x, y = prepare_case(case, config)
    if target == "ground_truth" and y is None:
        raise StrokeLRPError(f"case {case_id}: --target ground_truth needs an OT mask, none found")
    xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(device)
    say(
        f"case {case_id}: relevance for {len(settings)} setting(s) "
        f"(series {config.series_name}, rules {rules}, start from {target})"
    )
    with warnings.catch_warnings():  # an empty target is reported once, through .notes
        warnings.simplefilter("ignore", RuntimeWarning)
        result = explain(
            model,
            xt,
            target=target,
            label=None if y is None else torch.from_numpy(y),
            rules=rules,
            filters=[s.filter for s in settings],
            memory_budget=memory_budget,
        )
    relevance = result.relevance.detach().cpu().float().numpy()  # (K, 6, D, H, W)
    logits = result.output.detach().cpu().float()[0]  # (2, D, H, W)

    out_dir = Path(out) if out is not None else run / run_files.EXPLANATIONS / case_id
    say(f"writing {len(settings)} relevance volume(s), the prediction and figure 1 to {out_dir}")
    written: dict[str, Path] = {}
    native: list[tuple[str, np.ndarray]] = []
    peaks: dict[str, list[float]] = {}
    companions: dict[str, dict[str, str]] = {}
    shape = case.image.shape[1:]
    for k, setting in enumerate(settings):
        path = out_dir / f"{setting.stem}{NIFTI_SUFFIX}"
        written[setting.label] = write_relevance_nifti(
            path, relevance[k], case, setting=setting.label, rules=str(rules)
        )
        companions[setting.label] = write_relevance_companions(
            path,
            relevance[k],
            case,
            setting=setting.label,
            rules=str(rules),
            per_modality=per_modality,
            normalised=normalised,
        )["files"]
        native.append((setting.label, to_native_grid(relevance[k], shape)))
        peaks[setting.label] = [float(v) for v in np.abs(relevance[k]).reshape(6, -1).max(1)]

    prediction = labels_from_logits(logits, case)
    notes = list(result.notes)
    empty_prediction = not bool(prediction.any())
    if empty_prediction:
        notes.append("the network predicts no lesion voxel in this case (empty prediction)")
    pred_path = write_label_nifti(
        out_dir / f"prediction{NIFTI_SUFFIX}",
        prediction,
        case,
        description=f"strokelrp lesion prediction (epoch {ckpt.epoch} checkpoint)",
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
        case_id=case_id,
        dice=dice,
        subtitle=f"rules {rules}, start from {target.replace('_', ' ')}; N at model scale",
        peaks=[peaks[s.label][MODALITIES.index(modality)] for s in settings],
        affine=case.affine,
    )
    summary = write_json(
        out_dir / run_files.EXPLANATION,
        {
            "case": case_id,
            "run": str(run),
            "checkpoint": checkpoint,
            "epoch": ckpt.epoch,
            "series": config.series_name,
            "rules": str(rules),
            "target": target,
            "modalities": list(MODALITIES),
            "grid_xyz": [int(s) for s in case.native_grid],
            "spacing_mm": [float(s) for s in case.native_spacing],
            "orientation": {"stored": case.orientation, "computed_in": CANONICAL},
            "slice": z,
            "slice_grid": "RAS",
            "figure_modality": modality,
            "dice": dice,
            "empty_prediction": empty_prediction,
            "settings": [
                {
                    "label": s.label,
                    "file": written[s.label].name,
                    "sidecar": sidecar_path(written[s.label]).name,
                    "companions": companions[s.label],
                    "max_abs_relevance_model_scale": dict(
                        zip(MODALITIES, peaks[s.label], strict=True)
                    ),
                }
                for s in settings
            ],
            "prediction": pred_path.name,
            "figure": figure.name,
            "notes": notes,
            "provenance": provenance(
                "explain",
                data_root=data,
                cases={
                    case.case_id: case_record(
                        case.paths, data, case_fingerprint(case.paths), case.orientation
                    )
                },
                run=run,
                checkpoints=[checkpoint_record(ckpt)],
                rules=rules,
                target=target,
                settings=[s.label for s in settings],
            ),
        },
    )
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
        notes=[f"case {case_id}: {note}" for note in notes] + [checkpoint_note(ckpt)],
        checkpoint=ckpt.path,
        epoch=ckpt.epoch,
    )
