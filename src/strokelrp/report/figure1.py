"""The paper's figure 1 for one case: heatmaps per filter setting, overlays, truth, prediction.

Layout (K settings, e.g. raw, pass (0, 0.4), clamp (0, 0.2) as in the paper):

- row 1: the K heatmaps of one modality channel on one axial slice, each normalised to
  [-1, 1] by N = max |R_c| over the whole 3-D channel (the paper's normalisation; N and the
  slice z where it occurs are given in each title, since a spike may lie on another slice),
  diverging colour map centred on 0, one shared colour bar;
- row 2: the same heatmaps over the modality slice, each voxel's opacity growing with its
  normalised amplitude (0.9 sqrt|R_c / N|), so weak relevance lets the anatomy show through;
- row 3: ground truth, prediction and the modality slice.

All arrays must be in one grid (e.g. the case's native grid), ``spacing`` (x, y, z) in mm
being that grid's voxel size. Given the grid's ``affine``, every panel is an axial slice in
the radiological convention of ITK-SNAP and FSLeyes (anterior up, the patient's right on the
screen's left; :mod:`strokelrp.report.display`), with A / P / R / L on its edges and the
brain's outline (where the perfusion maps are non-zero) drawn over it; the aspect ratio
follows the voxel size. Without an affine the array is shown as stored (row 0 at the top) and
the panels say that the orientation is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from strokelrp.atomic import atomic_path
from strokelrp.core.masks import brain_mask
from strokelrp.report.display import display_for, label_edges, outline

DIVERGING_CMAP = "RdBu_r"
"""ColorBrewer red-blue (colour-blind safe): red = positive relevance, blue = negative."""

_AS_STORED = np.diag([-1.0, -1.0, 1.0, 1.0])
"""An affine under which the display shows the array as stored (row 0 at the top)."""

_OVERLAY_ALPHA = 0.9
"""Opacity of a voxel with |R_c| / N = 1 in the overlays; it falls as sqrt of the amplitude."""


def _as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def largest_area_slice(mask: Any) -> int | None:
    """Index z of the slice with the most foreground voxels in a (D, H, W) mask; None if empty."""
    m = _as_numpy(mask).astype(bool)
    if m.ndim != 3:
        raise ValueError(f"expected a (D, H, W) mask, got shape {m.shape}")
    areas = m.reshape(m.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas)) if areas.max(initial=0) > 0 else None


def default_slice(label: Any | None, prediction: Any | None, depth: int) -> int:
    """Largest lesion area in the ground truth, else in the prediction, else the middle slice."""
    for mask in (label, prediction):
        if mask is not None:
            z = largest_area_slice(mask)
            if z is not None:
                return z
    return depth // 2


def normalise_per_channel(relevance: Any) -> tuple[np.ndarray, np.ndarray]:
    """(C, D, H, W) -> (R_c / max |R_c| in [-1, 1], N (C,) = max |R_c|); zero channels stay 0."""
    r = _as_numpy(relevance).astype(np.float64)
    peaks = np.abs(r.reshape(r.shape[0], -1)).max(axis=1)
    safe = np.where(peaks > 0, peaks, 1.0)
    return (r / safe[:, None, None, None]).astype(np.float32), peaks


def _save_png_atomic(fig: Any, path: Path, dpi: int) -> Path:
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def _shown_maps(
    relevances: Sequence[tuple[str, Any]],
    img: np.ndarray,
    channel: int,
    peaks: Sequence[float] | None,
) -> list[tuple[str, np.ndarray, float]]:
    """(setting, the shown channel (D, H, W) normalised to [-1, 1], its N) per map."""
    if peaks is not None and len(peaks) != len(relevances):
        raise ValueError(f"got {len(peaks)} peaks for {len(relevances)} relevance maps")
    maps = []
    for k, (setting, rel) in enumerate(relevances):
        r = _as_numpy(rel)
        if r.shape != img.shape:
            raise ValueError(f"relevance '{setting}' shape {r.shape} != image shape {img.shape}")
        if peaks is None:
            normed, measured = normalise_per_channel(r[channel : channel + 1])
            maps.append((setting, normed[0], float(measured[0])))
        else:
            peak = float(peaks[k])
            normed = r[channel].astype(np.float32) / (peak if peak > 0 else 1.0)
            maps.append((setting, np.clip(normed, -1.0, 1.0), peak))
    return maps


class _Sheet:
    """The figure's grid of axial panels: one slice ``z`` of the grid, displayed one way."""

    def __init__(
        self,
        img: np.ndarray,
        channel: int,
        z: int,
        spacing: tuple[float, float, float],
        affine: Any | None,
        n_cols: int,
    ) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import Normalize
        from matplotlib.figure import Figure

        grid = img.shape[1:]
        self.oriented = affine is not None
        self.disp = display_for(affine if self.oriented else _AS_STORED, grid)
        self.s = self.disp.slice_to_display(z)
        _, row_mm, col_mm = self.disp.spacing(tuple(float(v) for v in spacing))  # type: ignore[arg-type]
        aspect = row_mm / col_mm
        self.modality_slice = self.disp.volume(img[channel])[self.s]
        self.brain = self.disp.volume(brain_mask(img))[self.s]
        self.lo, self.hi = float(img[channel].min()), float(img[channel].max())
        height = self.modality_slice.shape[0] * aspect
        width = self.modality_slice.shape[1]
        panel_w = 2.6
        panel_h = panel_w * height / max(width, 1)
        # A bare Agg figure: no pyplot state, no GUI backend, safe in threads and on servers.
        self.fig = Figure(figsize=(panel_w * n_cols + 0.9, (panel_h + 0.55) * 3 + 0.6))
        FigureCanvasAgg(self.fig)
        self.n_cols = n_cols
        self.spec = self.fig.add_gridspec(3, n_cols + 1, width_ratios=[1.0] * n_cols + [0.06])
        self.show = {"origin": "upper", "aspect": aspect, "interpolation": "nearest"}
        self.norm = Normalize(vmin=-1.0, vmax=1.0)

    def panel(self, row: int, col: int, title: str) -> Any:
        ax = self.fig.add_subplot(self.spec[row, col])
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    def finish(self, ax: Any) -> None:
        """The brain's outline and, in a known orientation, the A / P / R / L labels."""
        outline(ax, self.brain)
        if self.oriented:
            label_edges(ax, size=7)

    def blank(self, row: int, first_col: int) -> None:
        for col in range(first_col, self.n_cols):
            self.fig.add_subplot(self.spec[row, col]).axis("off")

    def modality(self, ax: Any) -> None:
        ax.imshow(self.modality_slice, cmap="gray", vmin=self.lo, vmax=self.hi, **self.show)

    def mask(self, ax: Any, mask: np.ndarray) -> None:
        ax.imshow(self.disp.volume(mask)[self.s], cmap="gray", vmin=0, vmax=1, **self.show)


