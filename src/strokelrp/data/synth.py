"""Synthetic ISLES 2017 cases: a head phantom with an ischaemic stroke, in the real layout.

Each case is a brain phantom (brain mask with a bumpy surface, cortical and deep grey
matter, white matter, lateral ventricles, a scalp ring in ADC, Gaussian noise and a smooth
bias field) and a lesion described by a smooth *severity* field ``s`` in [0, 1] inside a
vascular-territory-like region (MCA, ACA or PCA of one hemisphere, or a shower of small
embolic blobs). The stroke signatures follow ``s``:

* hypoperfused tissue (``s > S_HYPO``): Tmax prolonged by up to ~14 s, TTP delayed,
  rCBF reduced by up to 85 %, rCBV by up to 60 %, so MTT = 60 rCBV / rCBF is prolonged;
* core (``s > t_core``): ADC reduced to 45-60 % of normal;
* OT, the final infarct (``s > t_ot`` with ``t_core > t_ot > S_HYPO``): inside the perfusion
  deficit and around the core, as after a stroke that grew into part of its penumbra.

A *control* modality (``control=("MTT",)``) is replaced by independent zero-mean Gaussian noise
inside the brain and exactly 0 outside it: no lesion signature, no tissue contrast, and (the
noise being centred on the value outside the brain) no brain edge in its mean either, so a
model has nothing in it to use. An *uninformative* modality only loses its lesion signature
and keeps its anatomy (which a model may well use).

Units: ADC in 1e-6 mm^2/s (stored as int16), Tmax, TTP and MTT in seconds, rCBF
(ml/100 g/min-like) and rCBV (ml/100 g-like) in relative units, all float32; OT uint8.
Everything is drawn from ``numpy.random.default_rng([seed, case_number])``, so a case is the
same whatever the number of cases asked, and the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from strokelrp.atomic import write_bytes, write_text
from strokelrp.data.layouts.isles2017 import CHANNELS as MODALITIES
from strokelrp.errors import StrokeLRPError

MANIFEST_NAME = "synth_manifest.json"
MANIFEST_VERSION = 1
REAL_CASE_GAPS = (3, 17, 25, 29, 34)
"""Case numbers missing from the real ISLES 2017 training set (1..48)."""
REAL_GRIDS = ((192, 192, 19), (256, 256, 24), (128, 128, 25), (192, 192, 30))
"""Grids (H, W, D) reported for the real set; ``varied_grids`` scales ``shape`` like these."""
_GRID_WEIGHTS = (0.55, 0.15, 0.15, 0.15)
S_HYPO = 0.12
"""Severity above which tissue counts as hypoperfused (Tmax beyond about 2 s of normal)."""

# Mean values per tissue: grey matter, white matter, CSF.
_BASE = {
    "ADC": (850.0, 720.0, 3000.0),
    "rCBF": (55.0, 22.0, 4.0),
    "rCBV": (4.2, 2.0, 0.4),
    "Tmax": (0.4, 0.9, 2.0),
    "TTP": (5.5, 7.0, 9.0),
}
_NOISE_SD = {"ADC": 55.0, "MTT": 0.5, "rCBF": 5.0, "rCBV": 0.35, "Tmax": 0.7, "TTP": 1.0}
# Territories: centre and radii as fractions of the brain's semi-axes (x lateral, y anterior,
# z superior), for the right hemisphere (x > 0; mirrored for the left).
_TERRITORIES = {
    "MCA": ((0.52, 0.05, 0.12), (0.38, 0.48, 0.45)),
    "ACA": ((0.16, 0.48, 0.38), (0.22, 0.38, 0.40)),
    "PCA": ((0.28, -0.62, -0.02), (0.26, 0.30, 0.38)),
}
_PATTERNS = (("MCA", 0.55), ("ACA", 0.13), ("PCA", 0.17), ("scattered", 0.15))
_MODALITY_FILE_ORDER = ("ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP")
CONTROL_SD = {"ADC": 100.0, "MTT": 1.0, "rCBF": 1.0, "rCBV": 1.0, "Tmax": 1.0, "TTP": 1.0}
"""Standard deviation of a control modality's noise (ADC is stored as int16, hence 100)."""


def case_numbers(n_cases: int) -> list[int]:
    """The real training case numbers (1, 2, 4, 5, ... 48 without the gaps), then 49, 50..."""
    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    out: list[int] = []
    number = 0
    while len(out) < n_cases:
        number += 1
        if number not in REAL_CASE_GAPS:
            out.append(number)
    return out


