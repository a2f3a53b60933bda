"""The cases an nnU-Net model explains, from any layout the data layer reads.

nnU-Net reads a case as one 3-D file per channel, all on one grid, in ``dataset.json``'s
channel order. A data set in another layout (ISLES 2017, ISLES 2022, ISLES 2024, BIDS-style
trees, nnU-Net raw, Decathlon: :mod:`strokelrp.data.layouts`) names its channels in its own
words and may store them otherwise. :func:`load_nnunet_case` therefore

1. maps the model's channel names onto the data's by name
   (:func:`strokelrp.data.layouts.channel_names.match_channels`: letter case, separators and
   the usual aliases aside) and refuses a channel it cannot find, or finds twice;
2. reads the case with the data layer (every file checked; a channel on another grid that the
   layout allows to be resampled, FLAIR of ISLES 2022, resampled onto the reference grid);
3. hands nnU-Net each channel's own file where it is a 3-D file on the case's reference grid,
   and otherwise (a frame of a Decathlon 4-D image, a resampled channel, a channel stored in
   another voxel order) a 3-D float32 copy of the values as read, written on the reference
   file's grid with its affine and header into ``stage`` (what ``nnUNetv2_convert_MSD_dataset``
   does for a Decathlon image). The native grid nnU-Net preprocesses and the maps are written
   back onto is always the data's own reference file's;
4. keeps the case's ground truth, when the layout has one (``labelsTr``, ISLES 2022/2024's
   ``derivatives`` ``msk``, ISLES 2017's ``OT``), as a lesion mask: the data's label class of
   the model's class name when the data set has one, else the layout's lesion class. A label
   that cannot be read is noted and left out; it never stops the explanation.

:func:`case_files` and :func:`list_cases` are the entry points the cohort commands use.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from strokelrp.errors import DataError, StrokeLRPError

AFFINE_ATOL_MM = 1e-4
"""A channel file whose affine is within this of the reference's (and on its grid) is read by
nnU-Net as it is stored; otherwise a copy on the reference grid is staged."""


@dataclass
class ChannelSource:
    """Where one of the model's channels comes from: the model's and the data's name, the
    data's file, how it was read (``"as stored"``, ``"frame 1 of the 4-D image"``, ...) and the
    staged copy nnU-Net reads instead (``None``: the file itself)."""

    channel: str
    data_channel: str
    file: Path
    read: str
    staged: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "data_channel": self.data_channel,
            "file": str(self.file),
            "read": self.read,
        }


@dataclass
class NnUNetCase:
    """One case as nnU-Net reads it.

    ``files``: one 3-D NIfTI per model channel, in ``dataset.json``'s order (the first one's
    grid, affine and header are the native grid of the maps); ``label``: the ground-truth
    lesion mask (D, H, W) uint8 in RAS order on that grid, or ``None``; ``label_name``: what
    the ground truth is (``"labelsTr, class lesion"``, ``"msk"``, ``"OT"``); ``label_file``
    its file; ``sources``: per model channel where it came from; ``data``: the data folder
    (``None`` for ``--image`` files); ``layout``: the data layout's name."""

    case_id: str
    files: list[Path]
    label: np.ndarray | None = None
    label_name: str = ""
    label_file: Path | None = None
    sources: list[ChannelSource] = field(default_factory=list)
    data: Path | None = None
    layout: str = ""
    notes: list[str] = field(default_factory=list)

    def source_files(self) -> dict[str, Path]:
        """Model channel (and ``label``) -> the data's own file (for provenance)."""
        files = {s.channel: s.file for s in self.sources} or {
            f"channel{c}": f for c, f in enumerate(self.files)
        }
        return files | ({"label": self.label_file} if self.label_file is not None else {})


def model_channels(dataset: dict[str, Any]) -> list[str]:
    """A model's input channels in order (``dataset.json`` ``channel_names``, or v1's
    ``modality``)."""
    names = dataset.get("channel_names") or dataset.get("modality") or {}
    return [str(names[k]) for k in sorted(names, key=int)]


def _class_name(dataset: dict[str, Any], class_index: int) -> str | None:
    for name, value in (dataset.get("labels") or {}).items():
        if value == class_index:
            return str(name)
    return None


