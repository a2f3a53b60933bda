"""Medical Segmentation Decathlon: one 4-D image per case, channels along the 4th axis.

Layout::

    ROOT/dataset.json   {"modality": {"0": "FLAIR", "1": "T1w"},
                         "labels": {"0": "background", "1": "lesion"},
                         "training": [{"image": "./imagesTr/X_001.nii.gz",
                                       "label": "./labelsTr/X_001.nii.gz"}, ...],
                         "test": ["./imagesTs/X_101.nii.gz", ...]}
    ROOT/imagesTr/X_001.nii.gz   (X, Y, Z, C), or (X, Y, Z) for one modality
    ROOT/labelsTr/X_001.nii.gz   (integer labels)

Channels are named by ``modality`` (``channels`` picks a subset); frame c of the image is
channel c. The lesion class is chosen as for nnU-Net raw (by name, else the only foreground
class, else the one named like a lesion). Without ``training``/``test`` lists, imagesTr and
imagesTs are listed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from strokelrp.data.layouts import json_layout
from strokelrp.data.layouts.base import (
    CaseFolder,
    Layout,
    is_ignored,
    list_folder,
    nifti_stem,
)
from strokelrp.errors import StrokeLRPError


class Decathlon(Layout):
    """Medical Segmentation Decathlon (``dataset.json`` with ``modality``; 4-D images)."""

    name = "msd"
    title = "Medical Segmentation Decathlon"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return json_layout.has_key(root, "modality")

    def channel_names(self, root: Path) -> tuple[str, ...]:
        doc = json_layout.load_dataset_json(root)
        path = root / json_layout.DATASET_JSON
        return json_layout.indexed_names(doc.get("modality"), "modality", path)

    def discover(self, root: Path) -> list[CaseFolder]:
        path = root / json_layout.DATASET_JSON
        doc = json_layout.load_dataset_json(root)
        all_channels = json_layout.indexed_names(doc.get("modality"), "modality", path)
        labels = _labels(doc.get("labels"), path)
        spec = json_layout.read_spec(
            self, all_channels, labels, path, lambda c: f"{c} (frame {all_channels.index(c)})"
        )
        channels = spec.channels
        if len(all_channels) > 1:  # a single-modality image is 3-D: no frame to pick
            spec = replace(spec, frames={c: all_channels.index(c) for c in channels})
        pairs = _pairs(root, doc, path)
        if not pairs:
            raise StrokeLRPError(f"{root}: no Decathlon case found (imagesTr/*.nii.gz)")
        cases = []
        for image, label, split in pairs:
            files = {c: [image] for c in channels}
            missing = {}
            if label is not None:
                if label.exists() or label.is_symlink():
                    files["label"] = [label]
                else:
                    missing["label"] = f"no label {label.relative_to(root).as_posix()}"
            for c in channels:
                if not (image.exists() or image.is_symlink()):
                    files.pop(c)
                    missing[c] = f"no image {image.relative_to(root).as_posix()}"
            case_id = nifti_stem(image.name) or image.name
            cases.append(
                CaseFolder(
                    case_id,
                    image.parent,
                    files,
                    {},
                    {},
                    [],
                    spec,
                    self.name,
                    missing,
                    split=split,
                )
            )
        return cases


def _labels(raw: object, path: Path) -> dict[str, int]:
    """The Decathlon's ``labels`` (value -> name) as name -> value."""
    if not isinstance(raw, dict) or not raw:
        raise StrokeLRPError(f'{path}: labels must be a non-empty object {{"0": name, ...}}')
    try:
        return {str(name): int(value) for value, name in raw.items()}
    except (TypeError, ValueError):
        raise StrokeLRPError(f"{path}: labels keys must be integer values") from None


def _pairs(root: Path, doc: dict, path: Path) -> list[tuple[Path, Path | None, str]]:
    """(image, label or None, split) per case, from the lists of ``dataset.json`` or the
    folders."""

    def under(rel: object) -> Path:
        if not isinstance(rel, str):
            raise StrokeLRPError(f"{path}: a file entry is {rel!r}, not a path")
        return root / rel

    out: list[tuple[Path, Path | None, str]] = []
    if "training" in doc or "test" in doc:
        for entry in doc.get("training") or []:
            if not isinstance(entry, dict) or "image" not in entry:
                raise StrokeLRPError(f"{path}: a training entry lacks an image: {entry!r}")
            label = under(entry["label"]) if entry.get("label") else None
            out.append((under(entry["image"]), label, ""))
        out += [(under(e), None, "test") for e in doc.get("test") or []]
        return out
    for folder, split in (("imagesTr", ""), ("imagesTs", "test")):
        for image in list_folder(root / folder) if (root / folder).is_dir() else []:
            if is_ignored(image) or nifti_stem(image.name) is None:
                continue
            label = root / "labelsTr" / image.name if split == "" else None
            out.append((image, label, split))
    return out
