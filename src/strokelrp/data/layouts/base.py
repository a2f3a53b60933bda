"""What every data layout shares: the :class:`Case`, the reader interface, the checked read.

A layout (:mod:`strokelrp.data.layouts`) only finds files: its :meth:`Layout.discover` turns a
data root into :class:`CaseFolder` objects whose ``files`` map channel keys (and the label key)
to NIfTI paths and whose :class:`ReadSpec` says how to read them (channel names in network
order, which label values are lesion, which channels may be resampled onto the reference grid,
which frame of a 4-D file a channel is). :func:`read_case` then reads any layout the same way:

1. every chosen file's header is checked (no voxels read); each grid is compared with the
   reference channel's grid in RAS order, so a channel stored in another voxel order on the
   same world grid is an exact flip/permutation, and a channel the spec allows to be resampled
   (FLAIR of ISLES 2022) is resampled trilinearly onto the reference grid with the world
   affines (recorded in ``Case.resampled``); any other grid mismatch is a problem;
2. a case whose float32 array would exceed the memory budget is refused before any voxel
   is read (:data:`DEFAULT_BUDGET_BYTES`, ``STROKELRP_MEMORY_BUDGET`` in bytes overrides it);
3. the channels are read one at a time, each cast straight into its slot of the final
   float32 ``(C, D, H, W)`` array (one copy of the case; only one channel's file buffer is
   alive besides it) and its values checked.

Every problem is collected first, one line each: ``case ID: FILE: what is wrong``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from strokelrp.core.orientation import (
    CANONICAL,
    axis_codes,
    canonical_affine,
    canonical_axes,
    file_axes,
    to_canonical,
)
from strokelrp.data.nifti_file import NiftiHeader, NiftiProblem, read_header, read_nifti
from strokelrp.errors import DataError

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
AFFINE_TOLERANCE_MM = 0.05
"""Largest allowed shift (mm) of any grid corner between two channels of one case."""
DEFAULT_BUDGET_BYTES = 8 << 30
"""Largest float32 case array read (8 GiB); ``STROKELRP_MEMORY_BUDGET`` (bytes) overrides."""
FLOAT32_EXACT = 1 << 24
"""Integers above this magnitude are not all representable in float32."""


def memory_budget() -> int:
    """The memory budget in bytes for one case's array (environment or default)."""
    raw = os.environ.get("STROKELRP_MEMORY_BUDGET")
    if raw:
        try:
            return max(1, int(float(raw)))
        except ValueError:
            log.warning("STROKELRP_MEMORY_BUDGET=%r is not a number of bytes; ignored", raw)
    return DEFAULT_BUDGET_BYTES


# ------------------------------------------------------------------------------- the case


def generic_channels(n: int) -> tuple[str, ...]:
    """Names for ``n`` channels a case was built with by hand: ``ch1`` ... ``chN``."""
    return tuple(f"ch{i + 1}" for i in range(n))


