"""Explain a user's own network on a user's own images (``strokelrp explain --model ...``).

The network is built by a factory the user names (``PKG.MODULE:FACTORY``, called with the
JSON keyword arguments of ``--model-args``), its weights are read without executing code
(``.safetensors``, or a state dict through ``torch.load(weights_only=True)``), and the images
are one NIfTI per input channel on one grid, passed to the network with their values as stored
(float32, no normalisation: preprocess them as the network was trained). Like run data, the
images are read with the project's checked NIfTI reader and held in the canonical RAS voxel
order (:mod:`strokelrp.core.orientation`: pure flips and permutations), so the network sees
the same array whichever way the files store the head; the outputs go back to the images' own
voxel order, grid and affine. The targets are those of the run-based ``explain``
(``prediction`` and ``contrastive`` for ``--class-index``, ``ground_truth`` on a ``--label``
mask of the images' grid, ``authors``). The outputs are those of
:func:`strokelrp.pipeline.explain.explain_case`: one 4-D relevance NIfTI per filter setting,
``prediction.nii.gz``, ``explanation.json`` and ``figure1.png`` (radiological display; the
channels are named by the image files).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from strokelrp import run_files
from strokelrp.atomic import write_json
from strokelrp.core.orientation import CANONICAL
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import TARGETS
from strokelrp.reference import REFERENCES
from strokelrp.report.explain_case import (
    CaseExplanation,
    previous_outputs,
    remove_stale,
    setting_entries,
    write_setting_files,
)
from strokelrp.report.nifti import NIFTI_SUFFIX

IMAGE_TARGETS: tuple[str, ...] = TARGETS
"""The starts available for a user network on user images (``ground_truth`` needs a label)."""


def build_model(spec: str, model_args: str | Mapping[str, Any] | None = None) -> Any:
    """``factory(**model_args)`` for ``spec`` = ``PKG.MODULE:FACTORY`` (a function or class)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise StrokeLRPError(f"--model must look like PKG.MODULE:FACTORY, got {spec!r}")
    if isinstance(model_args, str):
        try:
            model_args = json.loads(model_args)
        except json.JSONDecodeError as err:
            raise StrokeLRPError(f"--model-args is not valid JSON: {err}") from err
    kwargs = dict(model_args or {})
    if not isinstance(model_args or {}, Mapping):
        raise StrokeLRPError("--model-args must be a JSON object of keyword arguments")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise StrokeLRPError(f"--model {spec}: cannot import {module_name!r} ({err})") from err
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise StrokeLRPError(f"--model {spec}: {module_name!r} has no {attr!r}")
    if not callable(factory):
        raise StrokeLRPError(f"--model {spec}: {attr!r} is not callable")
    try:
        model = factory(**kwargs)
    except TypeError as err:
        raise StrokeLRPError(f"--model {spec}: calling it with {kwargs} failed: {err}") from err
    import torch

    if not isinstance(model, torch.nn.Module):
        raise StrokeLRPError(f"--model {spec} returned {type(model).__name__}, not an nn.Module")
    return model


