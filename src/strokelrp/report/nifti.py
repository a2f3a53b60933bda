"""Write relevance maps and predictions as NIfTI files in a case's native grid and orientation.

The network sees a case reoriented to RAS and resized to a series scale (e.g. (19, 48, 48));
users look at the result over the original MRI. Everything here therefore resizes back to the
case's own resolution (``case.image.shape[1:]`` = (Dn, Hn, Wn), RAS voxel order), puts the
voxels back in the files' order (``case.orientation``, pure axis flips and permutations) and
writes with the files' affine and a header derived from the case's header, so the files
overlay the modality files in ITK-SNAP, 3D Slicer or FSLeyes.

Layout: a (C, Dn, Hn, Wn) volume in RAS order is reordered to the files' (C, z, y, x) and
written as the NIfTI array (x, y, z, C).

Relevance is written as signed float32 (no abs, no rescaling: ``scl_slope`` 1,
``scl_inter`` 0) with symmetric ``cal_min`` / ``cal_max`` = -/+ max |R| so viewers that honour
them show a diverging range centred on zero. Resizing uses trilinear interpolation of the
values (a display-faithful map, not a relevance-conserving one: sums over the native grid
differ from sums at model scale by the resampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from strokelrp.atomic import atomic_path
from strokelrp.config import MODALITIES
from strokelrp.core.orientation import file_axes, to_file_order
from strokelrp.errors import StrokeLRPError

NIFTI_SUFFIX = ".nii.gz"
"""Suffix of every NIfTI file strokelrp writes (compressed; ITK-SNAP, Slicer, FSLeyes read it)."""

_DESCRIP_BYTES = 80
_INTENT_NAME_BYTES = 16


def native_shape(case: Any) -> tuple[int, int, int]:
    """The case's own grid in RAS order as (Dn, Hn, Wn), checked against its header's dims."""
    shape = tuple(int(s) for s in np.shape(case.image)[-3:])
    header_shape = tuple(int(s) for s in case.header.get_data_shape()[:3])
    expected = tuple(int(s) for s in file_axes(shape[::-1], case.orientation))
    if len(header_shape) == 3 and header_shape != expected:
        raise StrokeLRPError(
            f"case {case.case_id}: image grid (D, H, W) = {shape} stored {case.orientation} "
            f"does not match its header's (x, y, z) = {header_shape}"
        )
    return shape  # type: ignore[return-value]


def _file_affine(case: Any) -> np.ndarray:
    """The affine of the case's files (``Case.native_affine``; its ``affine`` if unset)."""
    return case.affine if case.native_affine is None else case.native_affine


def to_native_grid(volume: Any, shape: tuple[int, int, int], mode: str = "trilinear") -> np.ndarray:
    """Resize (C, D, H, W) (numpy or torch) to (C, *shape) float32 numpy in the native grid."""
    from strokelrp.core.volumes import resize_volume

    if hasattr(volume, "detach"):
        volume = volume.detach().cpu().float().numpy()
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 4:
        raise ValueError(f"expected a (C, D, H, W) volume, got shape {vol.shape}")
    if tuple(vol.shape[1:]) != tuple(shape):
        vol = np.asarray(resize_volume(vol, tuple(shape), mode=mode), dtype=np.float32)
    return vol


def _clip_text(text: str, limit: int) -> bytes:
    raw = text.encode("ascii", "replace")
    return raw[: limit - 1] if len(raw) >= limit else raw


def _derived_header(case: Any, dtype: type, n_volumes: int | None) -> nib.Nifti1Header:
    """A header from the case's: spatial pixdim, units, qform/sform and their codes kept."""
    source = case.header
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    zooms = tuple(float(z) for z in source.get_zooms()[:3])
    if n_volumes is None:
        header.set_data_shape(tuple(int(s) for s in source.get_data_shape()[:3]))
        header.set_zooms(zooms)
    else:
        header.set_data_shape((*source.get_data_shape()[:3], n_volumes))
        header.set_zooms((*zooms, 1.0))  # the 4th axis is a plain index (the modality)
    spatial_unit = source.get_xyzt_units()[0]
    header.set_xyzt_units(xyz=spatial_unit, t="unknown")
    qform, qcode = source.get_qform(coded=True)
    sform, scode = source.get_sform(coded=True)
    affine = _file_affine(case)
    header.set_qform(qform if qform is not None else affine, code=int(qcode))
    header.set_sform(sform if sform is not None else affine, code=int(scode))
    if int(qcode) == 0 and int(scode) == 0:
        # The source had no orientation codes; record the case's affine as a scanner sform
        # rather than silently falling back to the pixdim-only (method 1) orientation.
        header.set_sform(affine, code=1)
    header["dim_info"] = source["dim_info"]
    header.set_slope_inter(1.0, 0.0)
    return header


