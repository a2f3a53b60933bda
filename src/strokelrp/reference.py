"""Reference inputs: what "no lesion evidence" looks like, for reference-based explanations.

An explanation relative to a reference b says how the input's difference from b moves the
target score: evidence for the lesion *relative to b*. Against the zero input (the default of
plain gradient x input and LRP), low ADC and low rCBF (which are the infarct's evidence)
read as evidence against it; against healthy tissue they read the right way round
(docs/assess.md, "References"). :data:`REFERENCES`:

- ``healthy``: inside the brain, each channel's mean over healthy brain (brain minus the
  target dilated by :data:`strokelrp.analysis.removal.HEALTHY_GROW` voxels); outside the brain
  x itself (no difference, no relevance);
- ``mirror``: the contralateral hemisphere: x flipped left-right (the last array axis, x of the
  RAS grid) about the mid-sagittal plane that best matches the brain mask with its mirror
  image (:func:`midsagittal_plane`); voxels whose mirror falls outside the grid or outside
  the brain take the healthy mean; outside the brain x itself;
- ``mean``: each channel's mean over the whole volume; ``zero``: 0;
- an array (C, *S) or (1, C, *S) on the input's grid, or a ``.npy`` / NIfTI file holding one
  (a NIfTI 4-D volume stored (*S, C) is read channel-last).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from strokelrp.analysis.removal import healthy_mean
from strokelrp.core.masks import brain_mask
from strokelrp.errors import StrokeLRPError

REFERENCES: tuple[str, ...] = ("healthy", "mirror", "mean", "zero")
"""The references chosen by rule (beside an array or a file)."""

DEFAULT_REFERENCE = "healthy"
"""``explain``'s reference for the methods that take one: chosen by the trust battery on demo
run A's held-out cases (docs/method.md, "Trust, round 2"): against the healthy mean the
infarct's low ADC and rCBF read as evidence for the lesion, with unchanged faithfulness."""


def midsagittal_plane(brain: np.ndarray, search: int = 8) -> float:
    """The mirror plane along the last axis of ``brain`` (*S) bool: the centre c (in voxels,
    a multiple of 0.5) whose reflection i -> 2c - i maps the brain mask onto itself best
    (most voxels shared), searched within ``search`` voxels of the mask's centroid."""
    n = brain.shape[-1]
    if not brain.any():
        return (n - 1) / 2
    profile = brain.reshape(-1, n)
    centroid = float(np.nonzero(profile)[1].mean())
    best, best_overlap = centroid, -1
    for twice in range(int(2 * (centroid - search)), int(2 * (centroid + search)) + 1):
        flipped = _reflect(brain, twice / 2)
        overlap = int((brain & flipped).sum())
        if overlap > best_overlap:
            best, best_overlap = twice / 2, overlap
    return best


def _reflect(v: np.ndarray, centre: float, fill: Any = False) -> np.ndarray:
    """v (..., n) reflected along its last axis about ``centre``: out[..., i] = v[..., 2c - i]
    where that index is on the grid, else ``fill``."""
    n = v.shape[-1]
    source = np.rint(2 * centre - np.arange(n)).astype(int)
    inside = (source >= 0) & (source < n)
    out = np.full(v.shape, fill, dtype=v.dtype)
    out[..., inside] = v[..., source[inside]]
    return out


def _array(reference: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A given reference (array, tensor or file path) as (C, *S) float64 of ``shape``."""
    if isinstance(reference, str | Path):
        path = Path(reference)
        if not path.is_file():
            raise StrokeLRPError(f"reference file {path} does not exist")
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            import nibabel as nib

            try:
                arr = np.asarray(nib.load(str(path)).dataobj)
            except Exception as err:  # nibabel's own errors for a file that is not NIfTI
                raise StrokeLRPError(f"reference file {path}: cannot read it ({err})") from err
            if arr.ndim == len(shape) and arr.shape[-1] == shape[0]:
                arr = np.moveaxis(arr, -1, 0)
        where = f"reference file {path}"
    else:
        arr = reference.detach().cpu().numpy() if isinstance(reference, Tensor) else reference
        arr = np.asarray(arr)
        where = "reference array"
    if arr.ndim == len(shape) + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if tuple(arr.shape) != tuple(shape):
        raise StrokeLRPError(
            f"{where} must have the input's shape {tuple(shape)} (C, spatial), "
            f"got {tuple(arr.shape)}"
        )
    return arr.astype(np.float64)


def check_reference_name(reference: Any) -> None:
    """One error when ``reference`` is a string that is neither a name of :data:`REFERENCES`
    nor a file name (no suffix), or names a file that does not exist (checked before any
    work); arrays and tensors pass (their shape is checked against the input's)."""
    if not isinstance(reference, str | Path) or str(reference) in REFERENCES:
        return
    if not Path(reference).suffix:
        raise StrokeLRPError(
            f"reference must be one of {', '.join(REFERENCES)}, an array or a .npy / "
            f"NIfTI file, got {str(reference)!r}"
        )
    if not Path(reference).is_file():
        raise StrokeLRPError(f"reference file {reference} does not exist")


def reference_array(x: np.ndarray, reference: Any, target: np.ndarray | None = None) -> np.ndarray:
    """The reference b (C, *S) float64 for x (C, *S): a name of :data:`REFERENCES` (``target``
    (*S) bool, the predicted lesion, for ``healthy`` and ``mirror``; None = no lesion), an
    array / tensor, or a file path."""
    x = np.asarray(x, dtype=np.float64)
    if not isinstance(reference, str) or reference not in REFERENCES:
        check_reference_name(reference)
        return _array(reference, x.shape)
    shape = (-1, *([1] * (x.ndim - 1)))
    if reference == "zero":
        return np.zeros_like(x)
    if reference == "mean":
        return np.broadcast_to(x.reshape(x.shape[0], -1).mean(1).reshape(shape), x.shape).copy()
    brain = brain_mask(x)
    lesion = np.zeros(x.shape[1:], bool) if target is None else np.asarray(target, bool)
    healthy = np.broadcast_to(healthy_mean(x, brain, lesion).reshape(shape), x.shape)
    out = x.copy()
    if reference == "healthy":
        out[:, brain] = healthy[:, brain]
        return out
    centre = midsagittal_plane(brain)
    mirrored = _reflect(x, centre, np.nan)
    mirror_brain = _reflect(brain, centre, False)
    usable = brain & mirror_brain & np.isfinite(mirrored).all(0)
    out[:, brain] = healthy[:, brain]
    out[:, usable] = mirrored[:, usable]
    return out


def reference_tensor(x: Tensor, reference: Any, weights: Tensor | None = None) -> Tensor:
    """:func:`reference_array` for x (1, C, *S) as a tensor like x; the target is where the
    target weights W (1, K, *S) are non-zero in any class."""
    if isinstance(reference, Tensor) and reference.shape == x.shape:
        return reference.to(x)
    target = None if weights is None else (weights[0] != 0).any(0).cpu().numpy()
    b = reference_array(x[0].detach().double().cpu().numpy(), reference, target)
    return torch.from_numpy(b)[None].to(x)
