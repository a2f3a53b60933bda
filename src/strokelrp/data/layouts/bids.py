"""BIDS-style trees (ISLES 2022, ISLES 2024): subjects, sessions and file suffixes.

A subject is a ``sub-LABEL`` folder directly under the root or under ``rawdata/`` or
``raw_data/``; its derivatives (masks, perfusion maps) are any files under the root's
``derivatives/`` folder, at any depth (``derivatives/sub-X/...`` or
``derivatives/PIPELINE/sub-X/...``), whose name starts with ``sub-LABEL_``. A file's suffix is
the last ``_``-separated part of its name before ``.nii``/``.nii.gz`` (``dwi``, ``adc``,
``FLAIR``, ``msk``, ``lesion-msk``), compared case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from strokelrp.data.layouts.base import files_under, is_ignored, list_folder, nifti_stem

RAW_FOLDERS = ("rawdata", "raw_data", "raw")
DERIVATIVES = "derivatives"


def subject_dirs(root: Path) -> list[Path]:
    """The ``sub-*`` folders under ``root`` or its raw-data folder."""
    found: list[Path] = []
    for base in (root, *(root / name for name in RAW_FOLDERS)):
        if base.is_dir():
            found += [
                c
                for c in list_folder(base)
                if c.is_dir() and not is_ignored(c) and c.name.lower().startswith("sub-")
            ]
    return found


def suffix_of(name: str) -> str | None:
    """``sub-X_ses-0001_dwi.nii.gz`` -> ``"dwi"`` (lower case); ``None`` for a non-NIfTI file."""
    stem = nifti_stem(name)
    if stem is None:
        return None
    return stem.rsplit("_", 1)[-1].lower()


def derivative_files(root: Path, trouble: list[tuple[Path, str]]) -> list[Path]:
    """Every NIfTI file under ``ROOT/derivatives`` (listed once per tree)."""
    deriv = root / DERIVATIVES
    if not deriv.is_dir():
        return []
    return [p for p in files_under(deriv, trouble) if nifti_stem(p.name) is not None]


def subject_files(
    subject: Path, derivatives: list[Path], trouble: list[tuple[Path, str]]
) -> list[Path]:
    """Every NIfTI file of a subject: in its folder and among the derivatives."""
    files = [p for p in files_under(subject, trouble) if nifti_stem(p.name) is not None]
    prefix = subject.name.lower() + "_"
    return files + [p for p in derivatives if p.name.lower().startswith(prefix)]


def match(files: Iterable[Path], suffixes: Iterable[str]) -> list[Path]:
    """The files whose suffix is one of ``suffixes`` (lower case) or ends with ``-SUFFIX``."""
    wanted = tuple(s.lower() for s in suffixes)
    out = []
    for path in files:
        suffix = suffix_of(path.name) or ""
        if suffix in wanted or any(suffix.endswith("-" + w) for w in wanted):
            out.append(path)
    return out


def first_subject_suffixes(root: Path) -> set[str]:
    """The suffixes of the first subject's files (for detection; names only)."""
    subjects = subject_dirs(root)
    if not subjects:
        return set()
    trouble: list[tuple[Path, str]] = []
    return {s for p in files_under(subjects[0], trouble) if (s := suffix_of(p.name))}
