"""Synthetic data sets in the other layouts (ISLES 2022, ISLES 2024, nnU-Net raw, Decathlon).

Every case is the phantom of :mod:`strokelrp.data.synth` (same anatomy, lesion and OT for the
same seed and case number), written as the layout stores it:

* ``isles2022``: DWI (b = 1000 s/mm^2 trace, ``1000 exp(-b ADC)`` inside the head), ADC, and a
  FLAIR-like image on its own, coarser and shifted grid (so the reader must resample it), the
  mask in ``derivatives/``;
* ``isles2024``: the perfusion maps CBF, CBV, MTT, Tmax in ``derivatives/.../perfusion-maps``,
  an NCCT-like image in ``raw_data``, the mask in ``ses-02``;
* ``nnunet``: ``Dataset001_SynthStroke`` style: DWI and ADC channels, labels with two classes
  (``lesion`` = 1, and ``old_infarct`` = 2, a small blob away from the lesion);
* ``msd``: one 4-D image (DWI, ADC, Tmax) per case and ``dataset.json`` with ``modality``.

A ``synth_manifest.json`` records the layout, seed and per-case lesion parameters.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from strokelrp.atomic import write_bytes, write_text
from strokelrp.data.synth import (
    MANIFEST_NAME,
    _case_grid,
    _geometry,
    _phantom_case,
    case_numbers,
)
from strokelrp.errors import StrokeLRPError

LAYOUTS = ("isles2022", "isles2024", "nnunet", "msd")
"""Layouts written here (ISLES 2017 is :func:`strokelrp.data.synth.synthesize_isles2017`)."""
B_VALUE = 1000.0
"""Diffusion weighting of the synthetic DWI (s/mm^2)."""


def _nifti(data: np.ndarray, affine: np.ndarray) -> bytes:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b"strokelrp synthetic case"
    return gzip.compress(img.to_bytes(), mtime=0)


def _dwi(adc: np.ndarray) -> np.ndarray:
    """b = 1000 trace from ADC (1e-6 mm^2/s): 1000 exp(-b ADC) where ADC > 0, else 0."""
    adc = adc.astype(np.float32)
    return np.where(adc > 0, 1000.0 * np.exp(-B_VALUE * adc * 1e-6), 0.0).astype(np.float32)


def _other_grid(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` resampled (trilinear) onto a grid with 1.5x larger voxels in-plane and a
    2.5 mm shift: a second acquisition of the same head -> (values, affine)."""
    nx, ny, nz = data.shape
    scale = np.diag([1.5, 1.5, 1.0, 1.0])
    new_affine = affine @ scale
    new_affine[:3, 3] += [2.5, -2.5, 0.0]
    shape = (max(2, round(nx / 1.5)), max(2, round(ny / 1.5)), nz)
    to_old = np.linalg.inv(affine) @ new_affine
    out = ndimage.affine_transform(
        data.astype(np.float32),
        to_old[:3, :3],
        offset=to_old[:3, 3],
        output_shape=shape,
        order=1,
        mode="constant",
        cval=0.0,
    )
    return out.astype(np.float32), new_affine


