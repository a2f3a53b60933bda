"""Read and validate an ISLES 2017 tree (the real layout, or a synthetic copy of it).

Layout (REFERENCE.md section 1)::

    ROOT/training_4/VSD.Brain.XX.O.MR_ADC.128020/VSD.Brain.XX.O.MR_ADC.128020.nii
    ROOT/training_4/VSD.Brain.XX.O.OT.128050/VSD.Brain.XX.O.OT.128050.nii
    ...

A case folder is a folder named ``training_N`` or any folder that holds modality files or
sub-folders. Files are matched by their modality token (``MR_ADC``, ``MR_MTT``, ``MR_rCBF``,
``MR_rCBV``, ``MR_Tmax``, ``MR_TTP``, ``OT``) whatever the prefix (``VSD``, ``SMIR``, ...);
``.nii`` and ``.nii.gz`` are read, each checked by :mod:`strokelrp.data.nifti_file` before
its voxels are allocated; ``__MACOSX/``, hidden and ``._*`` files and ``MR_4DPWI``
are ignored. Every problem of a case is collected before anything is raised, one line each:
``case ID: FILE: what is wrong`` with FILE relative to the data root.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from strokelrp.config import MODALITIES
from strokelrp.core.orientation import (
    CANONICAL,
    axis_codes,
    canonical_affine,
    canonical_axes,
    file_axes,
    to_canonical,
)
from strokelrp.data.nifti_file import (
    NiftiHeader,
    NiftiProblem,
    NiftiVolume,
    read_header,
    read_nifti,
)
from strokelrp.errors import DataError, StrokeLRPError

log = logging.getLogger(__name__)

MODALITY_TOKENS: dict[str, str] = {f"MR_{m}": m for m in MODALITIES}
"""File-name token -> modality name, in the network's channel order."""
LABEL_TOKEN = "OT"
IGNORED_TOKENS = ("MR_4DPWI",)
NIFTI_SUFFIXES = (".nii.gz", ".nii")
AFFINE_TOLERANCE_MM = 0.05
"""Largest allowed shift (mm) of any grid corner between two modalities of one case."""

_CASE_FOLDER = re.compile(r"^training_(\d+)$", re.IGNORECASE)
_ALL_TOKENS = {t.lower(): t for t in (*MODALITY_TOKENS, LABEL_TOKEN, *IGNORED_TOKENS)}


