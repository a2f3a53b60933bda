"""Corpus of hostile but realistic NIfTI files, each made from a valid synthetic case.

Primitives edit a file's raw header fields (no nibabel fix-ups), compress it, damage its gzip
stream or re-write it as NIfTI-2. Each kind in :data:`HOSTILE` breaks one file of case 2 of a
tree written by ``synthesize_isles2017`` and returns (file relative to the root, words that the
one problem line must contain), like ``data_helpers.BREAKERS``. ``benchmarks/fuzz_bench.py``
uses the primitives for its random corruptions.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from data_helpers import modality_file

# ------------------------------------------------------------------------------ primitives


def is_gzip(path: Path) -> bool:
    return path.read_bytes()[:2] == b"\x1f\x8b"


def read_raw(path: Path) -> bytes:
    """The file's NIfTI bytes (decompressed for a gzip file)."""
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def write_raw(path: Path, raw: bytes, compress: bool | None = None) -> None:
    """Write NIfTI bytes to ``path``, gzip-compressed if ``compress`` (default: as it was)."""
    if compress is None:
        compress = path.exists() and is_gzip(path)
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)


def header_class(raw: bytes) -> type[nib.Nifti1Header]:
    for size, klass in ((348, nib.Nifti1Header), (540, nib.Nifti2Header)):
        if size in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")):
            return klass
    raise ValueError("not a NIfTI-1 or NIfTI-2 header")


def raw_header(raw: bytes) -> nib.Nifti1Header:
    """The header of NIfTI bytes, unchecked and unfixed."""
    klass = header_class(raw)
    return klass(raw[: klass.sizeof_hdr], check=False)


def edit_header(path: Path, **fields: Any) -> None:
    """Set raw header fields of ``path`` (.nii or gzip, NIfTI-1 or -2), keeping its bytes.

    A value may be a dict {index: value} to set single elements (``pixdim={1: 0.0}``).
    """
    raw = read_raw(path)
    hdr = raw_header(raw)
    for name, value in fields.items():
        if isinstance(value, dict):
            for index, item in value.items():
                hdr[name][index] = item
        else:
            hdr[name] = value
    write_raw(path, hdr.binaryblock + raw[hdr.sizeof_hdr :])


def gzip_file(path: Path) -> Path:
    """Replace ``X.nii`` by ``X.nii.gz`` holding the same bytes -> the new path."""
    gz = path.with_name(path.name + ".gz")
    write_raw(gz, path.read_bytes(), compress=True)
    path.unlink()
    return gz


def flip_byte(path: Path, position: int, mask: int = 0xFF) -> None:
    """XOR the byte at ``position`` (negative counts from the end) of the file on disk."""
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


def rewrite_as(
    path: Path,
    klass: type[nib.Nifti1Image] = nib.Nifti2Image,
    affine: np.ndarray | None = None,
    data: np.ndarray | None = None,
) -> None:
    """Write ``path`` again with nibabel as ``klass`` (qform and sform code 1)."""
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj) if data is None else data
    affine = img.affine if affine is None else affine
    new = klass(data, affine)
    new.set_qform(affine, code=1)
    new.set_sform(affine, code=1)
    compress = is_gzip(path)
    write_raw(path, new.to_bytes(), compress=compress)


def scale_units(path: Path, code: int, per_mm: float) -> None:
    """Express the geometry in another unit: lengths times ``per_mm``, xyz unit ``code``."""
    hdr = raw_header(read_raw(path))
    pix = hdr["pixdim"].copy()
    pix[1:4] *= per_mm
    fields: dict[str, Any] = {
        "pixdim": pix,
        "xyzt_units": (int(hdr["xyzt_units"]) & 0x38) | code,
    }
    for name in ("qoffset_x", "qoffset_y", "qoffset_z"):
        fields[name] = float(hdr[name]) * per_mm
    for name in ("srow_x", "srow_y", "srow_z"):
        fields[name] = hdr[name] * per_mm
    edit_header(path, **fields)


def tilted_180_affine(spacing: tuple[float, float, float] = (1.5, 1.5, 5.0)) -> np.ndarray:
    """A 180-degree rotation that nibabel writes into NIfTI-2 with b^2+c^2+d^2 = 1 + 1.3e-15.

    (Found by search; nibabel's own reader then fails with ``w2 should be positive``.)
    """
    axis = np.array([2.0, 9.0, 4.0])
    axis = axis / np.linalg.norm(axis)
    rotation = 2 * np.outer(axis, axis) - np.eye(3)  # 180 degrees about ``axis``
    out = np.eye(4)
    out[:3, :3] = rotation * np.array(spacing)
    return out


# ------------------------------------------------------------------------- hostile kinds