def load_weights(model: Any, path: str | Path) -> None:
    """Load a state dict into ``model`` (strict): ``.safetensors``, or a file read with
    ``torch.load(weights_only=True)`` holding a state dict (or one under ``state_dict`` /
    ``model``). Never executes code from the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise StrokeLRPError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # a pickled object (a whole model) refused
        raise StrokeLRPError(
            f"weights {path} hold a pickled object (e.g. a whole model saved by "
            "torch.save(model)), which is never unpickled here: save the weights alone with "
            "torch.save(model.state_dict(), path) (or safetensors) and pass that file"
        ) from err
    except Exception as err:  # corrupt file, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StrokeLRPError(f"cannot read weights {path}: {first}") from err
    if isinstance(state, Mapping) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise StrokeLRPError(f"weights {path}: expected a state dict (parameter name -> tensor)")
    try:
        result = model.load_state_dict(dict(state), strict=False)
    except RuntimeError as err:  # a parameter of another shape
        first = str(err).strip().splitlines()[1:2] or [str(err)]
        raise StrokeLRPError(f"weights {path} do not fit the model: {first[0].strip()}") from err
    # a name missing from the file is fine when it is the same tensor as a name the file has
    # (a module reachable by two paths, e.g. MONAI's DynUNet, saved by safetensors' save_model)
    from strokelrp.train.checkpoint import state_aliases

    aliases = state_aliases(model.state_dict())
    loaded = {aliases.get(k, k) for k in state}
    missing = [k for k in result.missing_keys if aliases.get(k, k) not in loaded]
    if missing or result.unexpected_keys:
        raise StrokeLRPError(
            f"weights {path} do not fit the model: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]})"
        )


def _read_volume(path: Path, what: str) -> Any:
    """One checked NIfTI volume (:func:`strokelrp.data.nifti_file.read_nifti`); clear errors."""
    from strokelrp.data.nifti_file import NiftiProblem, read_nifti

    try:
        volume = read_nifti(path)
    except NiftiProblem as err:
        raise StrokeLRPError(f"{what} {path}: {err}") from err
    except FileNotFoundError as err:
        raise StrokeLRPError(f"{what} {path} does not exist") from err
    if min(volume.meta.shape) < 2:
        shape = "x".join(map(str, volume.meta.shape))
        raise StrokeLRPError(
            f"{what} {path}: grid {shape} has an axis of 1 voxel; 3-D networks and figure 1 "
            "need at least 2 voxels along every axis"
        )
    return volume


def _same_grid(volume: Any, ref: Any, path: Path, ref_path: Path, what: str) -> None:
    if volume.meta.shape != ref.meta.shape:
        raise StrokeLRPError(
            f"{what} {path}: grid {volume.meta.shape} differs from {ref_path}'s {ref.meta.shape}"
        )
    if not np.allclose(volume.meta.affine, ref.meta.affine, atol=1e-3):
        raise StrokeLRPError(f"{what} {path}: affine differs from {ref_path}'s")


def read_images(paths: Sequence[str | Path], label: str | Path | None = None) -> Any:
    """The images (and ``label``) as a :class:`strokelrp.data.layouts.Case` in RAS order.

    ``image`` (C, D, H, W) float32, ``label`` (D, H, W) uint8 (voxels > 0) or None; geometry
    from the first file, every file (the label too) on its grid and affine; the files' voxel
    order is kept in ``Case.orientation`` for writing outputs back; channels are named by the
    files' names without extension (``ch1``... when two share a name)
    (:func:`strokelrp.data.layouts.reorient_to_canonical`)."""
    from strokelrp.data.layouts import Case, reorient_to_canonical
    from strokelrp.data.layouts.base import generic_channels

    if not paths:
        raise StrokeLRPError("give at least one --image (one NIfTI per input channel)")
    files = [Path(p) for p in paths]
    volumes = [_read_volume(p, "image") for p in files]
    ref = volumes[0]
    for p, v in zip(files[1:], volumes[1:], strict=True):
        _same_grid(v, ref, p, files[0], "image")
    with np.errstate(over="ignore", invalid="ignore"):
        image = np.stack([v.data.astype(np.float32).transpose(2, 1, 0) for v in volumes])
    if not np.all(np.isfinite(image)):
        raise StrokeLRPError("the images hold non-finite values (NaN or Inf) as float32")
    mask = None
    if label is not None:
        lab = _read_volume(Path(label), "label")
        _same_grid(lab, ref, Path(label), files[0], "label")
        if not np.all(np.isfinite(lab.data)):
            raise StrokeLRPError(f"label {label}: holds non-finite values (NaN or Inf)")
        mask = np.ascontiguousarray((lab.data > 0).transpose(2, 1, 0)).astype(np.uint8)
    stem = _stem(files[0])  # VSD.Brain.XX.O.MR_ADC.128020
    names = tuple(_channel_name(f) for f in files)
    if len(set(names)) != len(names):
        names = generic_channels(len(files))
    case = Case(
        case_id=stem,
        image=np.ascontiguousarray(image),
        label=mask,
        affine=ref.meta.affine.copy(),
        header=ref.meta.header.copy(),
        spacing=ref.meta.spacing,
        paths=dict(zip(names, files, strict=True))
        | ({} if label is None else {"label": Path(label)}),
        channels=names,
    )
    try:
        return reorient_to_canonical(case)
    except ValueError as err:
        raise StrokeLRPError(f"image {files[0]}: {err}") from err


def reference_in_ras(reference: str | Path, case: Any) -> Any:
    """A reference file for ``case`` (:func:`read_images`) as the network sees it: a NIfTI on
    the images' grid and affine, 4-D (x, y, z, C) with one volume per channel (the layout of
    the relevance files) or 3-D for one channel, turned to (C, D, H, W) in RAS order like
    ``case.image``; a ``.npy`` file is passed on as it is (already (C, D, H, W) in RAS)."""
    from strokelrp.core.orientation import to_canonical

    path = Path(reference)
    if path.suffix == ".npy":
        return path
    if not path.is_file():
        raise StrokeLRPError(f"reference file {path} does not exist")
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float64)
    except Exception as err:  # nibabel's own errors for a file that is not NIfTI
        raise StrokeLRPError(f"reference file {path}: cannot read it ({err})") from err
    if data.ndim == 3:
        data = data[..., None]
    grid, channels = tuple(case.native_grid), case.image.shape[0]
    if data.shape != (*grid, channels):
        raise StrokeLRPError(
            f"reference file {path}: shape {data.shape} is not the images' grid with one "
            f"volume per channel {(*grid, channels)}"
        )
    if not np.allclose(img.affine, case.native_affine, atol=1e-3):
        raise StrokeLRPError(f"reference file {path}: affine differs from the images'")
    return np.ascontiguousarray(to_canonical(data.transpose(3, 2, 1, 0), case.orientation))


def _stem(path: Path) -> str:
    """A file's name without ``.nii`` / ``.nii.gz``."""
    return path.name.removesuffix(".gz").removesuffix(".nii")