def _save_atomic(image: nib.Nifti1Image, path: Path) -> Path:
    path = Path(path)
    if not str(path).endswith((".nii", ".nii.gz")):
        raise ValueError(f"NIfTI path must end in .nii or .nii.gz, got {path}")
    suffix = ".nii.gz" if str(path).endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix) as tmp:
        nib.save(image, tmp)
    return path


def write_relevance_nifti(
    path: str | Path,
    relevance: Any,
    case: Any,
    *,
    setting: str,
    rules: str | None = None,
) -> Path:
    """Write one relevance map as a 4-D NIfTI (x, y, z, C) in the case's native grid.

    relevance: (C, D, H, W) in RAS order at model scale (numpy or torch; C = 6 in
    ``MODALITIES`` order) or already at the case's resolution; written in the files' order.
    ``setting`` (e.g. "raw", "pass(0,0.4)") and ``rules`` go into the header's description.
    Returns the written path.
    """
    shape = native_shape(case)
    vol = to_native_grid(relevance, shape, mode="trilinear")
    if not np.all(np.isfinite(vol)):
        raise StrokeLRPError(
            f"case {case.case_id}: relevance for setting {setting} has non-finite values"
        )
    vol = to_file_order(vol, case.orientation)
    array = np.ascontiguousarray(vol.transpose(3, 2, 1, 0))  # (C, z, y, x) -> (x, y, z, C)
    header = _derived_header(case, np.float32, n_volumes=array.shape[-1])
    peak = float(np.max(np.abs(array))) if array.size else 0.0
    header["cal_min"], header["cal_max"] = -peak, peak
    header["intent_name"] = _clip_text("LRP relevance", _INTENT_NAME_BYTES)
    channels = ",".join(MODALITIES) if array.shape[-1] == len(MODALITIES) else "channels"
    text = f"LRP relevance {setting}" + (f" rules={rules}" if rules else "") + f"; t={channels}"
    header["descrip"] = _clip_text(text, _DESCRIP_BYTES)
    image = nib.Nifti1Image(array, header.get_best_affine(), header)
    _restore_forms(image, header)
    return _save_atomic(image, Path(path))


