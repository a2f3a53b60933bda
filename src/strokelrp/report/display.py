"""Axial slices shown the way ITK-SNAP and FSLeyes show them (radiological convention).

Screen rows run from anterior (top) to posterior (bottom), screen columns from the patient's
right (left edge) to the patient's left (right edge); slices are stacked inferior to superior.
The transform from a case's array to this display comes from its affine (``nibabel``'s
orientation codes), never from an assumed orientation, so it holds for LPS, RAS or any other
voxel order (including volumes whose slice axis is not the array's first one).

Arrays are (D, H, W) = NIfTI voxel axes (z, y, x), as :class:`strokelrp.data.layouts.Case`
holds them; channels (C, D, H, W) are transformed per channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from nibabel import orientations

DISPLAY_CODES = ("S", "P", "L")
"""Where (slice, row, column) indices grow towards: superior, posterior, patient left."""
EDGE_LETTERS = {"top": "A", "bottom": "P", "left": "R", "right": "L"}
"""The patient direction at each edge of an axial panel in the radiological convention."""


@dataclass(frozen=True)
class Display:
    """Array (D, H, W) -> display (slice, row, column), from a case's affine.

    ``transform``: a nibabel orientation transform for the (D, H, W) axes; ``shape``: the array
    shape it was made for; ``codes``: the array axes' nibabel codes (e.g. ("S", "P", "L")).
    """

    transform: np.ndarray
    shape: tuple[int, int, int]
    codes: tuple[str, str, str]

    def volume(self, array: Any) -> np.ndarray:
        """(D, H, W) or (C, D, H, W) -> the same data in display order (a view where possible)."""
        a = np.asarray(array)
        if a.shape[-3:] != self.shape:
            raise ValueError(f"array {a.shape} does not have the grid {self.shape}")
        if a.ndim == 3:
            return orientations.apply_orientation(a, self.transform)
        if a.ndim == 4:
            return np.stack([orientations.apply_orientation(c, self.transform) for c in a])
        raise ValueError(f"expected (D, H, W) or (C, D, H, W), got shape {a.shape}")

    def _slice_axis(self) -> tuple[int, bool]:
        """(display slice axis fed by array axis 0 -> must be 0, flipped?)."""
        out_axis, flip = self.transform[0]
        if int(out_axis) != 0:
            raise ValueError(
                f"the array's first axis runs {self.codes[0]}, not inferior-superior: an array "
                "slice is not an axial slice; choose the slice in display space"
            )
        return 0, bool(flip < 0)

    def slice_to_display(self, z: int) -> int:
        """Array slice index z (first axis) -> display slice index."""
        _, flipped = self._slice_axis()
        return self.shape[0] - 1 - int(z) if flipped else int(z)

    def slice_to_array(self, s: int) -> int:
        """Display slice index -> the array's slice index z (the inverse of the above)."""
        return self.slice_to_display(s)

    def spacing(self, spacing_xyz: tuple[float, float, float]) -> tuple[float, float, float]:
        """Voxel size (x, y, z) in mm -> size along (slice, row, column) of the display."""
        per_axis = np.array([spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]], dtype=float)
        out = np.empty(3)
        for axis, (target, _flip) in enumerate(self.transform):
            out[int(target)] = per_axis[axis]
        return (float(out[0]), float(out[1]), float(out[2]))


def display_for(affine: Any, shape: tuple[int, ...]) -> Display:
    """The display transform of a (D, H, W) array whose NIfTI affine is ``affine`` (4, 4).

    The affine maps voxel (x, y, z) = array index (w, h, d) to RAS+ millimetres.
    """
    aff = np.asarray(affine, dtype=float)
    if aff.shape != (4, 4):
        raise ValueError(f"affine must be 4 x 4, got {aff.shape}")
    shape3 = tuple(int(s) for s in shape[-3:])
    if len(shape3) != 3:
        raise ValueError(f"need a (D, H, W) shape, got {shape}")
    voxel = orientations.io_orientation(aff)  # rows: NIfTI voxel axes x, y, z
    array = voxel[::-1]  # rows: array axes (z, y, x)
    transform = orientations.ornt_transform(array, orientations.axcodes2ornt(DISPLAY_CODES))
    codes = tuple(orientations.ornt2axcodes(array))
    return Display(transform, shape3, codes)  # type: ignore[arg-type]


def label_edges(ax: Any, *, colour: str = "white", size: float = 8.0) -> None:
    """Write A / P / R / L at the top, bottom, left and right edges of an axial panel."""
    box = {"boxstyle": "round,pad=0.1", "facecolor": "black", "alpha": 0.45, "linewidth": 0}
    places = {
        "top": (0.5, 0.985, "center", "top"),
        "bottom": (0.5, 0.015, "center", "bottom"),
        "left": (0.015, 0.5, "left", "center"),
        "right": (0.985, 0.5, "right", "center"),
    }
    for edge, (x, y, ha, va) in places.items():
        ax.text(
            x,
            y,
            EDGE_LETTERS[edge],
            transform=ax.transAxes,
            ha=ha,
            va=va,
            color=colour,
            fontsize=size,
            fontweight="bold",
            bbox=box,
        )


def outline(ax: Any, mask: np.ndarray, *, colour: str = "#E69F00", width: float = 0.7) -> None:
    """Draw the contour of a 2-D display-order ``mask`` (row, column) on ``ax``."""
    m = np.asarray(mask, dtype=float)
    if m.min(initial=0.0) == m.max(initial=0.0):
        return  # nothing or everything: no contour to draw
    ax.contour(m, levels=[0.5], colors=[colour], linewidths=width)