def _lesion_choice(layout: Any, root: Path, dataset: dict[str, Any], class_index: int) -> Any:
    """The data's label class for the model's ``class_index``: the same name when the data's
    ``dataset.json`` has it, else ``None`` (the layout's own lesion class)."""
    from strokelrp.data.layouts import json_layout

    name = _class_name(dataset, class_index)
    if name is None or layout.name not in ("nnunet", "msd"):
        return None
    labels = json_layout.load_dataset_json(root).get("labels") or {}
    names = labels.keys() if layout.name == "nnunet" else labels.values()
    return name if name.lower() in {str(n).lower() for n in names} else None


@dataclass
class _Opened:
    root: Path
    layout: str
    mapped: tuple[str, ...]
    notes: list[str]
    channels: tuple[str, ...] | None
    lesion: str | None


def _open(data: str | Path, dataset: dict[str, Any], class_index: int, what: str) -> _Opened:
    from strokelrp.data.layouts import detect_layout
    from strokelrp.data.layouts.channel_names import match_channels

    root = Path(data)
    cls = detect_layout(root)
    layout = cls()
    wanted = model_channels(dataset)
    if not wanted:
        raise StrokeLRPError("the model's dataset.json names no channel (channel_names)")
    mapped, notes = match_channels(wanted, layout.channel_names(root), f"{what} ({cls.title})")
    return _Opened(
        root,
        cls.name,
        mapped,
        notes,
        None if cls.name == "isles2017" else mapped,  # ISLES 2017 always lists all six
        _lesion_choice(cls, root, dataset, class_index),
    )


def list_cases(data: Path, dataset: dict[str, Any]) -> list[str]:
    """Every case id of the data set ``data`` (any layout), natural order; where the data set
    has a test split (nnU-Net's ``imagesTs``), its cases only, as ``nnUNetv2_predict`` on
    ``imagesTs``."""
    from strokelrp.data.layouts import discover_cases

    opened = _open(data, dataset, 1, str(data))
    folders = discover_cases(opened.root, opened.layout, opened.channels, opened.lesion)
    tests = [f for f in folders if f.split == "test"]
    return list(dict.fromkeys(f.case_id for f in (tests or folders)))


def _choose(folders: list[Any], case_id: str) -> Any:
    """The case's folder; of one id in two splits (nnU-Net's imagesTr and imagesTs), the test
    one."""
    if not folders:
        raise StrokeLRPError(f"case {case_id}: not found")
    return sorted(folders, key=lambda f: f.split != "test")[0]


def _on_grid(path: Path, case: Any) -> bool:
    """Whether ``path`` is a 3-D file on the case's reference grid (shape, affine)."""
    from strokelrp.data.nifti_file import read_header

    try:
        meta = read_header(path)
    except Exception:  # a 4-D image or any other reason: read the values as the reader did
        return False
    return tuple(meta.shape) == tuple(case.native_grid) and np.allclose(
        meta.affine, case.native_affine, rtol=0, atol=AFFINE_ATOL_MM
    )


_DEFAULT_STAGE: list[Path] = []


def default_stage() -> Path:
    """A temporary folder for staged channel files, removed when the process ends."""
    if not _DEFAULT_STAGE:
        folder = Path(tempfile.mkdtemp(prefix="strokelrp-nnunet-cases-"))
        atexit.register(shutil.rmtree, folder, True)
        _DEFAULT_STAGE.append(folder)
    return _DEFAULT_STAGE[0]