@dataclass(repr=False, eq=False)
class Case:
    """One case, values as stored (no normalisation), voxels in RAS order.

    ``image`` is float32 ``(6, D, H, W)`` in the order of ``config.MODALITIES`` with
    ``image[c, z, y, x]`` = voxel ``(x, y, z)`` of modality c's NIfTI array after reorienting
    it to :data:`~strokelrp.core.orientation.CANONICAL` (RAS: x towards the patient's right, y
    anterior, z superior; pure axis flips and permutations, no resampling); ``label`` is the
    uint8 OT mask ``(D, H, W)`` in the same order, or ``None`` for a case without ground truth;
    ``affine`` (mm) maps that RAS voxel grid to the world and ``spacing`` is its voxel size in
    mm as (x, y, z) (the column norms of the files' affine, reordered). The files' own geometry
    is kept for writing outputs back: ``orientation`` is their axis codes (``"LPS"``...),
    ``native_affine`` the ADC file's affine and ``header`` its header (all modalities share the
    grid), a checked NIfTI-1 copy in mm (see :mod:`strokelrp.data.nifti_file`); ``paths`` maps
    ``"ADC"`` ... ``"TTP"`` and ``"OT"`` to files. A case built by hand with the defaults is
    taken as stored in RAS (``native_affine`` ``None`` means ``affine``).
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
        """Volume of the OT mask in mL, or ``None`` without OT."""
        if self.label is None:
            return None
        return lesion_volume_ml(self.label, self.spacing)

    def __repr__(self) -> str:
        lesion = "no OT" if self.label is None else f"lesion {self.lesion_ml:.2f} mL"
        return (
            f"Case({self.case_id!r}, grid {format_grid(self.grid)}, "
            f"spacing {format_spacing(self.spacing)}, {lesion}, stored {self.orientation})"
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

    @property
    def status(self) -> str:
        return "ok" if not self.problems else "invalid"

    def as_dict(self) -> dict:
        return {
            "case_id": self.case_id,
            "folder": self.folder,
            "grid": list(self.grid) if self.grid else None,
            "spacing_mm": [round(s, 4) for s in self.spacing] if self.spacing else None,
            "lesion_ml": None if self.lesion_ml is None else round(self.lesion_ml, 3),
            "has_label": self.has_label,
            "orientation": self.orientation,
            "status": self.status,
            "problems": list(self.problems),
        }


@dataclass
class CaseFolder:
    """A discovered case folder and the files found in it, before anything is read."""

    case_id: str
    path: Path
    files: dict[str, list[Path]]
    """Token key (``"ADC"``..., ``"OT"``) -> image files found for it (normally one)."""
    empty_folders: dict[str, list[Path]]
    """Token key -> sub-folders named for it that hold no .nii/.nii.gz file."""
    other_files: dict[str, list[Path]]
    """Token key -> files in those sub-folders that are not .nii/.nii.gz."""
    trouble: list[tuple[Path, str]] = field(default_factory=list)
    """Problems met while listing the folder: unlistable folders, symbolic-link loops."""


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


# ------------------------------------------------------------------------------ discovery


def _is_ignored(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name == "__MACOSX"


def _nifti_stem(name: str) -> str | None:
    low = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return None


def token_of(name: str) -> str | None:
    """The modality token in a file or folder name (``"MR_ADC"``, ``"OT"``...), or ``None``.

    The name is split at dots and the parts are compared with the known tokens (case does
    not matter), so any prefix (``VSD.Brain.XX.O.``, ``SMIR.Brain.XX.O.``) and numeric ID work.
    """
    stem = _nifti_stem(name) or name
    for part in stem.split("."):
        token = _ALL_TOKENS.get(part.lower())
        if token is not None:
            return token
    return None


def _key_of(token: str) -> str | None:
    """Token -> key used in ``Case.paths`` (``"ADC"``... or ``"OT"``); ``None`` if ignored."""
    if token == LABEL_TOKEN:
        return LABEL_TOKEN
    return MODALITY_TOKENS.get(token)


def _list(folder: Path, trouble: list[tuple[Path, str]] | None = None) -> list[Path]:
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


def _real(path: Path) -> Path | None:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None


def _holds_modalities(folder: Path) -> bool:
    return any(not _is_ignored(c) and _key_of(token_of(c.name) or "") for c in _list(folder))


def _walk_case_dirs(folder: Path, seen: set[Path] | None = None) -> Iterator[Path]:
    """Case folders below ``folder``; a folder reached twice (a link loop) is walked once."""
    seen = set() if seen is None else seen
    real = _real(folder)
    if real is None or real in seen:
        log.warning("%s: not followed (a symbolic link back to a folder already searched)", folder)
        return
    seen.add(real)
    for child in _list(folder):
        if _is_ignored(child) or not child.is_dir():
            continue
        if _CASE_FOLDER.match(child.name) or _holds_modalities(child):
            yield child
        elif token_of(child.name) is None:
            yield from _walk_case_dirs(child, seen)


def _case_id_of(folder: Path) -> str:
    match = _CASE_FOLDER.match(folder.name)
    return match.group(1) if match else folder.name


def _is_broken_link(path: Path) -> bool:
    """A symbolic link that reaches no file or folder (dangling, or a loop)."""
    return path.is_symlink() and _real(path) is None


def _files_under(
    folder: Path, trouble: list[tuple[Path, str]], seen: frozenset[Path] = frozenset()
) -> Iterator[Path]:
    """Files below ``folder`` (any depth), skipping hidden, ``._*`` and ``__MACOSX`` entries.

    Broken links are yielded (the reader names them); a link back to a folder on the way down
    is noted in ``trouble`` and not followed.
    """
    real = _real(folder)
    seen = seen | {real} if real is not None else seen
    for child in _list(folder, trouble):
        if _is_ignored(child):
            continue
        if child.is_dir():
            target = _real(child)
            if target is not None and target in seen:
                trouble.append((child, "symbolic link loop: points back to an enclosing folder"))
            else:
                yield from _files_under(child, trouble, seen)
        elif child.is_file() or _is_broken_link(child):
            yield child


def _scan_case(case_id: str, folder: Path) -> CaseFolder:
    files: dict[str, list[Path]] = {}
    empty: dict[str, list[Path]] = {}
    other: dict[str, list[Path]] = {}
    trouble: list[tuple[Path, str]] = []
    for child in _list(folder, trouble):
        if _is_ignored(child):
            continue
        key = _key_of(token_of(child.name) or "")
        if key is None:
            continue
        if child.is_file() or _is_broken_link(child):
            if _nifti_stem(child.name) is not None:
                files.setdefault(key, []).append(child)
            else:
                other.setdefault(key, []).append(child)
            continue
        if not child.is_dir():
            continue
        inner = list(_files_under(child, trouble, frozenset({r} if (r := _real(folder)) else ())))
        images = [p for p in inner if _nifti_stem(p.name) is not None]
        if images:
            files.setdefault(key, []).extend(images)
        else:
            empty.setdefault(key, []).append(child)
            other.setdefault(key, []).extend(inner)
    return CaseFolder(case_id, folder, files, empty, other, trouble)


def discover_cases(root: str | Path) -> list[CaseFolder]:
    """Find the case folders under ``root`` (sorted naturally by case id).

    Raises :class:`StrokeLRPError` when ``root`` is not a folder or holds no case.
    """
    root = Path(root)
    if not root.exists():
        raise StrokeLRPError(f"{root}: no such folder")
    if not root.is_dir():
        raise StrokeLRPError(f"{root}: not a folder")
    dirs = [root] if _holds_modalities(root) else list(_walk_case_dirs(root))
    found = [_scan_case(_case_id_of(d), d) for d in dirs]
    if not found:
        raise StrokeLRPError(
            f"{root}: no ISLES 2017 case found (expected training_N folders, or folders "
            "holding MR_ADC/MR_MTT/MR_rCBF/MR_rCBV/MR_Tmax/MR_TTP/OT sub-folders)"
        )
    return sorted(found, key=lambda c: (case_sort_key(c.case_id), str(c.path)))


# ---------------------------------------------------------------------------- validation


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as posix text (as problems name files), else in full."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _read_volume(path: Path) -> tuple[NiftiVolume | None, str | None]:
    """Read one NIfTI volume -> (volume, None) or (None, the one-line problem)."""
    try:
        return read_nifti(path), None
    except NiftiProblem as err:
        return None, str(err)
    except Exception as err:
        # not foreseen by nifti_file's checks: still one line, never a traceback (the fuzz
        # benchmark counts these lines as "unexpected")
        return None, f"could not be read (unexpected {type(err).__name__}: {err})"


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


def _reference_key(images: dict[str, NiftiHeader], arrays: dict[str, np.ndarray]) -> str | None:
    """The modality whose grid the most other modalities share (ties: the first of MODALITIES).

    Every file is compared with it, so a single shifted file is the one named, even when it is
    ADC, the first modality; None when no modality was read.
    """

    def agree(a: str, b: str) -> bool:
        shape = arrays[a].shape
        return shape == arrays[b].shape and (
            _grid_shift_mm(images[a].affine, images[b].affine, shape) <= AFFINE_TOLERANCE_MM
        )

    keys = [k for k in MODALITIES if k in images]
    votes = {k: sum(agree(k, other) for other in keys if other != k) for k in keys}
    return max(keys, key=lambda k: votes[k]) if keys else None  # max keeps the first of ties


def _working_values(volume: NiftiVolume, is_label: bool) -> np.ndarray:
    """The values the pipeline uses: float32 for a modality (cast here, so that an overflow
    becomes Inf and is found by :func:`_check_values`), as read for OT."""
    if is_label:
        return volume.data
    with np.errstate(over="ignore", invalid="ignore"):
        return volume.data.astype(np.float32)


def _check_values(data: np.ndarray, is_label: bool, scaled: bool = False) -> list[str]:
    problems = []
    if np.issubdtype(data.dtype, np.floating):
        n_nan = int(np.isnan(data).sum())
        n_inf = int(np.isinf(data).sum())
        if n_nan or n_inf:
            how = " (after scl_slope/scl_inter scaling)" if scaled else ""
            cast = "" if is_label else " as float32"
            problems.append(f"{n_nan} NaN and {n_inf} Inf voxels{cast}{how}")
            data = np.where(np.isfinite(data), data, 0)
    if is_label:
        values = np.unique(data)
        bad = values[(values != 0) & (values != 1)]
        if bad.size:
            shown = ", ".join(f"{v:g}" for v in bad[:5]) + (", ..." if bad.size > 5 else "")
            problems.append(f"OT is not binary: values other than 0 and 1 found ({shown})")
    elif not np.any(data):
        problems.append("all voxels are 0 (empty modality)")
    else:
        lo, hi = float(data.min()), float(data.max())
        if lo == hi:
            problems.append(f"all voxels have the value {lo:g} (constant modality)")
        elif hi - lo > float(np.finfo(np.float32).max):
            # min-max or z-score normalisation would overflow to Inf or collapse to 0
            problems.append(f"values span {lo:g} to {hi:g}, a range float32 cannot hold")
    return problems


class _Problems(list):
    """The problems of one case, each as ``case ID: PATH (relative to root): text``."""

    def __init__(self, case_id: str, root: Path) -> None:
        super().__init__()
        self.case_id, self.root = case_id, root

    def add(self, path: Path | str, text: str) -> None:
        rel = relative_name(path, self.root) if isinstance(path, Path) else path
        self.append(f"case {self.case_id}: {rel}: {text}")


def _choose_files(folder: CaseFolder, root: Path, problems: _Problems) -> dict[str, Path]:
    """The one image per modality (and the label, if any): key -> path; problems otherwise
    (several images, an empty folder, a stray non-NIfTI file, a missing modality)."""
    where = relative_name(folder.path, root)
    for path, text in folder.trouble:
        problems.add(path, text)
    blocked = {path for path, _ in folder.trouble}  # said once, not again as "no image"
    chosen: dict[str, Path] = {}
    for key in (*MODALITIES, LABEL_TOKEN):
        token = LABEL_TOKEN if key == LABEL_TOKEN else f"MR_{key}"
        found = folder.files.get(key, [])
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
            elif key != LABEL_TOKEN:
                problems.add(
                    where, f"missing modality {token} (no file or folder named with {token})"
                )
    return chosen


def _read_volumes(
    chosen: dict[str, Path], problems: _Problems
) -> tuple[dict[str, np.ndarray], dict[str, NiftiHeader]]:
    """Each chosen file's working values (x, y, z) and header; unreadable files and bad
    values are problems."""
    arrays: dict[str, np.ndarray] = {}
    metas: dict[str, NiftiHeader] = {}
    for key, path in chosen.items():
        volume, reason = _read_volume(path)
        if volume is None:
            problems.add(path, reason or "could not be read")
            continue
        data = _working_values(volume, key == LABEL_TOKEN)
        for text in _check_values(data, key == LABEL_TOKEN, volume.meta.slope is not None):
            problems.add(path, text)
        arrays[key], metas[key] = data, volume.meta
    return arrays, metas


def _check_grids(
    chosen: dict[str, Path],
    arrays: dict[str, np.ndarray],
    metas: dict[str, NiftiHeader],
    root: Path,
    problems: _Problems,
) -> None:
    """Every volume must share the reference volume's grid and (within tolerance) affine."""
    ref_key = _reference_key(metas, arrays)
    if ref_key is None:
        return
    ref_meta, ref_path = metas[ref_key], chosen[ref_key]
    ref_shape = arrays[ref_key].shape
    ref_name = "OT" if ref_key == LABEL_TOKEN else f"MR_{ref_key}"
    for key, meta in metas.items():
        if key == ref_key:
            continue
        shape = arrays[key].shape
        if shape != ref_shape:
            problems.add(
                chosen[key],
                f"grid {format_grid(shape)} differs from {ref_name} "
                f"({relative_name(ref_path, root)}: {format_grid(ref_shape)})",
            )
            continue
        shift = _grid_shift_mm(meta.affine, ref_meta.affine, shape)
        if shift > AFFINE_TOLERANCE_MM:
            problems.add(
                chosen[key],
                f"affine differs from {ref_name} ({relative_name(ref_path, root)}): voxel "
                f"positions move by up to {shift:.3g} mm (tolerance {AFFINE_TOLERANCE_MM} mm)",
            )


