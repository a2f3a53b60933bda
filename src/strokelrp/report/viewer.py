"""The interactive 3-D relevance viewer: one self-contained HTML page per explained case.

The page shows a channel's MR volume with the relevance of one setting (or method) as a
symmetric diverging overlay in three planes and 3-D, the ground truth and prediction as
outlines, a threshold slider, a crosshair read-out of intensity and relevance, and a
radiological/neurological toggle. It runs NiiVue (``@niivue/niivue`` from npm, BSD-2-Clause,
built into ``viewer_assets/`` by ``make``) with the volumes embedded as base64 NIfTI, so it
works offline from a file, a local server or a notebook.

A function of arrays: :class:`ViewerCase` holds 3-D volumes that share one voxel grid and
affine (the files' own voxel order); :func:`strokelrp.pipeline.view.viewer_case` fills it
from an explanation folder.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from strokelrp.atomic import write_bytes
from strokelrp.errors import StrokeLRPError

ASSETS = Path(__file__).with_name("viewer_assets")
NIIVUE_JS = "niivue.umd.js"
"""NiiVue's UMD build (defines ``window.niivue``), copied from the npm package by ``make``."""
LICENCES = ("NIIVUE_LICENSE", "THIRD_PARTY_LICENSES")
"""NiiVue's licence and those of the packages bundled into its build, shipped beside it."""


@dataclass
class ViewerCase:
    """What one viewer page shows; every array in the same (x, y, z) voxel grid of ``affine``.

    ``mr``: channel -> intensity volume (may be empty: the relevance is then shown alone);
    ``relevance``: setting label -> channel -> signed relevance volume (every setting has every
    channel of ``channels``); ``truth`` / ``prediction``: 0/1 masks or None.
    """

    case_id: str
    channels: list[str]
    affine: np.ndarray
    relevance: dict[str, dict[str, np.ndarray]]
    mr: dict[str, np.ndarray] = field(default_factory=dict)
    truth: np.ndarray | None = None
    prediction: np.ndarray | None = None
    start_channel: str | None = None
    notes: list[str] = field(default_factory=list)

    def shape(self) -> tuple[int, int, int]:
        """The common grid; raises naming the first volume of another shape."""
        first = next(iter(next(iter(self.relevance.values())).values()))
        grid = tuple(first.shape)
        named = [(f"relevance {s} {c}", v) for s, d in self.relevance.items() for c, v in d.items()]
        named += [(f"MR {c}", v) for c, v in self.mr.items()]
        named += [(n, v) for n, v in (("truth", self.truth), ("prediction", self.prediction))]
        for name, volume in named:
            if volume is not None and tuple(volume.shape) != grid:
                raise StrokeLRPError(
                    f"case {self.case_id}: {name} has shape {tuple(volume.shape)}, the relevance "
                    f"{grid}: the viewer needs one grid"
                )
        if len(grid) != 3:
            raise StrokeLRPError(f"case {self.case_id}: the viewer needs 3-D volumes, got {grid}")
        return grid  # type: ignore[return-value]


def niivue_path() -> Path:
    """The NiiVue build; a clear error when it was not built (``make viewer``)."""
    path = ASSETS / NIIVUE_JS
    if not path.is_file():
        raise StrokeLRPError(
            f"the viewer's JavaScript {path} is missing: run `make viewer` in the strokelrp "
            "source folder (it installs @niivue/niivue from npm)"
        )
    return path


def copy_assets(folder: Path) -> Path:
    """Copy NiiVue and its licences into ``folder`` (created); -> the NiiVue file there."""
    source = niivue_path()
    folder.mkdir(parents=True, exist_ok=True)
    for name in (NIIVUE_JS, *LICENCES):
        if (ASSETS / name).is_file():
            write_bytes(folder / name, (ASSETS / name).read_bytes())
    return folder / source.name


def _nifti_b64(volume: np.ndarray, affine: np.ndarray) -> str:
    """A gzipped NIfTI-1 of ``volume`` (float32, or uint8 for masks) as base64 text."""
    mask = volume.dtype in (np.bool_, np.uint8)
    img = nib.Nifti1Image(np.asarray(volume, dtype=np.uint8 if mask else np.float32), affine)
    if mask:
        img.header.set_intent("label")  # NiiVue draws label volumes as outlines
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    return base64.b64encode(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)).decode()


def _to_ras(affine: np.ndarray) -> list[tuple[int, bool]]:
    """Per RAS axis: (the files' axis, whether it runs backwards), from the affine."""
    ornt = nib.orientations.io_orientation(affine)
    found = {int(ras): (axis, bool(sign < 0)) for axis, (ras, sign) in enumerate(ornt)}
    return [found[k] for k in range(3)]


def _focus(case: ViewerCase, to_ras: list[tuple[int, bool]]) -> list[int] | None:
    """The RAS voxel at the centre of the largest mask (truth, else prediction), or None."""
    for mask in (case.truth, case.prediction):
        if mask is not None and mask.any():
            centre = np.round(np.argwhere(mask > 0).mean(0)).astype(int)
            inside = np.argwhere(mask > 0)
            ijk = inside[np.argmin(((inside - centre) ** 2).sum(1))]  # a voxel of the mask
            shape = mask.shape
            return [
                int(shape[axis] - 1 - ijk[axis] if flip else ijk[axis]) for axis, flip in to_ras
            ]
    return None


