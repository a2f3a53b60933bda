"""Canonical orientation: every case is held in RAS voxel order, outputs go back to the file's.

The same anatomy can be stored with its voxel axes in any order and direction (LAS, LPS, ASR
...). A network sees arrays, not world coordinates, so without a common frame the same head
stored two ways is two different inputs. Right after reading, a case is therefore reoriented
to :data:`CANONICAL` (x towards the patient's Right, y Anterior, z Superior) by pure axis
permutations and flips (no resampling: every voxel value is kept, only its index moves); the
file's own axis codes are kept on the case (``Case.orientation``) so that anything written
for the case can be put back in the file's voxel order and written with the file's affine.

Arrays here are in the package's layout ``(..., D, H, W)`` = ``(..., z, y, x)`` of the NIfTI
array (see :class:`strokelrp.data.isles2017.Case`); axis codes are nibabel's (``"LPS"``: the
file's x runs to the patient's Left, y Posterior, z Superior).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nibabel import orientations as nio

CANONICAL = "RAS"
"""The orientation every case is held in (nibabel's closest-canonical frame)."""


def axis_codes(affine: np.ndarray) -> str:
    """The file's orientation as three letters (``"LPS"``), from its voxel-to-world affine.

    For an oblique affine each voxel axis gets the world axis it is closest to. Raises
    ``ValueError`` for an affine that gives an axis no direction (singular or not finite).
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError("the affine is not a finite 4x4 matrix, so its orientation is unknown")
    ornt = nio.io_orientation(affine)
    if np.isnan(ornt).any():
        raise ValueError("the affine gives a voxel axis no direction (singular matrix)")
    return "".join(nio.ornt2axcodes(ornt))


def _transform(source: str, target: str) -> np.ndarray:
    """nibabel ornt (3, 2) taking voxel order ``source`` to ``target`` (axis codes)."""
    return nio.ornt_transform(nio.axcodes2ornt(tuple(source)), nio.axcodes2ornt(tuple(target)))


def _apply(volume: np.ndarray, source: str, target: str) -> np.ndarray:
    """Reorder the last three axes (z, y, x) of ``volume`` from ``source`` to ``target``."""
    if source == target:
        return volume
    vol = np.asarray(volume)
    if vol.ndim < 3:
        raise ValueError(f"expected a volume (..., D, H, W), got shape {vol.shape}")
    # (..., z, y, x) -> (x, y, z, ...), the order nibabel's apply_orientation works on
    xyz_first = np.moveaxis(vol, (-1, -2, -3), (0, 1, 2))
    moved = nio.apply_orientation(xyz_first, _transform(source, target))
    return np.ascontiguousarray(np.moveaxis(moved, (0, 1, 2), (-1, -2, -3)))


def to_canonical(volume: np.ndarray, codes: str) -> np.ndarray:
    """``(..., D, H, W)`` in a file's voxel order (axis ``codes``) -> the same voxels in RAS."""
    return _apply(volume, codes, CANONICAL)


def to_file_order(volume: np.ndarray, codes: str) -> np.ndarray:
    """Inverse of :func:`to_canonical`: RAS ``(..., D, H, W)`` -> the file's voxel order."""
    return _apply(volume, CANONICAL, codes)


def _permute(values_xyz: Sequence, source: str, target: str) -> tuple:
    out: list = [None, None, None]
    for old, (new, _flip) in enumerate(_transform(source, target)):
        out[int(new)] = values_xyz[old]
    return tuple(out)


def canonical_axes(values_xyz: Sequence, codes: str) -> tuple:
    """Per-axis values (x, y, z) of the file (grid, voxel sizes) -> the same in RAS order."""
    return _permute(values_xyz, codes, CANONICAL)


def file_axes(values_xyz: Sequence, codes: str) -> tuple:
    """Inverse of :func:`canonical_axes`: per-axis values in RAS order -> the file's order."""
    return _permute(values_xyz, CANONICAL, codes)


def canonical_affine(affine: np.ndarray, grid_xyz: Sequence[int], codes: str) -> np.ndarray:
    """The voxel-to-world affine of the RAS-reoriented grid (the same world positions).

    ``grid_xyz`` is the file's grid (x, y, z); voxel ``v`` of the reoriented array lies where
    voxel ``M v`` of the file lies, so the result is ``affine @ M``.
    """
    ornt = _transform(codes, CANONICAL)
    return np.asarray(affine, dtype=np.float64) @ nio.inv_ornt_aff(ornt, tuple(grid_xyz))