def _assemble(
    case_id: str,
    chosen: dict[str, Path],
    arrays: dict[str, np.ndarray],
    metas: dict[str, NiftiHeader],
) -> Case:
    """The checked volumes as one ``Case`` (image (6, D, H, W), label (D, H, W)), still in the
    files' own orientation."""
    ref_meta = metas[MODALITIES[0]]
    image = np.empty((len(MODALITIES), *arrays[MODALITIES[0]].shape[::-1]), dtype=np.float32)
    for c, key in enumerate(MODALITIES):
        image[c] = arrays[key].transpose(2, 1, 0)  # already scaled and float32
    label = None
    if LABEL_TOKEN in arrays:
        label = np.ascontiguousarray(arrays[LABEL_TOKEN].transpose(2, 1, 0)).astype(np.uint8)
    return Case(
        case_id=case_id,
        image=image,
        label=label,
        affine=ref_meta.affine.copy(),
        header=ref_meta.header.copy(),
        spacing=ref_meta.spacing,
        paths=dict(chosen),
    )


def read_case(folder: CaseFolder, root: str | Path) -> tuple[Case | None, list[str]]:
    """Read and validate one case -> (``Case`` or ``None`` if invalid, all problems)."""
    root = Path(root)
    problems = _Problems(folder.case_id, root)
    chosen = _choose_files(folder, root, problems)
    arrays, metas = _read_volumes(chosen, problems)
    _check_grids(chosen, arrays, metas, root, problems)
    if problems:
        return None, list(problems)
    case = _assemble(folder.case_id, chosen, arrays, metas)
    try:
        return reorient_to_canonical(case), []
    except ValueError as err:
        rel = relative_name(chosen[MODALITIES[0]], root)
        return None, [f"case {folder.case_id}: {rel}: {err}"]


