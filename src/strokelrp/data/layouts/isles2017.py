"""ISLES 2017: six MR perfusion/diffusion maps and the OT mask, one folder per modality.

Layout (REFERENCE.md section 1)::

    ROOT/training_4/VSD.Brain.XX.O.MR_ADC.128020/VSD.Brain.XX.O.MR_ADC.128020.nii
    ROOT/training_4/VSD.Brain.XX.O.OT.128050/VSD.Brain.XX.O.OT.128050.nii
    ...

A case folder is a folder named ``training_N`` or any folder that holds modality files or
sub-folders. Files are matched by their modality token (``MR_ADC``, ``MR_MTT``, ``MR_rCBF``,
``MR_rCBV``, ``MR_Tmax``, ``MR_TTP``, ``OT``) whatever the prefix (``VSD``, ``SMIR``, ...);
``.nii`` and ``.nii.gz`` are read; ``__MACOSX/``, hidden and ``._*`` files and ``MR_4DPWI``
are ignored. The six channels are always read, in the paper's order (:data:`CHANNELS`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from strokelrp.data.layouts.base import (
    CaseFolder,
    Layout,
    ReadSpec,
    files_under,
    is_broken_link,
    is_ignored,
    list_folder,
    nifti_stem,
    real_path,
)
from strokelrp.errors import StrokeLRPError

log = logging.getLogger(__name__)

CHANNELS: tuple[str, ...] = ("ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP")
"""The six ISLES 2017 channels in the network's (the paper's) order."""
FIGURE_CHANNEL = "rCBF"
"""The channel the paper's figure 1 shows."""
MODALITY_TOKENS: dict[str, str] = {f"MR_{m}": m for m in CHANNELS}
"""File-name token -> modality name, in the network's channel order."""
LABEL_TOKEN = "OT"
IGNORED_TOKENS = ("MR_4DPWI",)
SPEC = ReadSpec(
    channels=CHANNELS,
    label=LABEL_TOKEN,
    names={**{m: f"MR_{m}" for m in CHANNELS}, LABEL_TOKEN: LABEL_TOKEN},
)
"""How an ISLES 2017 case is read: six channels on one grid (the most shared), binary OT."""

CASE_FOLDER = re.compile(r"^training_(\d+)$", re.IGNORECASE)
_ALL_TOKENS = {t.lower(): t for t in (*MODALITY_TOKENS, LABEL_TOKEN, *IGNORED_TOKENS)}


def token_of(name: str) -> str | None:
    """The modality token in a file or folder name (``"MR_ADC"``, ``"OT"``...), or ``None``.

    The name is split at dots and the parts are compared with the known tokens (case does
    not matter), so any prefix (``VSD.Brain.XX.O.``, ``SMIR.Brain.XX.O.``) and numeric ID work.
    """
    stem = nifti_stem(name) or name
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


def _holds_modalities(folder: Path) -> bool:
    return any(not is_ignored(c) and _key_of(token_of(c.name) or "") for c in list_folder(folder))


def _walk_case_dirs(folder: Path, seen: set[Path] | None = None) -> Iterator[Path]:
    """Case folders below ``folder``; a folder reached twice (a link loop) is walked once."""
    seen = set() if seen is None else seen
    real = real_path(folder)
    if real is None or real in seen:
        log.warning("%s: not followed (a symbolic link back to a folder already searched)", folder)
        return
    seen.add(real)
    for child in list_folder(folder):
        if is_ignored(child) or not child.is_dir():
            continue
        if CASE_FOLDER.match(child.name) or _holds_modalities(child):
            yield child
        elif token_of(child.name) is None:
            yield from _walk_case_dirs(child, seen)


def case_id_of(folder_name: str) -> str:
    """``training_4`` -> ``4``; any other folder name is the case id."""
    match = CASE_FOLDER.match(folder_name)
    return match.group(1) if match else folder_name


def scan_case(case_id: str, folder: Path) -> CaseFolder:
    files: dict[str, list[Path]] = {}
    empty: dict[str, list[Path]] = {}
    other: dict[str, list[Path]] = {}
    trouble: list[tuple[Path, str]] = []
    for child in list_folder(folder, trouble):
        if is_ignored(child):
            continue
        key = _key_of(token_of(child.name) or "")
        if key is None:
            continue
        if child.is_file() or is_broken_link(child):
            if nifti_stem(child.name) is not None:
                files.setdefault(key, []).append(child)
            else:
                other.setdefault(key, []).append(child)
            continue
        if not child.is_dir():
            continue
        inner = list(
            files_under(child, trouble, frozenset({r} if (r := real_path(folder)) else ()))
        )
        images = [p for p in inner if nifti_stem(p.name) is not None]
        if images:
            files.setdefault(key, []).extend(images)
        else:
            empty.setdefault(key, []).append(child)
            other.setdefault(key, []).extend(inner)
    return CaseFolder(case_id, folder, files, empty, other, trouble, SPEC, Isles2017.name)


class Isles2017(Layout):
    """ISLES 2017 (MR: ADC, MTT, rCBF, rCBV, Tmax, TTP; OT)."""

    name = "isles2017"
    title = "ISLES 2017"

    @classmethod
    def detect(cls, root: Path) -> bool:
        if _holds_modalities(root):
            return True
        return any(True for _ in _walk_case_dirs(root))

    def channel_names(self, root: Path) -> tuple[str, ...]:
        return CHANNELS

    def discover(self, root: Path) -> list[CaseFolder]:
        if self.wanted is not None and self.choose_channels(CHANNELS, str(root)) != CHANNELS:
            raise StrokeLRPError(
                f"{root}: ISLES 2017 cases are read with all six channels in the paper's order "
                f"({', '.join(CHANNELS)})"
            )
        dirs = [root] if _holds_modalities(root) else list(_walk_case_dirs(root))
        found = [scan_case(case_id_of(d.name), d) for d in dirs]
        if not found:
            raise StrokeLRPError(
                f"{root}: no ISLES 2017 case found (expected training_N folders, or folders "
                "holding MR_ADC/MR_MTT/MR_rCBF/MR_rCBV/MR_Tmax/MR_TTP/OT sub-folders)"
            )
        return found