def _heatmap_rows(
    sheet: _Sheet, maps: Sequence[tuple[str, np.ndarray, float]], modality: str
) -> Any:
    """Rows 1 and 2: each map alone, then over the modality slice; -> the colour mappable."""
    mappable = None
    for k, (setting, normed, peak) in enumerate(maps):
        letter = _LETTERS[k]
        peak_z = int(np.unravel_index(np.argmax(np.abs(normed)), normed.shape)[0])
        ax = sheet.panel(
            0, k, f"({letter}) {setting}\nN = max|R_c| = {peak:.4g}\n(largest at z = {peak_z})"
        )
        heat = sheet.disp.volume(normed)[sheet.s]
        mappable = ax.imshow(heat, cmap=DIVERGING_CMAP, norm=sheet.norm, **sheet.show)
        sheet.finish(ax)
        ax = sheet.panel(1, k, f"({letter}2) {setting} over {modality}")
        sheet.modality(ax)
        opacity = _OVERLAY_ALPHA * np.sqrt(np.clip(np.abs(heat), 0.0, 1.0))
        ax.imshow(heat, cmap=DIVERGING_CMAP, norm=sheet.norm, alpha=opacity, **sheet.show)
        sheet.finish(ax)
    for row in (0, 1):
        sheet.blank(row, len(maps))
    return mappable


def _reference_row(
    sheet: _Sheet,
    first: int,
    truth: np.ndarray | None,
    pred: np.ndarray,
    dice: float | None,
    modality: str,
    z: int,
    truth_name: str | None = None,
) -> None:
    """Row 3: ground truth (titled by ``truth_name``), prediction and the modality slice
    (panel letters from ``first``)."""
    named = f" ({truth_name})" if truth_name else ""
    ax = sheet.panel(2, 0, f"({_LETTERS[first]}) ground truth{named}")
    if truth is None:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
    else:
        sheet.mask(ax, truth)
        sheet.finish(ax)
    dice_text = "" if dice is None else f", Dice {dice:.3f}"
    ax = sheet.panel(2, 1, f"({_LETTERS[first + 1]}) prediction{dice_text}")
    sheet.mask(ax, pred)
    sheet.finish(ax)
    if not pred.any():  # an all-black panel would read as "lesion elsewhere"
        text = "empty prediction:\nno lesion voxel\nin the volume"
        ax.text(0.5, 0.5, text, color="white", ha="center", va="center", transform=ax.transAxes)
    ax = sheet.panel(2, 2, f"({_LETTERS[first + 2]}) {modality}, slice z = {z}")
    sheet.modality(ax)
    sheet.finish(ax)
    sheet.blank(2, 3)