@dataclass(repr=False, eq=False)
class Case:
    """One case, values as stored (no normalisation), voxels in RAS order.

    ``image`` is float32 ``(C, D, H, W)`` with ``image[c, z, y, x]`` = voxel ``(x, y, z)`` of
    channel ``channels[c]`` after reorienting it to RAS (x towards the patient's right, y
    anterior, z superior; pure axis flips and permutations); ``channels`` are the data set's
    names (``ADC``...; ``DWI``, ``ADC``, ``FLAIR``; whatever nnU-Net's ``channel_names`` says);
    a case built by hand without them gets ``ch1``... ``label`` is the uint8 0/1 lesion mask
    ``(D, H, W)`` in the same order, or ``None`` without ground truth; ``affine`` (mm) maps the
    RAS voxel grid to the world and ``spacing`` is its voxel size in mm as (x, y, z). The files'
    own geometry is kept for writing outputs back: ``orientation`` is their axis codes
    (``"LPS"``...), ``native_affine`` the reference file's affine and ``header`` its checked
    NIfTI-1 header; ``paths`` maps channel names and the label key to files; ``resampled`` maps
    a channel resampled onto the reference grid to a note saying from what grid;
    ``layout`` names the layout the case was read from.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple[float, float, float]
    paths: dict[str, Path] = field(default_factory=dict)
    orientation: str = CANONICAL
    native_affine: np.ndarray | None = None
    channels: tuple[str, ...] = ()
    resampled: dict[str, str] = field(default_factory=dict)
    layout: str = ""

    def __post_init__(self) -> None:
        n = int(self.image.shape[0])
        if not self.channels:
            self.channels = generic_channels(n)
        self.channels = tuple(str(c) for c in self.channels)
        if len(self.channels) != n:
            raise ValueError(
                f"case {self.case_id}: {len(self.channels)} channel names for {n} channels"
            )

    @property
    def grid(self) -> tuple[int, int, int]:
        """The RAS voxel grid as (x, y, z) = (W, H, D)."""
        d, h, w = self.image.shape[1:]
        return (w, h, d)

    @property
    def native_grid(self) -> tuple[int, int, int]:
        """The files' grid (x, y, z), in their own voxel order."""
        return file_axes(self.grid, self.orientation)  # type: ignore[return-value]

    @property
    def native_spacing(self) -> tuple[float, float, float]:
        """The files' voxel size in mm along their own (x, y, z)."""
        return file_axes(self.spacing, self.orientation)  # type: ignore[return-value]

    @property
    def lesion_ml(self) -> float | None:
        """Volume of the lesion mask in mL, or ``None`` without one."""
        if self.label is None:
            return None
        return lesion_volume_ml(self.label, self.spacing)

    def __repr__(self) -> str:
        lesion = "no label" if self.label is None else f"lesion {self.lesion_ml:.2f} mL"
        return (
            f"Case({self.case_id!r}, grid {format_grid(self.grid)}, "
            f"spacing {format_spacing(self.spacing)}, {lesion}, stored {self.orientation}, "
            f"channels {'/'.join(self.channels)})"
        )


@dataclass
class CaseReport:
    """One row of ``inspect``: what was found for a case, and everything wrong with it."""

    case_id: str
    folder: str
    grid: tuple[int, int, int] | None
    spacing: tuple[float, float, float] | None
    lesion_ml: float | None
    has_label: bool
    problems: list[str]
    orientation: str | None = None
    """The files' axis codes (``"LPS"``...), ``None`` when the case could not be read."""
    channels: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    """What was done to read the case (a channel resampled, labels rounded...)."""
    label_key: str = "label"
    """What the layout calls its label (``OT``, ``mask``, ``label``)."""

    @property
    def status(self) -> str:
        return "ok" if not self.problems else "invalid"

    def as_dict(self) -> dict:
        return {
            "case_id": self.case_id,
            "folder": self.folder,
            "channels": list(self.channels),
            "grid": list(self.grid) if self.grid else None,
            "spacing_mm": [round(s, 4) for s in self.spacing] if self.spacing else None,
            "lesion_ml": None if self.lesion_ml is None else round(self.lesion_ml, 3),
            "has_label": self.has_label,
            "orientation": self.orientation,
            "status": self.status,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ReadSpec:
    """How the files of a case are read into a :class:`Case`.

    ``channels``: channel keys in network order (also the names the case carries);
    ``label``: the key of the label file; ``names``: key -> how problems name it (``MR_ADC``);
    ``lesion_values``: label values read as lesion (others are background); ``label_values``:
    the values a label may hold (``None``: 0 and 1); ``reference``: the channel whose grid is
    the case's (``None``: the grid most channels share); ``resample``: channels resampled onto
    the reference grid when their grid differs; ``frames``: key -> frame of a 4-D file.
    """

    channels: tuple[str, ...]
    label: str = "label"
    names: Mapping[str, str] = field(default_factory=dict)
    lesion_values: tuple[int, ...] = (1,)
    label_values: tuple[int, ...] | None = None
    reference: str | None = None
    resample: frozenset[str] = frozenset()
    frames: Mapping[str, int] = field(default_factory=dict)

    def name(self, key: str) -> str:
        return self.names.get(key, key)


@dataclass
class CaseFolder:
    """A discovered case and the files found for it, before anything is read."""

    case_id: str
    path: Path
    files: dict[str, list[Path]]
    """Channel or label key -> image files found for it (normally one)."""
    empty_folders: dict[str, list[Path]]
    """Key -> sub-folders named for it that hold no .nii/.nii.gz file."""
    other_files: dict[str, list[Path]]
    """Key -> files in those sub-folders that are not .nii/.nii.gz."""
    trouble: list[tuple[Path, str]] = field(default_factory=list)
    """Problems met while listing the folder: unlistable folders, symbolic-link loops."""
    spec: ReadSpec | None = None
    """How to read the files (``None``: ISLES 2017's)."""
    layout: str = "isles2017"
    missing: dict[str, str] = field(default_factory=dict)
    """Key -> problem text for a file the layout expected and did not find."""
    split: str = ""
    """``"test"`` for a case of a data set's test split (no labels by design), else ``""``."""


# ---------------------------------------------------------------------------- formatting


def format_grid(grid: Iterable[int] | None) -> str:
    return "-" if grid is None else "x".join(str(int(g)) for g in grid)


def format_spacing(spacing: Iterable[float] | None) -> str:
    return "-" if spacing is None else "x".join(f"{s:.2f}" for s in spacing) + " mm"


def lesion_volume_ml(label: np.ndarray, spacing: Iterable[float]) -> float:
    """Volume of the non-zero voxels of ``label`` in mL (spacing in mm)."""
    return float(np.count_nonzero(label)) * float(np.prod(list(spacing))) / 1000.0


def case_sort_key(case_id: str) -> tuple:
    """Natural order: ``2`` before ``10``, numbers before names, then by name."""
    parts = re.split(r"(\d+)", case_id)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p)


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as posix text (as problems name files), else in full."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------ file listing