def _old_infarct(ot: np.ndarray) -> np.ndarray:
    """A small blob (class 2) in the half of the grid (along x) away from the lesion."""
    nx, ny, nz = ot.shape
    lesion_x = np.nonzero(ot)[0].mean() if ot.any() else nx
    cx = nx // 4 if lesion_x > nx / 2 else 3 * nx // 4
    ii, jj, kk = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    blob = ((ii - cx) / max(1, nx / 16)) ** 2 + ((jj - ny // 2) / max(1, ny / 16)) ** 2 + (
        (kk - nz // 2) / max(1, nz / 6)
    ) ** 2 <= 1
    return blob & (ot == 0)


def _write_case(
    out: Path, layout: str, index: int, number: int, volumes: dict, ot: np.ndarray, affine
) -> dict[str, str]:
    """Write one case in ``layout`` -> {channel or label: path relative to ``out``}."""
    adc = volumes["ADC"]
    files: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if layout == "isles2022":
        sub = f"sub-strokecase{number:04d}"
        ses = f"{sub}/ses-0001"
        files[f"rawdata/{ses}/dwi/{sub}_ses-0001_dwi.nii.gz"] = (_dwi(adc), affine)
        files[f"rawdata/{ses}/dwi/{sub}_ses-0001_adc.nii.gz"] = (adc, affine)
        flair = volumes["rCBV"] * 100.0 + 500.0 * (volumes["ADC"] > 0)
        files[f"rawdata/{ses}/anat/{sub}_ses-0001_FLAIR.nii.gz"] = _other_grid(flair, affine)
        files[f"derivatives/{ses}/{sub}_ses-0001_msk.nii.gz"] = (ot, affine)
    elif layout == "isles2024":
        sub = f"sub-stroke{number:04d}"
        maps = f"derivatives/{sub}/ses-01/perfusion-maps"
        ncct = np.where(adc > 0, 20.0 + adc.astype(np.float32) / 100.0, -1000.0)
        files[f"raw_data/{sub}/ses-01/{sub}_ses-01_ncct.nii.gz"] = (ncct.astype(np.int16), affine)
        for name, key in (("cbf", "rCBF"), ("cbv", "rCBV"), ("mtt", "MTT"), ("tmax", "Tmax")):
            files[f"{maps}/{sub}_ses-01_{name}.nii.gz"] = (volumes[key], affine)
        files[f"derivatives/{sub}/ses-02/{sub}_ses-02_lesion-msk.nii.gz"] = (ot, affine)
    elif layout == "nnunet":
        case = f"STROKE_{number:03d}"
        files[f"imagesTr/{case}_0000.nii.gz"] = (_dwi(adc), affine)
        files[f"imagesTr/{case}_0001.nii.gz"] = (adc, affine)
        labels = ot.astype(np.uint8) + 2 * _old_infarct(ot).astype(np.uint8)
        files[f"labelsTr/{case}.nii.gz"] = (labels, affine)
    elif layout == "msd":
        case = f"stroke_{number:03d}"
        stack = np.stack([_dwi(adc), adc.astype(np.float32), volumes["Tmax"]], axis=-1)
        files[f"imagesTr/{case}.nii.gz"] = (stack, affine)
        files[f"labelsTr/{case}.nii.gz"] = (ot, affine)
    for rel, (data, aff) in files.items():
        write_bytes(out / rel, _nifti(data, aff))
    return {Path(rel).name: rel for rel in files}


def _dataset_json(layout: str, n_cases: int, numbers: list[int]) -> dict | None:
    if layout == "nnunet":
        return {
            "name": "SynthStroke",
            "channel_names": {"0": "DWI", "1": "ADC"},
            "labels": {"background": 0, "lesion": 1, "old_infarct": 2},
            "numTraining": n_cases,
            "file_ending": ".nii.gz",
        }
    if layout == "msd":
        return {
            "name": "SynthStroke",
            "tensorImageSize": "4D",
            "modality": {"0": "DWI", "1": "ADC", "2": "Tmax"},
            "labels": {"0": "background", "1": "lesion"},
            "numTraining": n_cases,
            "numTest": 0,
            "training": [
                {
                    "image": f"./imagesTr/stroke_{n:03d}.nii.gz",
                    "label": f"./labelsTr/stroke_{n:03d}.nii.gz",
                }
                for n in numbers
            ],
            "test": [],
        }
    return None


def synthesize_layout(
    out: str | Path,
    n_cases: int,
    layout: str,
    shape: tuple[int, int, int] = (192, 192, 19),
    seed: int = 0,
    varied_grids: bool = False,
) -> Path:
    """Write ``n_cases`` synthetic cases in ``layout`` (one of :data:`LAYOUTS`) under ``out``
    (a new or empty folder) -> ``out``. ``shape`` is (H, W, D) as for ISLES 2017."""
    if layout not in LAYOUTS:
        raise StrokeLRPError(f"unknown synthetic layout {layout!r}; choose one of {LAYOUTS}")
    if int(n_cases) < 1:
        raise StrokeLRPError(f"the number of cases must be at least 1, got {n_cases}")
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 2:
        raise StrokeLRPError(f"shape must be three sizes (H, W, D), each >= 2, got {shape}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StrokeLRPError(f"{out}: exists and is not an empty folder; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    numbers = case_numbers(int(n_cases))
    cases: dict[str, dict] = {}
    for index, number in enumerate(numbers):
        rng = np.random.default_rng([int(seed), number])
        grid = _case_grid(np.random.default_rng([int(seed), number, 1]), shape, varied_grids)
        geom = _geometry(rng, grid)  # type: ignore[arg-type]
        noise = np.random.default_rng([int(seed), number, 2])
        for _attempt in range(30):
            volumes, ot, lesion = _phantom_case(rng, geom, (), (), noise)
            minimum = 0.4 if lesion["pattern"] == "scattered" else 2.0
            if lesion["ot_ml"] >= minimum and lesion["ot_voxels"] >= 2:
                break
        files = _write_case(out, layout, index, number, volumes, ot, geom.affine)
        cases[str(number)] = {"grid": list(geom.grid), "lesion": lesion, "files": files}
    doc = _dataset_json(layout, int(n_cases), numbers)
    if doc is not None:
        write_text(out / "dataset.json", json.dumps(doc, indent=2) + "\n")
    manifest = {
        "generator": "strokelrp.data.synth_layouts",
        "layout": layout,
        "seed": int(seed),
        "n_cases": int(n_cases),
        "shape_hwd": list(shape),
        "cases": cases,
    }
    write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return out