def _channel_name(path: Path) -> str:
    """A channel's name from its file: the ISLES 2017 modality when the name holds its token
    (``VSD.Brain.XX.O.MR_ADC.128020.nii`` -> ``ADC``), else the name without extension."""
    from strokelrp.data.layouts.isles2017 import CHANNELS, token_of

    token = token_of(path.name)
    by_token = {f"MR_{c}".lower(): c for c in CHANNELS}
    return by_token.get((token or "").lower(), _stem(path))


def _fingerprint(files: Mapping[str, Path]) -> str:
    """SHA-256 over the content of the input files, in channel order (names do not count)."""
    from strokelrp.data.dataset import file_sha256

    parts = [[key, file_sha256(Path(path))] for key, path in files.items()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def explain_images(
    model_spec: str,
    weights: str | Path,
    images: Sequence[str | Path],
    out: str | Path,
    *,
    label: str | Path | None = None,
    model_args: str | Mapping[str, Any] | None = None,
    filters: Sequence[str] | None = None,
    rules: str = "paper",
    method: str | None = None,
    target: str = "prediction",
    class_index: int = 1,
    case_id: str | None = None,
    slice_index: int | None = None,
    modality: str | None = None,
    device: str = "auto",
    per_modality: bool = False,
    normalised: bool = False,
    memory_budget: str | int | float | None = None,
    reference: str | None = None,
    log: Callable[[str], None] | None = None,
) -> CaseExplanation:
    """Explain ``images`` (one NIfTI per input channel) with the user's network; write the
    relevance NIfTIs (the images' own grid, voxel order and affine) with their JSON sidecars
    (and per-channel / normalised copies when asked), the prediction, ``explanation.json`` and
    figure 1 to ``out``, as :func:`strokelrp.pipeline.explain.explain_case` does for a run's
    case. Channels are named by the image files (:func:`read_images`).

    The network sees the images in RAS voxel order (see the module docstring). ``method``: any
    attribution method (:func:`strokelrp.attribution.method_names`); None: ``lrp:<rules>``.
    ``target``: one of :data:`IMAGE_TARGETS`; ``ground_truth`` needs ``label``, a NIfTI mask
    (voxels > 0) on the images' grid; a label given with another target is drawn in the figure
    and scored (Dice of the prediction). ``case_id``: the name of the case in the outputs
    (default: the first image's file name without its NIfTI suffix). ``reference``: explain
    relative to a reference input (``healthy``, ``mirror``, ``mean``, ``zero`` or a .npy /
    NIfTI file of the images' grid, :mod:`strokelrp.reference`) for the methods that take one;
    None or ``zero``: the plain maps (the default here: the healthy and mirror rules find the
    brain as ISLES perfusion maps show it, which a user's images need not). A file is read in
    the images' own voxel order and turned to RAS with them; figure 1 and explanation.json
    name the reference.
    """
    import torch

    from strokelrp.attribution import spatial_rank
    from strokelrp.core.metrics import dice_score
    from strokelrp.data.dataset import file_sha256
    from strokelrp.data.layouts import shown_channel
    from strokelrp.device import resolve_device
    from strokelrp.pipeline.explain import (
        compute_maps,
        effective_reference,
        method_plan,
        takes_reference,
    )
    from strokelrp.provenance import case_record, provenance
    from strokelrp.report.figure1 import default_slice, plot_figure1
    from strokelrp.report.nifti import (
        labels_from_logits,
        write_label_nifti,
    )

    say = log if log is not None else (lambda _line: None)
    if target not in IMAGE_TARGETS:
        raise StrokeLRPError(
            f"with --model, --target must be one of {', '.join(IMAGE_TARGETS)}, got {target!r}"
        )
    if target == "ground_truth" and label is None:
        raise StrokeLRPError(
            "--target ground_truth needs --label FILE.nii.gz: the lesion mask on the images' grid"
        )
    method = method if method is not None else f"lrp:{rules}"
    lrp_rules, rules_label, settings = method_plan(method, filters)
    dev = str(resolve_device(device))
    say(f"building {model_spec} and loading {weights} on {dev}")
    model = build_model(model_spec, model_args)
    rank = spatial_rank(model)
    if rank != 3:
        raise StrokeLRPError(
            f"--model {model_spec} is a {rank}-D network (its first convolution is "
            f"{rank}-D); explain --model explains 3-D networks on 3-D volumes (use "
            "strokelrp.attribute on (C, H, W) slices for a 2-D network)"
        )
    load_weights(model, weights)
    model = model.to(dev).eval()
    case = read_images(images, label)
    try:
        shown = shown_channel(case.channels, modality)
    except StrokeLRPError as err:
        raise StrokeLRPError(f"case {case.case_id}: {err}") from None
    if case_id is not None:
        case.case_id = str(case_id)
    depth = case.image.shape[1]
    if slice_index is not None and not 0 <= slice_index < depth:
        raise StrokeLRPError(f"case {case.case_id}: slice {slice_index} is outside 0..{depth - 1}")
    x = torch.from_numpy(case.image)[None].to(dev)
    say(
        f"{case.case_id}: {method}, {len(settings)} map(s) (start from {target}; stored "
        f"{case.orientation}, computed in {CANONICAL})"
    )
    mask = None if case.label is None else torch.from_numpy(case.label)
    shown_reference = reference if reference is not None else "zero"
    used = effective_reference(method, reference)
    if used is None:
        shown_reference = "zero" if takes_reference(method) else "none"
    elif used not in REFERENCES:  # a file, on the images' grid
        used = reference_in_ras(used, case)
        shown_reference = Path(str(reference)).name
    try:
        relevance, logits, notes = compute_maps(
            model,
            x,
            method,
            lrp_rules,
            settings,
            target,
            mask,
            memory_budget,
            class_index=class_index,
            reference=used,
        )
    except (RuntimeError, ValueError) as err:  # the network itself refused the input
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StrokeLRPError(
            f"{model_spec} failed on the images of shape {tuple(x.shape)}: {first}"
        ) from err
    if logits.dim() != 4 or tuple(logits.shape[1:]) != case.image.shape[1:]:
        raise StrokeLRPError(
            f"{model_spec} gives an output of shape {(1, *logits.shape)}: a voxel-wise "
            f"segmentation of the input grid {case.image.shape[1:]} is needed for the NIfTI files"
        )
    out_dir = Path(out)
    old = previous_outputs(out_dir)
    names = list(case.channels)
    named = rules_label if rules_label is not None else settings[0].label
    files = write_setting_files(
        out_dir, relevance, case, settings, named, per_modality=per_modality, normalised=normalised
    )
    written, companions, extra, peaks = files.written, files.companions, files.extra, files.peaks
    if logits.shape[0] == 1:
        prediction = (logits[0] > 0).numpy().astype(np.uint8)
    else:
        prediction = labels_from_logits(logits, case)
    pred_path = write_label_nifti(
        out_dir / f"prediction{NIFTI_SUFFIX}", prediction, case, description="prediction"
    )
    explained = (prediction == (1 if logits.shape[0] == 1 else class_index)).astype(np.uint8)
    empty_prediction = not bool(explained.any())
    if empty_prediction:
        notes.append("the network predicts no voxel of the explained class (empty prediction)")
    dice = None if case.label is None else dice_score(explained, case.label)
    z = default_slice(case.label, explained, depth) if slice_index is None else slice_index
    subtitle = f"rules {rules_label}" if rules_label is not None else method
    figure = plot_figure1(
        out_dir / run_files.FIGURE1,
        [(s.label, relevance[k]) for k, s in enumerate(settings)],
        case.image,
        explained,
        label=case.label,
        spacing=case.spacing,
        slice_index=z,
        modality=shown,
        channels=case.channels,
        case_id=case.case_id,
        dice=dice,
        subtitle=f"{model_spec}, {subtitle}, start from {target.replace('_', ' ')}",
        affine=case.affine,
        reference=shown_reference,
    )
    weights_path = Path(weights)
    record = provenance(
        "explain",
        data_root=Path(images[0]).parent,
        cases={
            case.case_id: case_record(
                case.paths, Path(images[0]).parent, _fingerprint(case.paths), case.orientation
            )
        },
        rules=lrp_rules,
        target=target,
        reference=shown_reference,
        settings=[s.label for s in settings],
        model={
            "factory": model_spec,
            "weights": str(weights_path.resolve()),
            "weights_sha256": file_sha256(weights_path),
        },
    )
    summary = write_json(
        out_dir / run_files.EXPLANATION,
        {
            "case": case.case_id,
            "model": model_spec,
            "model_args": model_args if not isinstance(model_args, str) else json.loads(model_args),
            "weights": str(weights),
            "images": [str(p) for p in images],
            "method": f"lrp:{rules_label}" if lrp_rules is not None else settings[0].label,
            "rules": rules_label,
            "target": target,
            "reference": shown_reference,
            "class_index": class_index,
            "label": None if label is None else str(label),
            "volumes": names,
            "grid_xyz": [int(s) for s in case.native_grid],
            "spacing_mm": [float(s) for s in case.native_spacing],
            "orientation": {"stored": case.orientation, "computed_in": CANONICAL},
            "slice": z,
            "slice_grid": "RAS",
            "figure_modality": shown,
            "dice": dice,
            "empty_prediction": empty_prediction,
            "settings": setting_entries(settings, written, companions, "max_abs_relevance", peaks),
            "prediction": pred_path.name,
            "figure": figure.name,
            "notes": notes,
            "provenance": record,
        },
    )
    kept = [*written.values(), *extra, pred_path, summary]
    remove_stale(old, kept if figure is None else [*kept, figure])
    return CaseExplanation(
        case_id=case.case_id,
        out=out_dir,
        relevance=written,
        prediction=pred_path,
        figure=figure,
        summary=summary,
        slice_index=-1 if z is None else z,
        dice=dice,
        peaks=peaks,
        notes=notes,
        companions=extra,
    )