Hostile = Callable[[Path], tuple[str, str]]


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _field_kind(token: str, words: str, **fields: Any) -> Hostile:
    def kind(root: Path) -> tuple[str, str]:
        path = modality_file(root, "2", token)
        edit_header(path, **fields)
        return _rel(root, path), words

    return kind


def _named(name: str, kind: Hostile) -> Hostile:
    kind.__name__ = name
    return kind


def vox_offset_inside(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_MTT")
    edit_header(path, vox_offset=100)
    return _rel(root, path), "vox_offset 100 points inside the header"


def scaled_to_inf(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_rCBF")
    edit_header(path, scl_slope=1e38, scl_inter=0.0)
    return _rel(root, path), "Inf voxels as float32 (after scl_slope/scl_inter scaling)"


def float64_overflows_float32(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_rCBV")
    data = nib.load(str(path)).get_fdata()  # float64
    data[4, 5, 3] = 1e300
    rewrite_as(path, nib.Nifti1Image, data=data)
    return _rel(root, path), "0 NaN and 1 Inf voxels as float32"


def gzip_bad_crc(root: Path) -> tuple[str, str]:
    path = gzip_file(modality_file(root, "2", "MR_TTP"))
    flip_byte(path, -8)  # first byte of the CRC32 trailer
    return _rel(root, path), "corrupt gzip stream (CRC check failed"


def gzip_changed_voxels(root: Path) -> tuple[str, str]:
    """A flipped bit in the last stored deflate block: the stream decodes, the CRC does not."""
    path = modality_file(root, "2", "MR_TTP")
    gz = path.with_name(path.name + ".gz")
    # level 0 stores the bytes verbatim, so a flip changes one voxel and nothing else
    gz.write_bytes(gzip.compress(path.read_bytes(), compresslevel=0, mtime=0))
    path.unlink()
    flip_byte(gz, -100, 0x01)
    return _rel(root, gz), "corrupt gzip stream (CRC check failed"


def gzip_corrupt_stream(root: Path) -> tuple[str, str]:
    path = gzip_file(modality_file(root, "2", "MR_rCBF"))
    size = path.stat().st_size
    for k in range(20, 30):
        flip_byte(path, size // 2 + k)
    return _rel(root, path), "corrupt gzip stream"


def huge_claim_plain(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_Tmax")
    edit_header(path, dim=[3, 512, 512, 512, 1, 1, 1, 1])
    return _rel(root, path), "truncated file: "


def huge_claim_gzip(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_Tmax")
    edit_header(path, dim=[3, 512, 512, 512, 1, 1, 1, 1])
    gz = gzip_file(path)
    return _rel(root, gz), "truncated file: the decompressed stream holds"


def symlink_loop_folder(root: Path) -> tuple[str, str]:
    folder = modality_file(root, "2", "MR_rCBF").parent
    (folder / "loop").symlink_to(".", target_is_directory=True)
    return _rel(root, folder / "loop"), "symbolic link loop"


def symlink_loop_file(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_TTP")
    other = path.with_name(".partner.nii")  # hidden: discovery ignores it
    path.unlink()
    path.symlink_to(other.name)
    other.symlink_to(path.name)
    return _rel(root, path), "symbolic link loop"


def dangling_symlink(root: Path) -> tuple[str, str]:
    path = modality_file(root, "2", "MR_MTT")
    path.unlink()
    path.symlink_to("moved_away.nii")
    return _rel(root, path), "dangling symbolic link (its target moved_away.nii does not exist)"


def scaled_to_a_constant(root: Path) -> tuple[str, str]:
    """An intercept so large that float32 rounds every voxel to one value."""
    path = modality_file(root, "2", "MR_Tmax")
    edit_header(path, scl_slope=1.0, scl_inter=-3e38)
    return _rel(root, path), "all voxels have the value -3e+38 (constant modality)"


def scaled_beyond_float32_range(root: Path) -> tuple[str, str]:
    """Finite voxels whose span (max - min) overflows float32, so normalising them would."""
    path = modality_file(root, "2", "MR_rCBF")
    data = nib.load(str(path)).get_fdata().astype(np.float32)
    data[0, 0, 0], data[1, 0, 0] = -3e38, 3e38
    rewrite_as(path, nib.Nifti1Image, data=data)
    return _rel(root, path), "a range float32 cannot hold"


def nifti2_axis_beyond_int16(root: Path) -> tuple[str, str]:
    """A NIfTI-2 grid with an axis of 40000 (fits NIfTI-2, not the case's NIfTI-1 header)."""
    path = modality_file(root, "2", "MR_ADC")
    rewrite_as(path, nib.Nifti2Image)
    edit_header(path, dim=[3, 40000, 2, 2, 1, 1, 1, 1])
    return _rel(root, path), "image too large: 40000x2x2 (at most 32767 voxels along an axis)"


HOSTILE: list[Hostile] = [
    _named(
        "rgb24",
        _field_kind(
            "MR_MTT", "unsupported voxel data type RGB (datatype 128)", datatype=128, bitpix=24
        ),
    ),
    _named(
        "complex64",
        _field_kind("MR_rCBF", "unsupported voxel data type complex64", datatype=32, bitpix=64),
    ),
    _named("pixdim_zero", _field_kind("MR_TTP", "invalid voxel size", pixdim={1: 0.0})),
    _named("pixdim_negative", _field_kind("MR_TTP", "invalid voxel size", pixdim={2: -1.5})),
    _named("pixdim_nan", _field_kind("MR_TTP", "invalid voxel size", pixdim={3: np.nan})),
    _named("pixdim_inf", _field_kind("MR_TTP", "invalid voxel size", pixdim={1: np.inf})),
    _named("qform_nan", _field_kind("MR_rCBV", "qform has non-finite values", quatern_c=np.nan)),
    _named("qform_offset_inf", _field_kind("MR_rCBV", "qform has non-finite", qoffset_y=np.inf)),
    _named("sform_inf", _field_kind("MR_Tmax", "sform has non-finite values", srow_y={1: np.inf})),
    _named("sform_nan_in_adc", _field_kind("MR_ADC", "sform has non-finite", srow_x={3: np.nan})),
    _named("sform_singular", _field_kind("MR_Tmax", "sform is singular", srow_z=np.zeros(4))),
    _named("sform_code_invalid", _field_kind("MR_MTT", "invalid sform_code 9", sform_code=9)),
    _named(
        "quaternion_not_rotation",
        _field_kind("MR_rCBV", "qform quaternion is not a rotation", quatern_b=0.9, quatern_c=0.9),
    ),
    _named("vox_offset_zero", _field_kind("MR_ADC", "vox_offset 0 points inside", vox_offset=0)),
    vox_offset_inside,
    _named(
        "vox_offset_beyond_extensions",
        _field_kind("MR_TTP", "more than 64 MiB into the file", vox_offset=1e12),
    ),
    _named("vox_offset_nan", _field_kind("MR_MTT", "invalid vox_offset nan", vox_offset=np.nan)),
    _named(
        "scl_inter_inf",
        _field_kind("MR_rCBF", "invalid scaling: scl_inter = inf", scl_inter=np.inf),
    ),
    scaled_to_inf,
    float64_overflows_float32,
    scaled_to_a_constant,
    scaled_beyond_float32_range,
    _named(
        "dim_negative",
        _field_kind("MR_ADC", "invalid dimensions: 32x-5x8", dim=[3, 32, -5, 8, 1, 1, 1, 1]),
    ),
    _named("dim_2d", _field_kind("MR_ADC", "image is not 3-D (shape 32x32)", dim={0: 2})),
    _named(
        "beyond_voxel_limit",
        _field_kind("MR_ADC", "image too large", dim=[3, 4096, 4096, 4096, 1, 1, 1, 1]),
    ),
    huge_claim_plain,
    huge_claim_gzip,
    nifti2_axis_beyond_int16,
    _named("unit_code_unknown", _field_kind("MR_TTP", "unknown spatial unit code 5", xyzt_units=5)),
    _named("pair_header", _field_kind("MR_rCBV", "header of a .hdr/.img pair", magic=b"ni1")),
    gzip_bad_crc,
    gzip_changed_voxels,
    gzip_corrupt_stream,
    symlink_loop_folder,
    symlink_loop_file,
    dangling_symlink,
]
"""Every hostile kind: one file of case 2 broken, one problem line expected."""


def unit_variants(root: Path) -> None:
    """Case 2's MR_MTT in metres and MR_TTP in microns, same physical geometry (valid)."""
    scale_units(modality_file(root, "2", "MR_MTT"), 1, 1e-3)
    scale_units(modality_file(root, "2", "MR_TTP"), 3, 1e3)


def as_nifti2_tilted(root: Path, case: str = "2") -> None:
    """Every file of ``case`` as NIfTI-2 with :func:`tilted_180_affine` (valid)."""
    for token in ("MR_ADC", "MR_MTT", "MR_rCBF", "MR_rCBV", "MR_Tmax", "MR_TTP", "OT"):
        rewrite_as(modality_file(root, case, token), nib.Nifti2Image, affine=tilted_180_affine())


def symlinked_case(root: Path) -> None:
    """Case 2's ADC replaced by a relative symbolic link to a copy elsewhere (valid)."""
    path = modality_file(root, "2", "MR_ADC")
    store = root.parent / "store"
    store.mkdir(exist_ok=True)
    target = store / path.name
    os.replace(path, target)
    path.symlink_to(os.path.relpath(target, path.parent))


# ------------------------------------------------------------------- seeded random damage

FUZZ_FIELDS = (
    "sizeof_hdr",
    "dim",
    "datatype",
    "bitpix",
    "pixdim",
    "vox_offset",
    "scl_slope",
    "scl_inter",
    "xyzt_units",
    "qform_code",
    "sform_code",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "qoffset_y",
    "qoffset_z",
    "srow_x",
    "srow_y",
    "srow_z",
    "magic",
)
"""Header fields the fuzzer mutates (one element of an array field at a time)."""
FUZZ_FAMILIES = (
    "header-flip",
    "data-flip",
    "truncate",
    "field",
    "field-gzip",
    "gzip-damage",
    "nifti2-field",
)
_FLOATS = (0.0, -1.0, 1.0, np.nan, np.inf, -np.inf, 1e38, -3e38, 1e-30, 1e6, 1e-6, 0.5, 352.0)


def _hostile_value(dtype: np.dtype, rng: np.random.Generator) -> Any:
    if dtype.kind == "f":
        if rng.random() < 0.2:
            return float(rng.normal() * 10.0 ** rng.integers(-3, 6))
        return _FLOATS[rng.integers(len(_FLOATS))]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        picks = [0, 1, -1, 2, 3, 4, 7, 8, 9, 16, 32, 64, 128, 255, 256, 348, 540, 2304]
        picks += [int(info.max), int(info.min), int(rng.integers(info.min, info.max))]
        picks = [p for p in picks if info.min <= p <= info.max]
        return picks[rng.integers(len(picks))]
    return bytes(rng.integers(0, 256, size=dtype.itemsize, dtype=np.uint8))


def mutate_field(raw: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Set one header field (or one element of it) to a hostile value -> (bytes, what)."""
    hdr = raw_header(raw)
    name = FUZZ_FIELDS[rng.integers(len(FUZZ_FIELDS))]
    field = hdr[name]  # a view of the raw field (no nibabel conversion)
    value = _hostile_value(field.dtype, rng)
    if field.shape:
        index = int(rng.integers(field.shape[0]))
        field[index] = value
        what = f"{name}[{index}] = {value!r}"
    else:
        hdr[name] = value
        what = f"{name} = {value!r}"
    return hdr.binaryblock + raw[hdr.sizeof_hdr :], what


def _flip(raw: bytes, lo: int, hi: int, rng: np.random.Generator, count: int) -> bytes:
    data = bytearray(raw)
    for _ in range(count):
        data[int(rng.integers(lo, max(lo + 1, hi)))] ^= int(rng.integers(1, 256))
    return bytes(data)


def _damage_gzip(packed: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    how = ("body-flip", "crc-flip", "isize-flip", "truncate", "garbage", "second-member")
    what = how[rng.integers(len(how))]
    if what == "body-flip":
        return _flip(packed, 10, len(packed) - 8, rng, int(rng.integers(1, 4))), what
    if what == "crc-flip":
        return _flip(packed, len(packed) - 8, len(packed) - 4, rng, 1), what
    if what == "isize-flip":
        return _flip(packed, len(packed) - 4, len(packed), rng, 1), what
    if what == "truncate":
        return packed[: int(rng.integers(0, len(packed)))], what
    if what == "garbage":
        return packed + bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8)), what
    return packed + gzip.compress(b"\x00" * int(rng.integers(1, 5000)), mtime=0), what


def corrupt(path: Path, rng: np.random.Generator) -> tuple[Path, str]:
    """Damage the NIfTI file ``path`` one seeded random way -> (path now, description).

    A gzip family renames ``X.nii`` to ``X.nii.gz``.
    """
    family = FUZZ_FAMILIES[rng.integers(len(FUZZ_FAMILIES))]
    raw = read_raw(path)
    offset = int(raw_header(raw)["vox_offset"])
    if family == "header-flip":
        raw, what = _flip(raw, 0, 352, rng, int(rng.integers(1, 5))), "bytes flipped"
    elif family == "data-flip":
        raw, what = _flip(raw, offset, len(raw), rng, int(rng.integers(1, 9))), "bytes flipped"
    elif family == "truncate":
        cut = int(rng.integers(0, len(raw)))
        raw, what = raw[:cut], f"cut at {cut}"
    elif family == "nifti2-field":
        rewrite_as(path, nib.Nifti2Image)
        raw, what = mutate_field(read_raw(path), rng)
    else:
        raw, what = mutate_field(raw, rng) if family != "gzip-damage" else (raw, "")
    if family in ("field-gzip", "gzip-damage"):
        gz = path.with_name(path.name + ".gz")
        packed = gzip.compress(raw, mtime=0)
        if family == "gzip-damage":
            packed, what = _damage_gzip(packed, rng)
        path.unlink()
        gz.write_bytes(packed)
        return gz, f"{family}: {what}"
    path.write_bytes(raw)
    return path, f"{family}: {what}"