def reorient_to_canonical(case: Case) -> Case:
    """A case read in its files' voxel order -> the same case in RAS order (see ``Case``).

    ``case`` must hold the files' arrays (``orientation`` left at its default); the result
    records the files' axis codes and affine. Raises ``ValueError`` when the affine has no
    orientation (singular or not finite).
    """
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


def _peek_geometry(folder: CaseFolder) -> tuple[tuple | None, tuple | None]:
    """Grid and spacing from the first modality header that reads (for an invalid case)."""
    for key in MODALITIES:
        for path in folder.files.get(key, []):
            try:
                meta = read_header(path)
            except Exception:  # any failure is reported by read_case
                continue
            return meta.shape, meta.spacing
    return None, None


def _report(folder: CaseFolder, root: Path, case: Case | None, problems: list[str]) -> CaseReport:
    grid = spacing = lesion = orientation = None
    has_label = LABEL_TOKEN in folder.files
    if case is not None:
        grid, spacing, lesion = case.native_grid, case.native_spacing, case.lesion_ml
        orientation = case.orientation
    else:
        grid, spacing = _peek_geometry(folder)
    return CaseReport(
        case_id=folder.case_id,
        folder=relative_name(folder.path, root),
        grid=grid,
        spacing=spacing,
        lesion_ml=lesion,
        has_label=has_label,
        problems=problems,
        orientation=orientation,
    )