def viewer_data(case: ViewerCase) -> dict[str, Any]:
    """The page's data: names, per-channel peaks, grid and orientation, base64 volumes."""
    shape = case.shape()
    affine = np.asarray(case.affine, dtype=np.float64)
    volumes: dict[str, str] = {}
    peaks: dict[str, dict[str, float]] = {}
    for setting, channels in case.relevance.items():
        missing = [c for c in case.channels if c not in channels]
        if missing:
            raise StrokeLRPError(f"case {case.case_id}: {setting} lacks channels {missing}")
        peaks[setting] = {}
        for channel in case.channels:
            values = np.asarray(channels[channel], dtype=np.float32)
            peaks[setting][channel] = float(np.abs(values).max())
            volumes[f"relevance/{setting}/{channel}"] = _nifti_b64(values, affine)
    for channel, values in case.mr.items():
        volumes[f"mr/{channel}"] = _nifti_b64(np.asarray(values, dtype=np.float32), affine)
    for name, mask in (("truth", case.truth), ("prediction", case.prediction)):
        if mask is not None:
            volumes[name] = _nifti_b64((np.asarray(mask) > 0).astype(np.uint8), affine)
    to_ras = _to_ras(affine)
    focus = _focus(case, to_ras)
    return {
        "case": case.case_id,
        "channels": list(case.channels),
        "start_channel": case.start_channel,
        "settings": list(case.relevance),
        "peaks": peaks,
        "shape": list(shape),
        "to_ras": [[axis, flip] for axis, flip in to_ras],
        "orientation": "".join(nib.orientations.aff2axcodes(affine)),
        "focus_ras": focus,
        "volumes": volumes,
    }


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>strokelrp viewer: case {case}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0.5em;
       color: #222; font-size: 14px; }}
#controls label {{ margin-right: 1em; white-space: nowrap; }}
#strokelrp-box {{ width: 100%; height: 560px; background: #000; }}
.legend {{ margin: 0.3em 0; }} .swatch {{ display: inline-block; width: 1em; height: 0.8em; }}
#readout {{ font-family: monospace; margin: 0.3em 0; }}
</style></head>
<body>
<div id="controls">
<label>channel <select id="channel"></select></label>
<label>setting / method <select id="setting"></select></label>
<label>threshold |R| / max <input id="threshold" type="range" min="0" max="0.95" step="0.05"
 value="0.1"></label>
<label>view <select id="layout"><option value="multiplanar">3 planes + 3-D</option>
<option value="axial">axial</option><option value="coronal">coronal</option>
<option value="sagittal">sagittal</option><option value="render">3-D</option></select></label>
<label><input id="radiological" type="checkbox" checked> radiological</label>
<label><input id="outline-truth" type="checkbox" checked>
 <span class="swatch" style="background:#00c800"></span> ground truth</label>
<label><input id="outline-prediction" type="checkbox" checked>
 <span class="swatch" style="background:#ffc800"></span> prediction</label>
</div>
<p class="legend"><span class="swatch" style="background:#b2182b"></span> positive relevance:
evidence <b>for</b> the lesion &nbsp; <span class="swatch" style="background:#2166ac"></span>
negative: evidence <b>against</b> it; <span id="scale"></span></p>
<p class="legend">Orientation: <span id="orientation"></span> (files stored {orientation};
letters on the panels).</p>
<div id="strokelrp-box"><canvas id="strokelrp-gl"></canvas></div>
<div id="readout">loading…</div>
{notes}
<script id="strokelrp-data" type="application/json">{data}</script>
{niivue}
<script>{viewer}</script>
</body></html>
"""


def viewer_page(case: ViewerCase, niivue_src: str | None = None) -> str:
    """The page of ``case``; NiiVue loaded from ``niivue_src`` (a URL relative to the page) or,
    with None, inlined (a single file for a notebook)."""
    if niivue_src is None:
        niivue = f"<script>{niivue_path().read_text(encoding='utf-8')}</script>"
    else:
        niivue = f'<script src="{html.escape(niivue_src, quote=True)}"></script>'
    data = json.dumps(viewer_data(case)).replace("</", "<\\/")
    notes = "".join(f'<p class="legend">{html.escape(n)}</p>' for n in case.notes)
    return PAGE.format(
        case=html.escape(case.case_id),
        orientation=html.escape("".join(nib.orientations.aff2axcodes(case.affine))),
        notes=notes,
        data=data,
        niivue=niivue,
        viewer=(ASSETS / "viewer.js").read_text(encoding="utf-8"),
    )


def relevance_channels(
    volume: np.ndarray, channels: list[str], what: str
) -> Mapping[str, np.ndarray]:
    """Channel -> 3-D volume of a relevance array (x, y, z) or (x, y, z, C)."""
    volume = np.asarray(volume)
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4 or volume.shape[3] != len(channels):
        raise StrokeLRPError(
            f"{what}: shape {volume.shape} does not hold the {len(channels)} channels {channels}"
        )
    return {c: volume[..., k] for k, c in enumerate(channels)}