def load_nnunet_case(
    data: str | Path,
    case_id: str,
    dataset: dict[str, Any],
    *,
    class_index: int = 1,
    stage: str | Path | None = None,
) -> NnUNetCase:
    """The case ``case_id`` of the data set ``data`` (any layout) for a model whose
    ``dataset.json`` is ``dataset``: channel files in the model's order (copies staged under
    ``stage`` where needed; default :func:`default_stage`) and the ground truth of
    ``class_index``. Raises :class:`StrokeLRPError` / :class:`DataError` naming the case,
    the files and what is missing, ambiguous or unreadable."""
    from strokelrp.core.orientation import to_file_order
    from strokelrp.data.layouts import ground_truth_title, read_case, select_cases
    from strokelrp.families.nnunet.preprocess import write_on_grid

    root = Path(data)
    opened = _open(root, dataset, class_index, f"case {case_id} of {root}")
    selected = select_cases(root, [case_id], opened.layout, opened.channels, opened.lesion)
    folder = _choose([f for f, _dup in selected], case_id)
    spec = folder.spec
    mapped = opened.mapped
    spec = dataclasses.replace(
        spec,
        channels=mapped,
        reference=spec.reference if spec.reference in mapped else None,
        resample=frozenset(spec.resample & set(mapped)),
        frames={k: v for k, v in spec.frames.items() if k in mapped},
    )
    folder = dataclasses.replace(folder, spec=spec)
    notes = list(opened.notes)
    case, problems = read_case(folder, root)
    if case is None and spec.label in folder.files:
        without = dataclasses.replace(
            folder,
            files={k: v for k, v in folder.files.items() if k != spec.label},
            missing={k: v for k, v in folder.missing.items() if k != spec.label},
        )
        case, again = read_case(without, root)
        if case is not None:
            notes += [f"ground truth not read: {p}" for p in problems]
        problems = again
    if case is None:
        raise DataError(problems)
    case_id = case.case_id
    where = Path(stage) if stage is not None else default_stage()
    staged_dir: Path | None = None
    files: list[Path] = []
    sources: list[ChannelSource] = []
    names = model_channels(dataset)
    for c, key in enumerate(mapped):
        source = case.paths[key]
        frame = spec.frames.get(key)
        if frame is None and key not in case.resampled and _on_grid(source, case):
            read = "as stored"
            staged = None
        else:
            if frame is not None:
                read = f"frame {frame} of the 4-D image, staged as a 3-D file"
            elif key in case.resampled:
                read = case.resampled[key] + ", staged on the reference grid"
            else:
                read = f"reordered onto the reference file's voxel order ({case.orientation})"
            if staged_dir is None:
                where.mkdir(parents=True, exist_ok=True)
                staged_dir = Path(tempfile.mkdtemp(prefix=f"{case_id}-", dir=where))
            staged = write_on_grid(
                staged_dir / f"{case_id}_{c:04d}.nii.gz",
                to_file_order(case.image[c], case.orientation),
                case.native_affine,
                case.header,
                description=f"strokelrp: {key} of case {case_id}",
            )
        files.append(staged if staged is not None else source)
        sources.append(ChannelSource(names[c], key, source, read, staged))
    label_file = case.paths.get(spec.label) if case.label is not None else None
    lesion = opened.lesion or "/".join(map(str, spec.lesion_values))
    return NnUNetCase(
        case_id=case_id,
        files=files,
        label=case.label,
        label_name="" if label_file is None else ground_truth_title(case, lesion),
        label_file=label_file,
        sources=sources,
        data=root,
        layout=opened.layout,
        notes=notes,
    )


def case_files(data: Path, case_id: str, dataset: dict[str, Any]) -> list[Path]:
    """The files nnU-Net reads for the case ``case_id`` of ``data`` (any layout): one 3-D
    NIfTI per channel of ``dataset`` (a model's ``dataset.json``), in its order
    (:func:`load_nnunet_case`; staged copies live in :func:`default_stage`)."""
    return load_nnunet_case(data, case_id, dataset).files


def image_case(
    files: Sequence[str | Path],
    case_id: str,
    label: str | Path | None = None,
    channels: Sequence[str] = (),
) -> NnUNetCase:
    """A case given as files (``--image``, one per model channel, in order; ``channels``: the
    model's names for them), with an optional ground-truth ``label`` (voxels > 0) on their
    grid."""
    paths = [Path(f) for f in files]
    sources = [
        ChannelSource(name, name, path, "as stored")
        for name, path in zip(channels, paths, strict=False)
    ]
    mask = None
    if label is not None:
        from strokelrp.pipeline.explain_images import read_images

        mask = read_images(paths, label).label
    return NnUNetCase(
        case_id=case_id,
        files=paths,
        label=mask,
        label_name="" if label is None else Path(label).name,
        label_file=None if label is None else Path(label),
        sources=sources if len(sources) == len(paths) else [],
    )