OnError = Literal["raise", "skip"]


def check_on_error(on_error: str) -> None:
    """Refuse an ``on_error`` other than ``"raise"`` or ``"skip"`` (before any work is done)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def select_cases(
    root: Path, cases: Iterable[str] | None = None
) -> list[tuple[CaseFolder, list[str]]]:
    """The case folders under ``root`` (restricted to ``cases``), each with its duplicate-id
    problems (empty unless an earlier folder already has its case id).

    The first step of every reader of a tree (inspect, load, :class:`CaseDataset`): select,
    then check duplicates; the caller reads each folder and hands all problems to
    :func:`raise_or_warn`. ``cases`` may name a case by id (``4``) or folder (``training_4``);
    an unknown one raises :class:`StrokeLRPError` listing the ids the data holds.
    """
    folders = discover_cases(root)
    if cases is not None:
        # "training_4" names case "4" too: users copy folder names
        wanted = [m.group(1) if (m := _CASE_FOLDER.match(str(c))) else str(c) for c in cases]
        known = {f.case_id for f in folders}
        unknown = [c for c in wanted if c not in known]
        if unknown:
            ids = ", ".join(f.case_id for f in folders)
            raise StrokeLRPError(f"unknown case id(s) {', '.join(unknown)}; the data holds: {ids}")
        folders = [f for f in folders if f.case_id in set(wanted)]
    seen: dict[str, CaseFolder] = {}
    out: list[tuple[CaseFolder, list[str]]] = []
    for f in folders:
        first = seen.setdefault(f.case_id, f)
        dup = (
            []
            if first is f
            else [
                f"case {f.case_id}: {relative_name(f.path, root)}: case id {f.case_id} already "
                f"used by {relative_name(first.path, root)}"
            ]
        )
        out.append((f, dup))
    return out


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


def inspect_isles2017(root: str | Path, cases: Iterable[str] | None = None) -> Iterator[CaseReport]:
    """Validate every case under ``root`` one at a time, yielding one :class:`CaseReport` each.

    Never raises for a bad case (its problems are in the report); raises
    :class:`StrokeLRPError` only when ``root`` is missing or holds no case.
    """
    root = Path(root)
    for folder, duplicate in select_cases(root, cases):
        case, problems = read_case(folder, root)
        problems = duplicate + problems
        yield _report(folder, root, case if not problems else None, problems)


def load_isles2017(
    root: str | Path,
    on_error: OnError = "raise",
    cases: Iterable[str] | None = None,
) -> list[Case]:
    """Load the cases under ``root`` (natural order of case id) -> list of :class:`Case`.

    ``on_error="raise"``: any problem raises :class:`DataError` listing all problems of all
    cases. ``"skip"``: each problem is warned (``warnings.warn``, one line each) and the valid
    cases are returned. ``cases`` restricts loading to these case ids.
    """
    check_on_error(on_error)
    root = Path(root)
    loaded: list[Case] = []
    problems: list[str] = []
    for folder, duplicate in select_cases(root, cases):
        case, found = read_case(folder, root)
        found = duplicate + found
        if found:
            problems += found
        elif case is not None:
            loaded.append(case)
    raise_or_warn(problems, on_error)
    return loaded


def load_case(data: str | Path, case_id: str) -> Case:
    """The one case ``case_id`` (``4`` or its folder name ``training_4``) of the ISLES 2017 tree
    ``data`` (a clear error if absent); its ``case_id`` is the plain id (``4``)."""
    root = Path(data)
    if not root.is_dir():
        raise StrokeLRPError(f"data folder {root} does not exist")
    cases = load_isles2017(root, cases=[case_id])  # selects by id or folder name
    if len(cases) != 1:
        raise StrokeLRPError(f"case {case_id}: not found in {root}")
    return cases[0]