def _resolve_modalities(
    names: tuple[str, ...] | list[str], role: str = "uninformative"
) -> tuple[str, ...]:
    lookup = {m.lower(): m for m in MODALITIES}
    lookup.update({f"mr_{m.lower()}": m for m in MODALITIES})
    out = []
    for name in names:
        for part in str(name).split(","):
            part = part.strip()
            if not part:
                continue
            key = lookup.get(part.lower())
            if key is None:
                raise StrokeLRPError(
                    f"unknown modality {part!r} for {role}; choose from {', '.join(MODALITIES)}"
                )
            if key not in out:
                out.append(key)
    return tuple(out)


@dataclass(frozen=True)
class _Geometry:
    grid: tuple[int, int, int]  # NIfTI (x, y, z) = (W, H, D)
    spacing: tuple[float, float, float]
    affine: np.ndarray


def _geometry(rng: np.random.Generator, grid: tuple[int, int, int]) -> _Geometry:
    nx, ny, nz = grid
    fov = float(rng.uniform(235.0, 265.0))  # in-plane field of view, mm
    slab = float(rng.uniform(118.0, 130.0))  # covered height, mm
    sx = sy = round(fov / max(nx, ny), 4)
    sz = round(slab / nz, 4)
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [(nx - 1) / 2 * sx, (ny - 1) / 2 * sy, -(nz - 1) / 2 * sz]
    affine[:3, 3] += np.round(rng.uniform(-3.0, 3.0, 3), 2)
    return _Geometry(grid, (sx, sy, sz), affine)


class _SmoothField:
    """A smooth random field in mm: Gaussian noise on a coarse grid, cubic-spline sampled."""

    EXTENT_MM = np.array([150.0, 150.0, 110.0])

    def __init__(self, rng: np.random.Generator, step_mm: float) -> None:
        self.step = step_mm
        n = np.ceil(2 * self.EXTENT_MM / step_mm).astype(int) + 4
        coarse = rng.standard_normal(tuple(n))
        self.coeffs = ndimage.spline_filter(coarse, order=3)

    def __call__(self, pts: np.ndarray, where: np.ndarray) -> np.ndarray:
        """Field values (...) at ``pts`` (3, ...) head coordinates in mm, roughly N(0, 0.4).

        Only voxels in the mask ``where`` (...) are evaluated (the rest are 0): sampling the
        spline is the costly part of making a case.
        """
        out = np.zeros(pts.shape[1:], dtype=np.float32)
        sel = pts[:, where]
        idx = (sel + self.EXTENT_MM[:, None]) / self.step + 2
        out[where] = ndimage.map_coordinates(
            self.coeffs, idx, order=3, mode="nearest", prefilter=False
        )
        return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _ellipsoid_distance(pts: np.ndarray, centre, radii) -> np.ndarray:
    c = np.asarray(centre, dtype=np.float64).reshape((3,) + (1,) * (pts.ndim - 1))
    r = np.asarray(radii, dtype=np.float64).reshape(c.shape)
    return np.sqrt((((pts - c) / r) ** 2).sum(axis=0))


