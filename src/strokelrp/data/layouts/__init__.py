"""Data layouts behind one reader: detect a tree's layout, list its cases, read them.

Each module here is one layout (a :class:`~strokelrp.data.layouts.base.Layout` subclass that
finds files and says how to read them); :func:`strokelrp.data.layouts.base.read_case` reads
every layout the same way into a :class:`~strokelrp.data.layouts.base.Case`. The registry
:data:`LAYOUTS` lists them in detection order (the first whose ``detect`` says yes is used):
nnU-Net raw, Decathlon, ISLES 2024, ISLES 2022, ISLES 2017.

Every reader of a tree (``inspect``, :func:`load_cases`, ``CaseDataset``) starts with
:func:`select_cases`. ``layout`` forces a layout by name, ``channels`` chooses the channels
(by name, in order; the layout's default otherwise), ``lesion`` the label class read as
lesion (nnU-Net raw, Decathlon).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from strokelrp.data.layouts.base import (
    Case,
    CaseFolder,
    CaseReport,
    Layout,
    OnError,
    case_report,
    case_sort_key,
    check_on_error,
    format_grid,
    format_spacing,
    raise_or_warn,
    read_case,
    relative_name,
    reorient_to_canonical,
)
from strokelrp.data.layouts.isles2017 import Isles2017, case_id_of
from strokelrp.data.layouts.isles2022 import Isles2022
from strokelrp.data.layouts.isles2024 import Isles2024
from strokelrp.data.layouts.msd import Decathlon
from strokelrp.data.layouts.nnunet import NnUNetRaw
from strokelrp.errors import StrokeLRPError

LAYOUTS: dict[str, type[Layout]] = {
    cls.name: cls for cls in (NnUNetRaw, Decathlon, Isles2024, Isles2022, Isles2017)
}
"""Layout name -> class, in detection order."""


def shown_channel(channels: Iterable[str], asked: str | None = None) -> str:
    """The channel figure 1 shows: ``asked`` (one of ``channels``, any letter case), else the
    paper's rCBF for ISLES 2017's channels, else the first channel."""
    from strokelrp.data.layouts.isles2017 import CHANNELS, FIGURE_CHANNEL

    names = tuple(channels)
    if asked is not None:
        lookup = {c.lower(): c for c in names}
        if asked.lower() not in lookup:
            raise StrokeLRPError(
                f"channel {asked!r} is not one of the data's channels ({', '.join(names)})"
            )
        return lookup[asked.lower()]
    return FIGURE_CHANNEL if names == CHANNELS else names[0]


def detect_layout(root: str | Path) -> type[Layout]:
    """The layout of the tree ``root`` (the first of :data:`LAYOUTS` that detects it)."""
    root = Path(root)
    if not root.exists():
        raise StrokeLRPError(f"{root}: no such folder")
    if not root.is_dir():
        raise StrokeLRPError(f"{root}: not a folder")
    for cls in LAYOUTS.values():
        if cls.detect(root):
            return cls
    titles = ", ".join(cls.title for cls in LAYOUTS.values())
    raise StrokeLRPError(
        f"{root}: no known data layout found (tried {titles}); see docs/data.md, or force one "
        "with --layout"
    )


def open_layout(
    root: str | Path,
    layout: str | None = None,
    channels: Iterable[str] | None = None,
    lesion: str | None = None,
) -> Layout:
    """The layout reader for ``root``: ``layout`` by name, else detected."""
    if layout is None:
        cls = detect_layout(root)
    else:
        try:
            cls = LAYOUTS[layout]
        except KeyError:
            raise StrokeLRPError(
                f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}"
            ) from None
    return cls(channels=channels, lesion=lesion)


def discover_cases(
    root: str | Path,
    layout: str | None = None,
    channels: Iterable[str] | None = None,
    lesion: str | None = None,
) -> list[CaseFolder]:
    """The cases under ``root`` (natural order of case id) in its (given or detected) layout."""
    root = Path(root)
    if not root.exists():
        raise StrokeLRPError(f"{root}: no such folder")
    if not root.is_dir():
        raise StrokeLRPError(f"{root}: not a folder")
    reader = open_layout(root, layout, channels, lesion)
    found = reader.discover(root)
    if not found:
        raise StrokeLRPError(f"{root}: no {reader.title} case found")
    return sorted(found, key=lambda c: (case_sort_key(c.case_id), str(c.path)))


def _plain_id(case: str) -> str:
    """A case named as users copy it: ``training_4`` -> ``4``, ``sub-strokecase0001`` ->
    ``strokecase0001``."""
    case = str(case)
    if case.lower().startswith("sub-"):
        return case[4:]
    return case_id_of(case)


def select_cases(
    root: Path,
    cases: Iterable[str] | None = None,
    layout: str | None = None,
    channels: Iterable[str] | None = None,
    lesion: str | None = None,
) -> list[tuple[CaseFolder, list[str]]]:
    """The cases under ``root`` (restricted to ``cases``), each with its duplicate-id problems
    (empty unless an earlier case already has its id).

    The first step of every reader of a tree: select, then check duplicates; the caller reads
    each case and hands all problems to :func:`raise_or_warn`. ``cases`` may name a case by
    id (``4``) or folder (``training_4``, ``sub-strokecase0001``); an unknown one raises
    :class:`StrokeLRPError` listing the ids the data holds.
    """
    root = Path(root)
    folders = discover_cases(root, layout, channels, lesion)
    if cases is not None:
        known = {f.case_id for f in folders}
        wanted = [str(c) if str(c) in known else _plain_id(c) for c in cases]
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


def inspect_data(
    root: str | Path,
    cases: Iterable[str] | None = None,
    layout: str | None = None,
    channels: Iterable[str] | None = None,
    lesion: str | None = None,
    voxels: bool = True,
) -> Iterator[CaseReport]:
    """Validate every case under ``root`` one at a time, yielding one :class:`CaseReport` each
    (as soon as it is checked; one channel in memory at a time, no case assembled).
    ``voxels=False`` checks files, headers, grids and the memory budget only (no voxel read;
    no lesion volume).

    Never raises for a bad case (its problems are in the report); raises
    :class:`StrokeLRPError` only when ``root`` is missing, has no known layout or no case.
    """
    root = Path(root)
    for folder, duplicate in select_cases(root, cases, layout, channels, lesion):
        notes: list[str] = []
        summary: dict = {}
        _case, problems = read_case(
            folder, root, keep=False, notes=notes, voxels=voxels, summary=summary
        )
        yield case_report(folder, root, duplicate + problems, notes, summary)


def load_cases(
    root: str | Path,
    on_error: OnError = "raise",
    cases: Iterable[str] | None = None,
    layout: str | None = None,
    channels: Iterable[str] | None = None,
    lesion: str | None = None,
) -> list[Case]:
    """Load the cases under ``root`` (natural order of case id) -> list of :class:`Case`.

    ``on_error="raise"``: any problem raises :class:`DataError` listing all problems of all
    cases. ``"skip"``: each problem is warned (one line each) and the valid cases are
    returned. ``cases`` restricts loading to these case ids.
    """
    check_on_error(on_error)
    root = Path(root)
    loaded: list[Case] = []
    problems: list[str] = []
    for folder, duplicate in select_cases(root, cases, layout, channels, lesion):
        case, found = read_case(folder, root)
        found = duplicate + found
        if found:
            problems += found
        elif case is not None:
            loaded.append(case)
    raise_or_warn(problems, on_error)
    return loaded


def load_case(
    data: str | Path,
    case_id: str,
    layout: str | None = None,
    channels: Iterable[str] | None = None,
    lesion: str | None = None,
) -> Case:
    """The one case ``case_id`` (its id or folder name) of the tree ``data`` (a clear error if
    absent)."""
    root = Path(data)
    if not root.is_dir():
        raise StrokeLRPError(f"data folder {root} does not exist")
    found = load_cases(root, cases=[case_id], layout=layout, channels=channels, lesion=lesion)
    if len(found) != 1:
        raise StrokeLRPError(f"case {case_id}: not found in {root}")
    return found[0]


def ground_truth_title(case: Case, lesion: str = "") -> str:
    """What ``case``'s ground truth is, for a figure panel's title: the label folder and the
    lesion class for the dataset.json layouts (``labelsTr, class lesion``), the BIDS suffix of
    ISLES 2022 / 2024's mask (``msk``, ``lesion-msk``), ISLES 2017's ``OT``; ``""`` when the
    case has no label file."""
    from strokelrp.data.layouts.base import nifti_stem

    files = [p for key, p in case.paths.items() if key not in case.channels]
    if case.label is None or not files:
        return ""
    path = Path(files[0])
    if case.layout in ("nnunet", "msd"):
        return f"{path.parent.name}, class {lesion}" if lesion else path.parent.name
    if case.layout in ("isles2022", "isles2024"):
        return (nifti_stem(path.name) or path.name).rsplit("_", 1)[-1]
    return next(key for key in case.paths if key not in case.channels)


__all__ = [
    "LAYOUTS",
    "Case",
    "CaseFolder",
    "CaseReport",
    "Layout",
    "OnError",
    "case_sort_key",
    "check_on_error",
    "detect_layout",
    "discover_cases",
    "format_grid",
    "format_spacing",
    "ground_truth_title",
    "inspect_data",
    "load_case",
    "load_cases",
    "open_layout",
    "raise_or_warn",
    "read_case",
    "relative_name",
    "reorient_to_canonical",
    "select_cases",
    "shown_channel",
]
