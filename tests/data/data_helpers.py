"""Helpers for the data tests: find and rewrite files, and break a case in every known way."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np


def modality_file(root: Path, case: str, token: str) -> Path:
    """The image of ``token`` (``"MR_ADC"``, ``"OT"``...) in ``training_<case>``."""
    hits = [p for p in (root / f"training_{case}").glob("*/*.nii*") if f".{token}." in p.name]
    assert len(hits) == 1, hits
    return hits[0]


def rewrite(path: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> None:
    """Write ``path`` again with new voxel data and/or affine (header codes kept)."""
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj) if data is None else data
    affine = img.affine if affine is None else affine
    new = nib.Nifti1Image(data, affine)
    new.header.set_qform(affine, code=1)
    new.header.set_sform(affine, code=1)
    path.unlink()
    nib.save(new, str(path))


# ------------------------------------------------------------- broken-case kinds

Breaker = Callable[[Path], tuple[str, str]]
"""Breaks case 2 of a tree -> (file path relative to the root, expected words)."""


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def missing_modality(root: Path) -> tuple[str, str]:
    shutil.rmtree(modality_file(root, "2", "MR_TTP").parent)
    return "training_2", "missing modality MR_TTP"


def unreadable_file(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_MTT")
    path.write_bytes(b"this is not an image\n" * 40)
    return _rel(root, path), "not a NIfTI file"


def truncated_file(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_rCBV")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    return _rel(root, path), "truncated file"


def truncated_gzip(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_rCBV")
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes())[:-300])
    path.unlink()
    return _rel(root, gz), "truncated or corrupt"


def empty_file(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_Tmax")
    path.write_bytes(b"")
    return _rel(root, path), "empty file"


def folder_without_image(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_ADC")
    folder = path.parent
    path.unlink()
    (folder / "readme.txt").write_text("image was here")
    return _rel(root, folder), "holds no .nii or .nii.gz image (found readme.txt)"


def not_3d(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_rCBF")
    img = nib.load(str(path))
    rewrite(path, np.stack([img.get_fdata()] * 3, axis=-1).astype(np.float32))
    return _rel(root, path), "image is not 3-D (shape 32x32x8x3)"


def grid_shape_differs(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_Tmax")
    rewrite(path, nib.load(str(path)).get_fdata()[:, :, :7].astype(np.float32))
    return _rel(root, path), "grid 32x32x7 differs from MR_ADC"


def affine_differs(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_MTT")
    affine = nib.load(str(path)).affine.copy()
    affine[0, 3] += 2.0
    rewrite(path, affine=affine)
    return _rel(root, path), "affine differs from MR_ADC"


def reference_affine_differs(root: Path) -> tuple[str, str]:
    """ADC, the first modality, is the shifted one: ADC is named, not the five others."""
    path = modality_file(root, "2", "MR_ADC")
    affine = nib.load(str(path)).affine.copy()
    affine[1, 3] -= 3.0
    rewrite(path, affine=affine)
    return _rel(root, path), "affine differs from MR_MTT"


def nan_voxels(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_rCBF")
    data = nib.load(str(path)).get_fdata().astype(np.float32)
    data[3, 4, 2] = np.nan
    data[5, 6, 1] = np.inf
    data[7, 7, 1] = np.nan
    rewrite(path, data)
    return _rel(root, path), "2 NaN and 1 Inf voxels"


def ot_not_binary(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "OT")
    data = np.asanyarray(nib.load(str(path)).dataobj).copy()
    data[0, 0, 0] = 2
    data[1, 0, 0] = 255
    rewrite(path, data)
    return _rel(root, path), "OT is not binary: values other than 0 and 1 found (2, 255)"


def all_zero_modality(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_TTP")
    rewrite(path, np.zeros((32, 32, 8), dtype=np.float32))
    return _rel(root, path), "all voxels are 0"


def two_images_for_one_modality(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_ADC")
    shutil.copy(path, path.with_name("VSD.Brain.XX.O.MR_ADC.999.nii"))
    return "training_2", "2 images for MR_ADC"


BREAKERS: list[Breaker] = [
    missing_modality,
    unreadable_file,
    truncated_file,
    truncated_gzip,
    empty_file,
    folder_without_image,
    not_3d,
    grid_shape_differs,
    affine_differs,
    reference_affine_differs,
    nan_voxels,
    ot_not_binary,
    all_zero_modality,
    two_images_for_one_modality,
]