def _phantom_case(
    rng: np.random.Generator,
    geom: _Geometry,
    uninformative: tuple[str, ...],
    control: tuple[str, ...] = (),
    control_rng: np.random.Generator | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """Draw one case -> ({modality: (x, y, z) array}, OT (x, y, z) uint8, lesion parameters).

    The ``control`` modalities are drawn as usual from ``rng`` (so the other modalities are
    byte-identical to a set without controls) and then replaced by noise from ``control_rng``.
    """
    nx, ny, nz = geom.grid
    ii, jj, kk = np.meshgrid(
        np.arange(nx, dtype=np.float32),
        np.arange(ny, dtype=np.float32),
        np.arange(nz, dtype=np.float32),
        indexing="ij",
    )
    world = np.stack([ii, jj, kk])  # (3, x, y, z) voxel indices
    world = np.einsum("ab,b...->a...", geom.affine[:3, :3].astype(np.float32), world)
    world += geom.affine[:3, 3].astype(np.float32).reshape(3, 1, 1, 1)

    # Head pose: small rotation about z and shift; anatomy lives in head coordinates.
    theta = np.deg2rad(rng.uniform(-8.0, 8.0))
    shift = np.array([rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(-8, 4)])
    rot = np.array(
        [[np.cos(theta), np.sin(theta), 0], [-np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    pts = np.einsum("ab,b...->a...", rot.astype(np.float32), world - shift.reshape(3, 1, 1, 1))
    pts = pts.astype(np.float32)
    del world, ii, jj, kk

    semi = np.array([68.0, 86.0, 62.0]) * rng.uniform(0.9, 1.05)
    surface = _SmoothField(rng, 30.0)
    folding = _SmoothField(rng, 9.0)
    lesion_noise = _SmoothField(rng, 14.0)
    bias = _SmoothField(rng, 60.0)

    rho = _ellipsoid_distance(pts, (0, 0, 0), semi)
    rho_b = rho - 0.05 * surface(pts, (rho > 0.7) & (rho < 1.4))
    brain = rho_b < 1.0
    scalp = (rho_b > 1.07) & (rho_b < 1.16)
    outer = brain & (rho_b > 0.6)
    cortex = outer & (rho_b > 0.80 + 0.07 * folding(pts, outer))
    deep = np.zeros_like(brain)
    for side in (-1, 1):
        deep |= _ellipsoid_distance(pts, (side * 0.3 * semi[0], 0.0, 0.0), (13, 19, 12)) < 1
    vent_scale = rng.uniform(0.7, 1.5)
    csf = np.zeros_like(brain)
    for side in (-1, 1):
        centre = (side * 10.0, 4.0, 14.0)
        csf |= _ellipsoid_distance(pts, centre, (6 * vent_scale, 30, 9 * vent_scale)) < 1
    csf &= brain
    grey = (cortex | deep) & ~csf
    white = brain & ~grey & ~csf

    # Lesion: a severity field in [0, 1] within one territory of one hemisphere.
    names, weights = zip(*_PATTERNS, strict=True)
    pattern = str(rng.choice(names, p=np.array(weights)))
    side = int(rng.choice([-1, 1]))
    t_ot = float(rng.uniform(0.42, 0.58))
    t_core = float(rng.uniform(0.82, 0.95))
    territory = "MCA" if pattern == "scattered" else pattern
    t_centre, t_radii = _TERRITORIES[territory]
    centre = np.array(t_centre) * semi * np.array([side, 1, 1])
    jitter = rng.normal(0, 0.06, 3) * semi
    lesion: dict = {
        "pattern": pattern,
        "territory": territory,
        "hemisphere": "right" if side > 0 else "left",
        "t_ot": round(t_ot, 4),
        "t_core": round(t_core, 4),
        "s_hypoperfused": S_HYPO,
    }
    if pattern == "scattered":
        n_blobs = int(rng.integers(3, 7))
        blobs = []
        dist = np.full(brain.shape, np.inf, dtype=np.float32)
        radii = np.array(t_radii) * semi
        for _ in range(n_blobs):
            offset = rng.uniform(-1, 1, 3) * radii * 0.8
            b_centre = centre + offset
            b_radius = float(rng.uniform(6.0, 11.0))
            dist = np.minimum(dist, _ellipsoid_distance(pts, b_centre, (b_radius,) * 3))
            blobs.append({"centre_mm": np.round(b_centre, 2).tolist(), "radius_mm": b_radius})
        lesion["blobs"] = blobs
    else:
        scale = float(rng.uniform(0.45, 1.0))
        radii = np.array(t_radii) * semi * scale * rng.uniform(0.85, 1.15, 3)
        centre = centre + jitter
        dist = _ellipsoid_distance(pts, centre, radii)
        lesion["centre_mm"] = np.round(centre, 2).tolist()
        lesion["radii_mm"] = np.round(radii, 2).tolist()
        lesion["size_scale"] = round(scale, 4)
    # severity: ~1 well inside the region, 0.5 at its (wobbly) edge, ~0 beyond
    near = brain & (dist < 2.5)
    wobble = 0.25 * lesion_noise(pts, near)
    severity = np.where(near, _sigmoid((1.0 - dist + wobble) / 0.12), 0.0)
    # stay in the chosen hemisphere and the brain; no infarct in the ventricles
    severity *= _sigmoid((side * pts[0] - 2.0) / 1.5)
    severity = np.where(brain & ~csf, severity, 0.0).astype(np.float32)
    del wobble, rho, dist

    ot = (severity > t_ot).astype(np.uint8)
    core = severity > t_core
    hypo = severity > S_HYPO

    # Tissue baselines with per-case jitter, then lesion signatures per modality.
    jit = {m: rng.uniform(0.93, 1.07) for m in _BASE}
    arrival = float(rng.uniform(16.0, 26.0))

    def tissue(mod: str) -> np.ndarray:
        g, w, c = (v * jit[mod] for v in _BASE[mod])
        return np.where(grey, g, np.where(white, w, np.where(csf, c, 0.0))).astype(np.float32)

    def s_for(mod: str) -> np.ndarray | float:
        return 0.0 if mod in uninformative else severity

    cbf0, cbv0 = tissue("rCBF"), tissue("rCBV")
    cbf = cbf0 * (1.0 - 0.85 * s_for("rCBF"))
    cbv = cbv0 * (1.0 - 0.60 * s_for("rCBV"))
    s_mtt = s_for("MTT")
    mtt_cbf = cbf0 * (1.0 - 0.85 * s_mtt)
    mtt_cbv = cbv0 * (1.0 - 0.60 * s_mtt)
    mtt = np.where(brain, 60.0 * mtt_cbv / np.maximum(mtt_cbf, 1e-3), 0.0)
    tmax = tissue("Tmax") + 14.0 * s_for("Tmax")
    ttp = np.where(brain, arrival + tissue("TTP") + 12.0 * s_for("TTP"), 0.0)
    adc = tissue("ADC") * np.where(core & ("ADC" not in uninformative), rng.uniform(0.45, 0.6), 1.0)
    adc = np.where(scalp, 1000.0 * jit["ADC"], adc)
    del cbf0, cbv0, mtt_cbf, mtt_cbv

    head = brain | scalp
    bias_field = 1.0 + 0.08 * bias(pts, head)
    clean = {"ADC": adc, "MTT": mtt, "rCBF": cbf, "rCBV": cbv, "Tmax": tmax, "TTP": ttp}
    volumes: dict[str, np.ndarray] = {}
    for mod in _MODALITY_FILE_ORDER:
        mask = head if mod == "ADC" else brain
        vol = clean[mod] * bias_field + rng.normal(0.0, _NOISE_SD[mod], brain.shape)
        vol = np.where(mask, np.maximum(vol, 0.0), 0.0)
        if mod == "ADC":
            volumes[mod] = np.clip(np.rint(vol), 0, 4000).astype(np.int16)
        else:
            volumes[mod] = vol.astype(np.float32)
    for mod in control:
        volumes[mod] = _control_volume(control_rng, brain, mod)

    voxel_ml = float(np.prod(geom.spacing)) / 1000.0
    lesion["ot_voxels"] = int(ot.sum())
    lesion["ot_ml"] = round(lesion["ot_voxels"] * voxel_ml, 3)
    lesion["core_ml"] = round(float(core.sum()) * voxel_ml, 3)
    lesion["hypoperfused_ml"] = round(float(hypo.sum()) * voxel_ml, 3)
    lesion["head_rotation_deg"] = round(float(np.rad2deg(theta)), 3)
    lesion["head_shift_mm"] = np.round(shift, 2).tolist()
    lesion["brain_semi_axes_mm"] = np.round(semi, 2).tolist()
    return volumes, ot, lesion


def _control_volume(
    rng: np.random.Generator | None, brain: np.ndarray, modality: str
) -> np.ndarray:
    """Zero-mean Gaussian noise inside ``brain`` (x, y, z), 0 outside, in the modality's dtype."""
    if rng is None:
        raise ValueError("a control modality needs its own random generator")
    noise = rng.normal(0.0, CONTROL_SD[modality], brain.shape)
    vol = np.where(brain, noise, 0.0)
    if modality == "ADC":
        return np.clip(np.rint(vol), -32768, 32767).astype(np.int16)
    return vol.astype(np.float32)


def _nifti_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b"strokelrp synthetic ISLES 2017 case"
    return img.to_bytes()


def _case_grid(rng: np.random.Generator, shape: tuple[int, int, int], varied: bool):
    h, w, d = shape
    if not varied:
        return (w, h, d)
    ref = REAL_GRIDS[0]
    pick = REAL_GRIDS[int(rng.choice(len(REAL_GRIDS), p=np.array(_GRID_WEIGHTS)))]
    return tuple(
        max(2, round(n * p / r))
        for n, p, r in ((w, pick[1], ref[1]), (h, pick[0], ref[0]), (d, pick[2], ref[2]))
    )


def _prepare_out(out: Path) -> None:
    """Refuse to write into a non-empty folder unless it is an earlier synthetic set."""
    if out.exists() and not out.is_dir():
        raise StrokeLRPError(f"{out}: exists and is not a folder")
    if not out.exists():
        out.mkdir(parents=True)
        return
    manifest = out / MANIFEST_NAME
    if not manifest.exists():
        if any(out.iterdir()):
            raise StrokeLRPError(
                f"{out}: folder is not empty and holds no {MANIFEST_NAME}; "
                "choose an empty or new folder"
            )
        return
    try:
        old = json.loads(manifest.read_text())
        folders = [c["folder"] for c in old["cases"].values()]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise StrokeLRPError(f"{manifest}: unreadable manifest ({err}); remove it first") from err
    for name in folders:
        target = out / name
        if target.parent == out and target.name.startswith("training_") and target.is_dir():
            shutil.rmtree(target)
    manifest.unlink()


def synthesize_isles2017(
    out: str | Path,
    n_cases: int,
    shape: tuple[int, int, int] = (192, 192, 19),
    seed: int = 0,
    varied_grids: bool = False,
    uninformative: tuple[str, ...] | list[str] = (),
    control: tuple[str, ...] | list[str] = (),
    progress: bool = False,
) -> Path:
    """Write ``n_cases`` synthetic cases in the ISLES 2017 layout under ``out`` -> ``out``.

    ``shape`` is (H, W, D) (the NIfTI array is (x=W, y=H, z=D)); ``varied_grids`` scales it per
    case like the real grids (192x192x19, 256x256x24, 128x128x25, 192x192x30 for the default);
    ``uninformative`` names modalities that get no lesion signature (they keep their anatomy);
    ``control`` names modalities replaced by zero-mean noise inside the brain (nothing a model
    could use). ``out`` must be new, empty, or an earlier synthetic set (whose cases are
    replaced). Writes ``synth_manifest.json`` with the lesion parameters and informative and
    control modalities per case.
    """
    if int(n_cases) < 1:
        raise StrokeLRPError(f"the number of cases must be at least 1, got {n_cases}")
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 2:
        raise StrokeLRPError(f"shape must be three sizes (H, W, D), each >= 2, got {shape}")
    controls = _resolve_modalities(tuple(control), "control")
    bad = tuple(dict.fromkeys(_resolve_modalities(tuple(uninformative)) + controls))
    informative = [m for m in MODALITIES if m not in bad]
    if not informative:
        raise StrokeLRPError("every modality is uninformative or a control: nothing to segment")
    out = Path(out)
    _prepare_out(out)

    cases_meta: dict[str, dict] = {}
    numbers = case_numbers(int(n_cases))
    iterator = numbers
    if progress:
        from tqdm import tqdm

        iterator = tqdm(numbers, desc="synth", unit="case", leave=False, disable=None)
    for index, number in enumerate(iterator):
        rng = np.random.default_rng([int(seed), number])
        grid = _case_grid(np.random.default_rng([int(seed), number, 1]), shape, varied_grids)
        geom = _geometry(rng, grid)  # type: ignore[arg-type]
        noise = np.random.default_rng([int(seed), number, 2])
        for _attempt in range(30):
            volumes, ot, lesion = _phantom_case(rng, geom, bad, controls, noise)
            minimum = 0.4 if lesion["pattern"] == "scattered" else 2.0
            if lesion["ot_ml"] >= minimum and lesion["ot_voxels"] >= 2:
                break
        prefix = "SMIR" if index % 7 == 3 else "VSD"
        first_id = 100000 + 1000 * number + int(rng.integers(0, 50)) * 10
        folder = out / f"training_{number}"
        files = {}
        tokens = [*(f"MR_{m}" for m in _MODALITY_FILE_ORDER), "OT"]
        for k, token in enumerate(tokens):
            name = f"{prefix}.Brain.XX.O.{token}.{first_id + 7 * k}"
            key = "OT" if token == "OT" else token[3:]
            data = ot if key == "OT" else volumes[key]
            write_bytes(folder / name / f"{name}.nii", _nifti_bytes(data, geom.affine))
            files[key] = f"{folder.name}/{name}/{name}.nii"
        cases_meta[str(number)] = {
            "folder": folder.name,
            "prefix": prefix,
            "grid": list(geom.grid),
            "spacing_mm": list(geom.spacing),
            "informative_modalities": informative,
            "control_modalities": list(controls),
            "lesion": lesion,
            "files": files,
        }
    manifest = {
        "generator": "strokelrp.data.synth",
        "manifest_version": MANIFEST_VERSION,
        "seed": int(seed),
        "n_cases": int(n_cases),
        "shape_hwd": list(shape),
        "varied_grids": bool(varied_grids),
        "modalities": list(MODALITIES),
        "uninformative_modalities": list(bad),
        "informative_modalities": informative,
        "control_modalities": list(controls),
        "control_noise_sd": {m: CONTROL_SD[m] for m in controls},
        "units": {
            "ADC": "1e-6 mm^2/s (int16)",
            "MTT": "s",
            "rCBF": "relative (ml/100 g/min-like)",
            "rCBV": "relative (ml/100 g-like)",
            "Tmax": "s",
            "TTP": "s",
            "OT": "0/1 final infarct",
        },
        "cases": cases_meta,
    }
    write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return out