def write_label_nifti(
    path: str | Path, label: Any, case: Any, *, description: str = "prediction"
) -> Path:
    """Write a (Dn, Hn, Wn) integer label map (RAS order, the case's resolution, as
    ``case.label``) as a 3-D uint8 NIfTI (x, y, z) in the files' voxel order."""
    shape = native_shape(case)
    lab = np.asarray(label.detach().cpu().numpy() if hasattr(label, "detach") else label)
    if lab.shape != shape:
        raise ValueError(f"label map must be in the native grid {shape}, got {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() > 255):
        raise ValueError("label values must lie in 0..255 to be written as uint8")
    lab = to_file_order(lab.astype(np.uint8), case.orientation)
    array = np.ascontiguousarray(lab.transpose(2, 1, 0))
    header = _derived_header(case, np.uint8, n_volumes=None)
    header["cal_min"], header["cal_max"] = 0.0, float(max(1, int(array.max(initial=0))))
    header["intent_code"] = nib.nifti1.intent_codes.code["label"]
    header["descrip"] = _clip_text(description, _DESCRIP_BYTES)
    image = nib.Nifti1Image(array, header.get_best_affine(), header)
    _restore_forms(image, header)
    return _save_atomic(image, Path(path))


def labels_from_logits(logits: Any, case: Any) -> np.ndarray:
    """Class map uint8 (Dn, Hn, Wn) at the case's resolution (RAS order) from logits
    (K, D, H, W) at model scale, ready for :func:`write_label_nifti`:
    :func:`strokelrp.inference.native_labels` (as ``strokelrp evaluate``, so a Dice
    computed on this map matches ``metrics.csv``)."""
    from strokelrp.inference import native_labels

    return native_labels(np.ascontiguousarray(_as_array(logits)), native_shape(case))


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _restore_forms(image: nib.Nifti1Image, header: nib.Nifti1Header) -> None:
    """Make the image's qform/sform (and codes) exactly those of the derived header."""
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    image.set_qform(qform if qform is not None else header.get_best_affine(), code=int(qcode))
    image.set_sform(sform if sform is not None else header.get_best_affine(), code=int(scode))
    image.header.set_slope_inter(1.0, 0.0)


def sidecar_path(nifti_path: str | Path) -> Path:
    """``relevance_raw.nii.gz`` -> ``relevance_raw.json`` (BIDS-style: the same stem)."""
    path = Path(nifti_path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    raise ValueError(f"not a NIfTI path: {path}")


def write_relevance_companions(
    nifti_path: str | Path,
    relevance: Any,
    case: Any,
    *,
    setting: str,
    rules: str | None = None,
    per_modality: bool = False,
    normalised: bool = False,
    names: Sequence[str] = MODALITIES,
) -> dict[str, Any]:
    """Files that go with a relevance NIfTI written by :func:`write_relevance_nifti`.

    Always a JSON sidecar (``<stem>.json``) naming the volumes of the 4-D file in order
    (``names``: ADC ... TTP for a run's case; a user network's channels otherwise), the
    setting, the rules and max |R| per volume; with ``per_modality`` one 3-D
    file per volume (``<stem>_<NAME>.nii.gz``); with ``normalised`` a copy of the 4-D file with
    each volume divided by its own max |R_c| (``<stem>_norm.nii.gz``, values in [-1, 1], the
    paper's per-channel normalisation, here measured on the native grid). ``relevance``
    (C, D, H, W) as given to :func:`write_relevance_nifti`. Returns the sidecar's content, with
    the written files under ``"files"``.
    """
    import json

    from strokelrp.atomic import write_text

    path = Path(nifti_path)
    stem = sidecar_path(path).with_suffix("")
    vol = to_native_grid(relevance, native_shape(case), mode="trilinear")
    names = list(names)
    if vol.shape[0] != len(names):
        raise StrokeLRPError(
            f"case {case.case_id}: relevance has {vol.shape[0]} volumes, expected "
            f"{len(names)} ({', '.join(names)})"
        )
    peaks = np.abs(vol.reshape(vol.shape[0], -1)).max(axis=1)
    files: dict[str, str] = {"relevance": path.name}
    if per_modality:
        for c, modality in enumerate(names):
            target = stem.with_name(f"{stem.name}_{modality}{NIFTI_SUFFIX}")
            _write_volume_3d(target, vol[c], case, f"LRP relevance {setting} {modality}")
            files[modality] = target.name
    if normalised:
        safe = np.where(peaks > 0, peaks, 1.0).astype(np.float32)
        target = stem.with_name(f"{stem.name}_norm{NIFTI_SUFFIX}")
        write_relevance_nifti(
            target, vol / safe[:, None, None, None], case, setting=f"{setting} R/max|R_c|"
        )
        files["normalised"] = target.name
    content = {
        "description": "LRP relevance (signed; positive: evidence for the lesion)",
        "volumes": names,
        "volume_axis": 3,
        "setting": setting,
        "rules": rules,
        "case": str(case.case_id),
        "max_abs_per_volume": [float(p) for p in peaks],
        "normalised_copy": "each volume divided by its max |R| (native grid)"
        if normalised
        else None,
        "files": files,
    }
    write_text(sidecar_path(path), json.dumps(content, indent=1) + "\n")
    return content


def _write_volume_3d(path: Path, volume: np.ndarray, case: Any, description: str) -> Path:
    """One (Dn, Hn, Wn) float volume in RAS order as a 3-D float32 NIfTI (x, y, z) in the
    files' voxel order, with the case's header (as :func:`write_relevance_nifti`)."""
    ordered = to_file_order(np.asarray(volume, dtype=np.float32)[None], case.orientation)[0]
    array = np.ascontiguousarray(ordered.transpose(2, 1, 0))
    header = _derived_header(case, np.float32, n_volumes=None)
    peak = float(np.max(np.abs(array))) if array.size else 0.0
    header["cal_min"], header["cal_max"] = -peak, peak
    header["descrip"] = _clip_text(description, _DESCRIP_BYTES)
    image = nib.Nifti1Image(array, header.get_best_affine(), header)
    _restore_forms(image, header)
    return _save_atomic(image, path)
