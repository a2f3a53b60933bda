"""nnU-Net raw data sets (nnU-Net v2's ``Dataset###_NAME`` folders), read by strokelrp itself.

Layout::

    ROOT/dataset.json      {"channel_names": {"0": "DWI", "1": "ADC"},
                            "labels": {"background": 0, "lesion": 1}, "file_ending": ".nii.gz"}
    ROOT/imagesTr/CASE_0000.nii.gz   (channel 0 of CASE), CASE_0001.nii.gz (channel 1), ...
    ROOT/labelsTr/CASE.nii.gz        (integer labels)
    ROOT/imagesTs/CASE_0000.nii.gz   (test cases: no labels)

Channels are named by ``channel_names`` (``channels`` picks a subset, by name). Labels may hold
several classes; the lesion class is chosen by name (``lesion``), else the only foreground
class, else the one named like a lesion; the others read as background. Region-based labels
(a class given as a list of values) are refused. Only NIfTI ``file_ending`` values are read.
All channels must share one grid (nnU-Net requires it too).
"""

from __future__ import annotations

import re
from pathlib import Path

from strokelrp.data.layouts import json_layout
from strokelrp.data.layouts.base import CaseFolder, Layout, ReadSpec, is_ignored, list_folder
from strokelrp.errors import StrokeLRPError

_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<index>\d{4})$")


class NnUNetRaw(Layout):
    """nnU-Net raw (``dataset.json`` with ``channel_names``; imagesTr, labelsTr, imagesTs)."""

    name = "nnunet"
    title = "nnU-Net raw"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return json_layout.has_key(root, "channel_names")

    def channel_names(self, root: Path) -> tuple[str, ...]:
        doc = json_layout.load_dataset_json(root)
        path = root / json_layout.DATASET_JSON
        return json_layout.indexed_names(doc.get("channel_names"), "channel_names", path)

    def discover(self, root: Path) -> list[CaseFolder]:
        path = root / json_layout.DATASET_JSON
        doc = json_layout.load_dataset_json(root)
        all_channels = json_layout.indexed_names(doc.get("channel_names"), "channel_names", path)
        ending = str(doc.get("file_ending", ".nii.gz"))
        if ending.lower() not in (".nii.gz", ".nii"):
            raise StrokeLRPError(
                f"{path}: file_ending {ending!r} is not read (only .nii.gz and .nii)"
            )
        labels = _labels(doc.get("labels"), path)
        index = {name: all_channels.index(name) for name in all_channels}
        spec = json_layout.read_spec(
            self, all_channels, labels, path, lambda c: f"channel {index[c]:04d} ({c})"
        )
        index = {name: index[name] for name in spec.channels}
        cases: list[CaseFolder] = []
        for images, label_dir, split in (("imagesTr", "labelsTr", ""), ("imagesTs", None, "test")):
            cases += self._split(root, images, label_dir, ending, index, spec, split)
        if not cases:
            raise StrokeLRPError(f"{root}: no nnU-Net case found (imagesTr/CASE_0000{ending})")
        return cases

    def _split(
        self,
        root: Path,
        images: str,
        label_dir: str | None,
        ending: str,
        index: dict[str, int],
        spec: ReadSpec,
        split: str,
    ) -> list[CaseFolder]:
        folder = root / images
        if not folder.is_dir():
            return []
        trouble: list[tuple[Path, str]] = []
        by_case: dict[str, dict[int, list[Path]]] = {}
        for path in list_folder(folder, trouble):
            if is_ignored(path) or not path.name.lower().endswith(ending.lower()):
                continue
            match = _CHANNEL_FILE.match(path.name[: -len(ending)])
            if match:
                by_case.setdefault(match["case"], {}).setdefault(int(match["index"]), []).append(
                    path
                )
        out = []
        for case_id, found in by_case.items():
            files = {c: found[i] for c, i in index.items() if i in found}
            if label_dir is not None:
                label = root / label_dir / f"{case_id}{ending}"
                if label.exists() or label.is_symlink():
                    files["label"] = [label]
            missing = {
                c: f"missing channel {i:04d} ({c}): no {case_id}_{i:04d}{ending} in {images}"
                for c, i in index.items()
            }
            if label_dir is not None:
                missing["label"] = f"no label {label_dir}/{case_id}{ending}"
            out.append(
                CaseFolder(
                    case_id,
                    folder,
                    files,
                    {},
                    {},
                    list(trouble),
                    spec,
                    self.name,
                    missing,
                    split=split,
                )
            )
        return out


def _labels(raw: object, path: Path) -> dict[str, int]:
    """nnU-Net's ``labels`` (name -> value); region-based labels (lists) are refused."""
    if not isinstance(raw, dict) or not raw:
        raise StrokeLRPError(f"{path}: labels must be a non-empty object {{name: value}}")
    out: dict[str, int] = {}
    for name, value in raw.items():
        if isinstance(value, list):
            raise StrokeLRPError(
                f"{path}: label {name!r} is region-based ({value}); strokelrp reads one integer "
                "value per class"
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise StrokeLRPError(f"{path}: label {name!r} has value {value!r}, not an integer")
        out[str(name)] = value
    return out