def is_ignored(path: Path) -> bool:
    """Hidden files and folders, ``._*`` resource forks and ``__MACOSX``."""
    name = path.name
    return name.startswith(".") or name == "__MACOSX"


def nifti_stem(name: str) -> str | None:
    """``name`` without ``.nii``/``.nii.gz`` (any case), or ``None`` for another file."""
    low = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return None


def list_folder(folder: Path, trouble: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The sorted entries of ``folder``; a folder that cannot be listed is noted in ``trouble``."""
    try:
        return sorted(folder.iterdir())
    except PermissionError:
        reason = "permission denied: the folder cannot be listed"
    except OSError as err:
        reason = f"the folder cannot be listed ({err.strerror or err})"
    if trouble is not None:
        trouble.append((folder, reason))
    return []


def real_path(path: Path) -> Path | None:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None


def is_broken_link(path: Path) -> bool:
    """A symbolic link that reaches no file or folder (dangling, or a loop)."""
    return path.is_symlink() and real_path(path) is None


def files_under(
    folder: Path, trouble: list[tuple[Path, str]], seen: frozenset[Path] = frozenset()
) -> Iterator[Path]:
    """Files below ``folder`` (any depth), skipping hidden, ``._*`` and ``__MACOSX`` entries.

    Broken links are yielded (the reader names them); a link back to a folder on the way down
    is noted in ``trouble`` and not followed.
    """
    real = real_path(folder)
    seen = seen | {real} if real is not None else seen
    for child in list_folder(folder, trouble):
        if is_ignored(child):
            continue
        if child.is_dir():
            target = real_path(child)
            if target is not None and target in seen:
                trouble.append((child, "symbolic link loop: points back to an enclosing folder"))
            else:
                yield from files_under(child, trouble, seen)
        elif child.is_file() or is_broken_link(child):
            yield child


# ----------------------------------------------------------------------- the interface


class Layout(ABC):
    """One way of arranging a data set on disk: find it, list its cases, say how to read them.

    Subclasses set ``name`` (the registry key and ``--layout`` value) and ``title``; options
    common to several layouts: ``channels`` (the channel names to use, in order; ``None``: the
    layout's default) and ``lesion`` (the label class read as lesion, by name or value).
    """

    name: ClassVar[str]
    title: ClassVar[str]

    def __init__(self, channels: Iterable[str] | None = None, lesion: str | None = None) -> None:
        self.wanted = None if channels is None else tuple(channels)
        self.lesion = lesion

    @classmethod
    @abstractmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` looks like this layout (cheap: names only, no image read)."""

    @abstractmethod
    def discover(self, root: Path) -> list[CaseFolder]:
        """The cases under ``root``; raises ``StrokeLRPError`` when there is none."""

    @abstractmethod
    def channel_names(self, root: Path) -> tuple[str, ...]:
        """Every channel this layout can read from ``root`` (any of them may be chosen with
        ``channels``), in the layout's order."""

    def choose_channels(self, available: Iterable[str], where: str) -> tuple[str, ...]:
        """The channels a run uses: the user's choice (checked, matched case-insensitively)
        or all ``available`` ones."""
        from strokelrp.errors import StrokeLRPError

        available = tuple(available)
        if self.wanted is None:
            return available
        lookup = {a.lower(): a for a in available}
        unknown = [c for c in self.wanted if c.lower() not in lookup]
        if unknown:
            raise StrokeLRPError(
                f"{where}: unknown channel(s) {', '.join(unknown)}; the data has "
                f"{', '.join(available)}"
            )
        return tuple(lookup[c.lower()] for c in self.wanted)


# -------------------------------------------------------------------------- reading


class Problems(list):
    """The problems of one case, each as ``case ID: PATH (relative to root): text``."""

    def __init__(self, case_id: str, root: Path) -> None:
        super().__init__()
        self.case_id, self.root = case_id, root

    def add(self, path: Path | str, text: str) -> None:
        rel = relative_name(path, self.root) if isinstance(path, Path) else path
        self.append(f"case {self.case_id}: {rel}: {text}")


def spec_of(folder: CaseFolder) -> ReadSpec:
    if folder.spec is None:
        raise ValueError(f"case {folder.case_id}: the layout gave no read spec")
    return folder.spec


def choose_files(folder: CaseFolder, root: Path, problems: Problems) -> dict[str, Path]:
    """The one image per channel (and the label, if any): key -> path; problems otherwise
    (several images, an empty folder, a stray non-NIfTI file, a missing channel)."""
    spec = spec_of(folder)
    where = relative_name(folder.path, root)
    for path, text in folder.trouble:
        problems.add(path, text)
    blocked = {path for path, _ in folder.trouble}  # said once, not again as "no image"
    chosen: dict[str, Path] = {}
    for key in (*spec.channels, spec.label):
        token = spec.name(key)
        found = list(dict.fromkeys(folder.files.get(key, [])))
        for sub in folder.empty_folders.get(key, []):
            if sub in blocked:
                continue
            extra = [p.name for p in folder.other_files.get(key, []) if sub in p.parents]
            note = f" (found {', '.join(extra)})" if extra else ""
            problems.add(sub, f"folder for {token} holds no .nii or .nii.gz image{note}")
        if len(found) > 1:
            names = ", ".join(relative_name(p, root) for p in found)
            problems.add(folder.path, f"{len(found)} images for {token}: {names}")
            continue
        if found:
            chosen[key] = found[0]
        elif not folder.empty_folders.get(key) and folder.path not in blocked:
            stray = [relative_name(p, root) for p in folder.other_files.get(key, [])]
            if stray:
                problems.add(
                    where, f"no .nii or .nii.gz image for {token} (found {', '.join(stray)})"
                )
            elif key in folder.missing:
                problems.add(where, folder.missing[key])
            elif key != spec.label:
                problems.add(
                    where, f"missing modality {token} (no file or folder named with {token})"
                )
    return chosen


def _unexpected(err: Exception) -> str:
    # not foreseen by nifti_file's checks: still one line, never a traceback (the fuzz
    # benchmark counts these lines as "unexpected")
    return f"could not be read (unexpected {type(err).__name__}: {err})"


def _grid_shift_mm(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest distance (mm) between the positions of the grid corners under two affines."""
    corners = np.array(
        [
            [i, j, k, 1.0]
            for i in (0, shape[0] - 1)
            for j in (0, shape[1] - 1)
            for k in (0, shape[2] - 1)
        ]
    )
    return float(np.abs((corners @ a.T)[:, :3] - (corners @ b.T)[:, :3]).max())


@dataclass(frozen=True)
class _Grid:
    """A file's grid in RAS order: ``codes`` its axis codes, ``shape`` (x, y, z) after
    reorienting, ``affine`` the RAS grid's affine."""

    codes: str
    shape: tuple[int, int, int]
    affine: np.ndarray


def _ras_grid(meta: NiftiHeader) -> _Grid:
    codes = axis_codes(meta.affine)
    shape = canonical_axes(meta.shape, codes)
    return _Grid(codes, shape, canonical_affine(meta.affine, meta.shape, codes))  # type: ignore[arg-type]


def _same_grid(a: _Grid, b: _Grid) -> bool:
    return a.shape == b.shape and _grid_shift_mm(a.affine, b.affine, a.shape) <= (
        AFFINE_TOLERANCE_MM
    )


def _read_headers(
    chosen: dict[str, Path], spec: ReadSpec, problems: Problems
) -> dict[str, NiftiHeader]:
    metas: dict[str, NiftiHeader] = {}
    for key, path in chosen.items():
        frames = key in spec.frames
        try:
            meta = read_header(path, frames=frames)
        except NiftiProblem as err:
            problems.add(path, str(err))
            continue
        except Exception as err:
            problems.add(path, _unexpected(err))
            continue
        if frames and spec.frames[key] >= meta.frames:
            problems.add(
                path,
                f"{spec.name(key)} is frame {spec.frames[key]} but the image has "
                f"{meta.frames} frame(s)",
            )
            continue
        if min(meta.shape) < 2:
            problems.add(
                path,
                f"grid {format_grid(meta.shape)} has an axis of 1 voxel (a single slice); "
                "3-D networks and figures need at least 2 voxels along every axis",
            )
            continue
        metas[key] = meta
    return metas


def _reference_key(spec: ReadSpec, grids: dict[str, _Grid]) -> str | None:
    """The spec's reference channel, else the channel whose grid the most others share
    (ties: the first channel), so a single shifted file is the one named."""
    keys = [k for k in spec.channels if k in grids]
    if spec.reference is not None:
        return spec.reference if spec.reference in grids else None
    votes = {k: sum(_same_grid(grids[k], grids[o]) for o in keys if o != k) for k in keys}
    return max(keys, key=lambda k: votes[k]) if keys else None  # max keeps the first of ties


def _check_grids(
    chosen: dict[str, Path],
    spec: ReadSpec,
    grids: dict[str, _Grid],
    metas: dict[str, NiftiHeader],
    ref_key: str,
    root: Path,
) -> tuple[set[str], dict[str, str]]:
    """Every file must share the reference grid in RAS order (a voxel-order difference is
    exact) -> (the channels to resample: allowed by the spec, grid different; key -> problem
    for the others that differ)."""
    ref, ref_path = grids[ref_key], chosen[ref_key]
    ref_name = spec.name(ref_key)
    resample: set[str] = set()
    differ: dict[str, str] = {}
    for key, grid in grids.items():
        if key == ref_key or _same_grid(grid, ref):
            continue
        if key in spec.resample:
            resample.add(key)
            continue
        native = metas[key].shape
        ref_native = metas[ref_key].shape
        if grid.shape != ref.shape:
            differ[key] = (
                f"grid {format_grid(native)} differs from {ref_name} "
                f"({relative_name(ref_path, root)}: {format_grid(ref_native)})"
            )
            continue
        shift = _grid_shift_mm(grid.affine, ref.affine, grid.shape)
        differ[key] = (
            f"affine differs from {ref_name} ({relative_name(ref_path, root)}): voxel "
            f"positions move by up to {shift:.3g} mm (tolerance {AFFINE_TOLERANCE_MM} mm)"
        )
    return resample, differ


def _channel_values(
    path: Path, meta: NiftiHeader, frame: int | None
) -> tuple[np.ndarray | None, str | None]:
    """One channel's stored values (x, y, z) -> (array as scaled by nibabel's rule, None) or
    (None, the one-line problem)."""
    try:
        return read_nifti(path, frame=frame).data, None
    except NiftiProblem as err:
        return None, str(err)
    except Exception as err:
        return None, _unexpected(err)


def _beyond_float32(data: np.ndarray) -> bool:
    """Whether ``data`` holds integers that float32 cannot represent exactly (beyond 2^24)."""
    if np.issubdtype(data.dtype, np.integer) and data.dtype.itemsize >= 4 and data.size:
        return max(abs(int(data.max())), abs(int(data.min()))) > FLOAT32_EXACT
    return False


def ras_view(data: np.ndarray, codes: str) -> np.ndarray:
    """A file's array (x, y, z) with axis ``codes`` -> a view (D, H, W) = (z, y, x) in RAS
    order (flips and a transpose only: no copy; the caller writes it where it belongs)."""
    ornt = nio.ornt_transform(nio.axcodes2ornt(tuple(codes)), nio.axcodes2ornt(tuple(CANONICAL)))
    return nio.apply_orientation(data, ornt).transpose(2, 1, 0)


def check_channel(
    values: np.ndarray, scaled: bool, lossy: bool, stored: np.ndarray | None = None
) -> list[str]:
    """Problems of one channel's float32 values (NaN/Inf, empty, constant, out of range).

    ``lossy``: the stored integers were rounded by the cast, so a constant is named as made
    constant by the cast (``stored`` tells whether it was constant before)."""
    problems = []
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    if n_nan or n_inf:
        how = " (after scl_slope/scl_inter scaling)" if scaled else ""
        problems.append(f"{n_nan} NaN and {n_inf} Inf voxels as float32{how}")
        values = np.where(np.isfinite(values), values, 0)
    if not np.any(values):
        problems.append("all voxels are 0 (empty modality)")
        return problems
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        was_varied = stored is not None and stored.min() != stored.max()
        if lossy and was_varied:
            problems.append(
                f"all voxels become {lo:g} when cast to float32 (the stored integers differ "
                f"only beyond float32's precision of 2^24)"
            )
        else:
            problems.append(f"all voxels have the value {lo:g} (constant modality)")
    elif hi - lo > float(np.finfo(np.float32).max):
        # min-max or z-score normalisation would overflow to Inf or collapse to 0
        problems.append(f"values span {lo:g} to {hi:g}, a range float32 cannot hold")
    return problems


def _label_values(
    data: np.ndarray, spec: ReadSpec, name: str, notes: list[str]
) -> tuple[np.ndarray | None, list[str]]:
    """The stored label -> (uint8 0/1 lesion mask (x, y, z), problems). Float values within
    float32 rounding of an integer (255 * 1/255 = 1.0000001) are taken as that integer."""
    problems: list[str] = []
    if np.issubdtype(data.dtype, np.floating):
        n_bad = int((~np.isfinite(data)).sum())
        if n_bad:
            return None, [f"{n_bad} NaN or Inf voxels in {name}"]
        rounded = np.rint(data)
        off = np.abs(data - rounded)
        tol = 4 * float(np.finfo(np.float32).eps) * np.maximum(1.0, np.abs(rounded))
        if np.any((off > 0) & (off <= tol)):
            notes.append(f"{name}: values within float32 rounding of whole numbers were rounded")
        data = np.where(off <= tol, rounded, data)
    allowed = (0, 1) if spec.label_values is None else tuple(sorted({0, *spec.label_values}))
    values = np.unique(data)
    bad = values[~np.isin(values, allowed)]
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        what = (
            "is not binary: values other than 0 and 1"
            if spec.label_values is None
            else (
                f"holds values that are not labels of the data set ({', '.join(map(str, allowed))})"
            )
        )
        problems.append(f"{name} {what} found ({shown})")
        return None, problems
    return np.isin(data, spec.lesion_values).astype(np.uint8), problems


def _resample_onto(data: np.ndarray, source: np.ndarray, target: _Grid, out: np.ndarray) -> None:
    """Trilinear resampling of ``data`` (x, y, z) with affine ``source`` onto the RAS grid
    ``target``, written into ``out`` (D, H, W) slice by slice; outside the source grid is 0."""
    from scipy.ndimage import map_coordinates

    to_source = np.linalg.inv(source) @ target.affine
    nx, ny, _nz = target.shape
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="xy")  # (H, W) = (y, x)
    for k in range(out.shape[0]):
        pts = np.stack([ii, jj, np.full_like(ii, k), np.ones_like(ii)]).reshape(4, -1)
        src = (to_source @ pts)[:3]
        out[k] = map_coordinates(data, src, order=1, mode="constant", cval=0.0).reshape(ny, nx)


def _check_budget(n_channels: int, grid: _Grid, budget: int) -> str | None:
    need = n_channels * math.prod(grid.shape) * 4
    if need <= budget:
        return None
    return (
        f"the case needs {need / 2**30:.2f} GiB as float32 ({n_channels} channels of "
        f"{format_grid(grid.shape)}), more than the memory budget of {budget / 2**30:.2f} GiB "
        "(set STROKELRP_MEMORY_BUDGET in bytes to allow more)"
    )


def read_case(
    folder: CaseFolder,
    root: str | Path,
    keep: bool = True,
    notes: list[str] | None = None,
    voxels: bool = True,
    summary: dict | None = None,
) -> tuple[Case | None, list[str]]:
    """Read and validate one case -> (``Case`` or ``None`` if invalid, all problems).

    ``keep=False`` checks the case as it would be read (every header, every voxel, one
    channel at a time) without assembling it: -> (``None``, problems); ``notes`` collects what
    was done (resampling, rounded labels). A file on another grid is still read, so that a
    file that cannot be read is named for that, not for its grid. ``voxels=False`` (with
    ``keep=False``) stops after the headers, the grids and the memory budget: no voxel read.
    ``summary`` receives what ``inspect`` shows: the reference grid, spacing and axis codes
    (``grid``, ``spacing``, ``orientation``, in the files' order) and ``lesion_ml``.
    """
    root = Path(root)
    spec = spec_of(folder)
    notes = [] if notes is None else notes
    problems = Problems(folder.case_id, root)
    chosen = choose_files(folder, root, problems)
    metas = _read_headers(chosen, spec, problems)
    grids: dict[str, _Grid] = {}
    for key, meta in metas.items():
        try:
            grids[key] = _ras_grid(meta)
        except ValueError as err:
            problems.add(chosen[key], str(err))
    ref_key = _reference_key(spec, grids)
    if ref_key is None:
        return None, list(problems)
    resample, differ = _check_grids(chosen, spec, grids, metas, ref_key, root)
    ref = grids[ref_key]
    if summary is not None:
        summary.update(
            grid=metas[ref_key].shape, spacing=metas[ref_key].spacing, orientation=ref.codes
        )
    too_big = _check_budget(len(spec.channels), ref, memory_budget())
    if too_big:
        problems.add(chosen[ref_key], too_big)
        return None, list(problems)
    if not voxels:
        for key in resample:
            notes.append(f"case {folder.case_id}: {spec.name(key)} would be resampled onto "
                         f"{spec.name(ref_key)}'s grid")  # fmt: skip
        for key, text in differ.items():
            problems.add(chosen[key], text)
        return None, list(problems)

    assemble = keep and not problems and not differ
    image = np.empty((len(spec.channels), *ref.shape[::-1]), np.float32) if assemble else None
    resampled: dict[str, str] = {}
    for c, key in enumerate(spec.channels):
        if key not in grids:
            continue
        path, meta, grid = chosen[key], metas[key], grids[key]
        stored, reason = _channel_values(path, meta, spec.frames.get(key))
        if stored is None:
            problems.add(path, reason or "could not be read")
            differ.pop(key, None)
            assemble = False
            continue
        lossy = _beyond_float32(stored)
        if lossy:
            note = f"{relative_name(path, root)}: integers above 2^24 are rounded to float32"
            warnings.warn(f"case {folder.case_id}: {note}", stacklevel=2)
            notes.append(f"case {folder.case_id}: {note}")
        # the float32 values in RAS order: straight into the case's slot when it is assembled
        # and on its grid (the one copy of the case), else into a buffer of this channel
        direct = assemble and image is not None and key not in resample
        values = image[c] if direct else np.empty(grid.shape[::-1], np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            values[...] = ras_view(stored, grid.codes)  # the cast: an overflow becomes Inf
        found = check_channel(values, meta.slope is not None, lossy, stored)
        for text in found:
            problems.add(path, text)
        del stored
        if found:
            assemble = False
        if key in resample:
            resampled[key] = (
                f"{spec.name(key)} resampled (trilinear, world affines) from its grid "
                f"{format_grid(meta.shape)} ({format_spacing(meta.spacing)}) onto "
                f"{spec.name(ref_key)}'s {format_grid(metas[ref_key].shape)}"
            )
            notes.append(f"case {folder.case_id}: {resampled[key]}")
            if assemble and image is not None:
                _resample_onto(values.transpose(2, 1, 0), grid.affine, ref, image[c])
        del values
    label = None
    if spec.label in grids:
        path, meta = chosen[spec.label], metas[spec.label]
        stored, reason = _channel_values(path, meta, None)
        if stored is None:
            problems.add(path, reason or "could not be read")
            differ.pop(spec.label, None)
        else:
            mask, found = _label_values(stored, spec, spec.name(spec.label), notes)
            for text in found:
                problems.add(path, text)
            if mask is not None:
                label = ras_view(mask, grids[spec.label].codes)
                if summary is not None:
                    summary["lesion_ml"] = lesion_volume_ml(mask, meta.spacing)
    for key, text in differ.items():
        problems.add(chosen[key], text)
    if problems or image is None:
        return None, list(problems)
    ref_meta = metas[ref_key]
    return (
        Case(
            case_id=folder.case_id,
            image=image,
            label=None if label is None else np.ascontiguousarray(label, dtype=np.uint8),
            affine=ref.affine,
            header=ref_meta.header.copy(),
            spacing=canonical_axes(ref_meta.spacing, ref.codes),  # type: ignore[arg-type]
            paths=dict(chosen),
            orientation=ref.codes,
            native_affine=ref_meta.affine.copy(),
            channels=spec.channels,
            resampled=resampled,
            layout=folder.layout,
        ),
        [],
    )


def peek_geometry(folder: CaseFolder) -> tuple[tuple | None, tuple | None]:
    """Grid and spacing from the first channel header that reads (for an invalid case)."""
    spec = spec_of(folder)
    for key in spec.channels:
        for path in folder.files.get(key, []):
            try:
                meta = read_header(path, frames=key in spec.frames)
            except Exception:  # any failure is reported by read_case
                continue
            return meta.shape, meta.spacing
    return None, None


def case_report(
    folder: CaseFolder, root: Path, problems: list[str], notes: list[str], summary: dict
) -> CaseReport:
    """The ``inspect`` row of a case checked by :func:`read_case` (``keep=False``) with its
    ``summary``; geometry from the first readable header when the reference was unreadable."""
    spec = spec_of(folder)
    grid, spacing = summary.get("grid"), summary.get("spacing")
    if grid is None:
        grid, spacing = peek_geometry(folder)
    return CaseReport(
        case_id=folder.case_id,
        folder=relative_name(folder.path, root),
        grid=grid,
        spacing=spacing,
        lesion_ml=None if problems else summary.get("lesion_ml"),
        has_label=spec.label in folder.files,
        problems=problems,
        orientation=None if problems else summary.get("orientation"),
        channels=spec.channels,
        notes=notes,
        label_key=spec.label,
    )


OnError = Literal["raise", "skip"]


def check_on_error(on_error: str) -> None:
    """Refuse an ``on_error`` other than ``"raise"`` or ``"skip"`` (before any work is done)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def raise_or_warn(problems: list[str], on_error: OnError, stacklevel: int = 3) -> None:
    """All problems of a tree at once: ``"raise"`` raises one :class:`DataError` listing them;
    ``"skip"`` warns each (one ``skipping invalid case: ...`` line; ``stacklevel`` counted from
    the caller of this function's caller)."""
    if not problems:
        return
    if on_error == "raise":
        raise DataError(problems)
    for line in problems:
        warnings.warn(f"skipping invalid case: {line}", stacklevel=stacklevel)


def reorient_to_canonical(case: Case) -> Case:
    """A case built in its files' voxel order -> the same case in RAS order (see ``Case``).

    ``case`` must hold the files' arrays (``orientation`` left at its default); the result
    records the files' axis codes and affine. Raises ``ValueError`` when the affine has no
    orientation (singular or not finite).
    """
    import dataclasses

    codes = axis_codes(case.affine)
    return dataclasses.replace(
        case,
        image=to_canonical(case.image, codes),
        label=None if case.label is None else to_canonical(case.label, codes),
        affine=canonical_affine(case.affine, case.grid, codes),
        spacing=canonical_axes(case.spacing, codes),
        orientation=codes,
        native_affine=case.affine,
    )