def _title(modality: str, case_id: str, subtitle: str, oriented: bool) -> str:
    title = f"LRP relevance, {modality} channel" + (f", case {case_id}" if case_id else "")
    view = (
        "axial, radiological (anterior up, patient right on the left)"
        if oriented
        else "orientation unknown: shown as stored"
    )
    return "\n".join([title, f"{subtitle}; {view}" if subtitle else view])


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def colour_bar_label(reference: str = "zero") -> str:
    """The colour bar's text: the scale and what the sign means relative to ``reference``
    (``none``: a method without a reference, e.g. the gradient)."""
    if reference == "none":
        return "R_c / max|R_c|\nred (+): evidence for the lesion\nblue (-): against"
    return (
        f"R_c / max|R_c|\nred (+): evidence for the lesion\nrelative to the {reference} "
        "reference; blue (-): against"
    )


def plot_figure1(
    path: str | Path,
    relevances: Sequence[tuple[str, Any]],
    image: Any,
    prediction: Any,
    *,
    label: Any | None = None,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    slice_index: int | None = None,
    modality: str | None = None,
    channels: Sequence[str] | None = None,
    case_id: str = "",
    dice: float | None = None,
    subtitle: str = "",
    peaks: Sequence[float] | None = None,
    affine: Any | None = None,
    dpi: int = 120,
    reference: str = "zero",
    truth_name: str | None = None,
) -> Path:
    """Write figure 1 as a PNG and return its path.

    relevances: [(setting label, relevance (C, D, H, W))], e.g. [("raw", R0), ("pass (0, 0.4)",
    R1)]; image: (C, D, H, W) input whose channels are named ``channels`` (the data set's
    names; None: ``ch1``...); prediction and label: (D, H, W) masks; spacing: voxel size
    (x, y, z) in mm of this grid; slice_index: axial slice z (default: largest lesion area);
    modality: the channel shown, by name (None: rCBF for ISLES 2017, else the first); peaks:
    N = max |R_c| of the
    shown channel per map when it was measured elsewhere (e.g. at model scale, before resizing
    to this grid), else the maximum over the given 3-D channel; affine: the grid's NIfTI affine
    (4, 4), which orients the panels (None: shown as stored, orientation unknown); reference:
    what the maps are relative to (named on the colour bar: red is evidence for the lesion
    relative to it, blue against); truth_name: what the ground truth is, in its panel's title
    (None: ISLES 2017's ``OT``).
    """
    from strokelrp.data.layouts import shown_channel
    from strokelrp.data.layouts.base import generic_channels

    if not relevances:
        raise ValueError("plot_figure1 needs at least one relevance map")
    img = _as_numpy(image).astype(np.float32)
    names = tuple(channels) if channels is not None else generic_channels(img.shape[0])
    if len(names) != img.shape[0]:
        raise ValueError(f"{len(names)} channel names for an image of {img.shape[0]} channels")
    try:
        modality = shown_channel(names, modality)
    except Exception as err:
        raise ValueError(str(err)) from None
    channel = names.index(modality)
    pred = _as_numpy(prediction).astype(bool)
    truth = None if label is None else _as_numpy(label).astype(bool)
    grid = img.shape[1:]
    for name, arr in [("prediction", pred), ("label", truth)]:
        if arr is not None and arr.shape != grid:
            raise ValueError(f"{name} shape {arr.shape} differs from the image grid {grid}")
    maps = _shown_maps(relevances, img, channel, peaks)
    depth = grid[0]
    z = default_slice(truth, pred, depth) if slice_index is None else int(slice_index)
    if not 0 <= z < depth:
        raise ValueError(f"slice {z} is outside 0..{depth - 1}")

    sheet = _Sheet(img, channel, z, spacing, affine, n_cols=max(len(maps), 3))
    mappable = _heatmap_rows(sheet, maps, modality)
    _reference_row(sheet, len(maps), truth, pred, dice, modality, z, truth_name)
    cax = sheet.fig.add_subplot(sheet.spec[0:2, sheet.n_cols])
    bar = sheet.fig.colorbar(mappable, cax=cax)
    bar.set_label(colour_bar_label(reference), fontsize=7)
    sheet.fig.suptitle(_title(modality, case_id, subtitle, sheet.oriented), fontsize=10)
    return _save_png_atomic(sheet.fig, Path(path), dpi)
