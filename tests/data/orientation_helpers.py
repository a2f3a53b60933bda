"""Write one ISLES tree again in another voxel orientation, by explicit index maps.

Independent of :mod:`strokelrp.core.orientation`: each orientation is a hand-written integer
matrix ``M`` (4x4) mapping a voxel index ``v`` of the new file to the index ``M v`` of the
source file (synthetic cases are stored LPS), so the new array is ``B[v] = A[M v]`` and the
new affine ``A_affine @ M`` puts every voxel at the same place in the world.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np


def index_map(codes: str, grid: tuple[int, int, int]) -> np.ndarray:
    """``M`` for a new file stored ``codes`` from an LPS source of grid (nx, ny, nz)."""
    nx, ny, nz = grid
    maps = {
        # new axes (x, y, z) -> source index; rows give source (x, y, z) from new (i, j, k)
        "LPS": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]],
        "LAS": [[1, 0, 0, 0], [0, -1, 0, ny - 1], [0, 0, 1, 0]],
        "RAS": [[-1, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0]],
        # A along i (source y reversed), S along j (source z), R along k (source x reversed)
        "ASR": [[0, 0, -1, nx - 1], [-1, 0, 0, ny - 1], [0, 1, 0, 0]],
        # I along i (source z reversed), L along j (source x), A along k (source y reversed)
        "ILA": [[0, 1, 0, 0], [0, 0, -1, ny - 1], [-1, 0, 0, nz - 1]],
    }
    return np.array([*maps[codes], [0, 0, 0, 1]], dtype=np.int64)


def new_grid(m: np.ndarray, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The new file's grid: new axis i has the length of the source axis it reads."""
    return tuple(int(grid[int(np.flatnonzero(m[:3, i])[0])]) for i in range(3))  # type: ignore[return-value]


def gather(source: np.ndarray, m: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """``B[v] = A[M v]`` for every voxel v of the new grid (extra trailing axes kept)."""
    shape = new_grid(m, grid)
    idx = np.indices(shape).reshape(3, -1)
    src = m[:3, :3] @ idx + m[:3, 3:4]
    return source[src[0], src[1], src[2]].reshape(*shape, *source.shape[3:])


def reorient_tree(source_root: Path, out: Path, codes: str) -> Path:
    """A copy of ``source_root`` with every NIfTI file stored in orientation ``codes``."""
    shutil.copytree(source_root, out)
    for path in out.rglob("*.nii"):
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        m = index_map(codes, img.shape[:3])
        affine = img.affine @ m
        new = nib.Nifti1Image(np.ascontiguousarray(gather(data, m, img.shape[:3])), affine)
        new.header.set_data_dtype(img.get_data_dtype())
        new.header.set_qform(affine, code=1)
        new.header.set_sform(affine, code=1)
        path.unlink()
        nib.save(new, str(path))
    return out
