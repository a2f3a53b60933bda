"""Read one NIfTI-1 or NIfTI-2 file defensively: a hostile file gives one reason, not a crash.

nibabel parses the header fields; this module checks what nibabel accepts silently, fixes
quietly, or only finds out after allocating the voxel array the header claims:

- the path: dangling symbolic link, symbolic-link loop, not a regular file, permission denied;
- the header: NIfTI size and magic, a real integer or float datatype, 3-D dims, a voxel count
  below :data:`MAX_VOXELS`, pixdim, ``vox_offset`` past the header, the xyz unit, the scaling,
  finite qform/sform, a quaternion that is a rotation, a non-singular sform;
- the bytes: the file (or the decompressed stream) holds every voxel the header claims, read
  in chunks so that a lying header never allocates its claimed size; a gzip stream is read to
  its end, so a bad CRC or length is found;
- the values are scaled as stored (``scl_slope``/``scl_inter``, nibabel's rule); their
  finiteness after the cast to the working dtype is the caller's check.

The volume's header is a fresh NIfTI-1 header in millimetres whose qform and sform nibabel can
always decode (a NIfTI-2 quaternion 1e-15 off unit length is re-encoded), so code that copies
it never meets the raw file's quirks.
"""

from __future__ import annotations

import errno
import gzip
import math
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import nibabel as nib
import numpy as np
from nibabel.quaternions import quat2mat
from nibabel.volumeutils import apply_read_scaling

MAX_VOXELS = 1 << 27
"""Largest voxel count of one volume (512^3; 512 MiB as float32); more is refused."""
NIFTI1_MAX_DIM = 32767
"""Largest size of one axis (the case's header is NIfTI-1, whose dims are int16)."""
MAX_VOX_OFFSET = 64 << 20
"""Largest ``vox_offset``: header extensions beyond 64 MiB are refused (bounds the buffer)."""
GZIP_TAIL_LIMIT = 64 << 20
"""Decompressed bytes allowed after the voxel data (read to verify the stream's CRC)."""
SUPPORTED_DATATYPES = {2, 4, 8, 16, 64, 256, 512, 768, 1024, 1280}
"""NIfTI datatype codes read: (u)int8/16/32/64, float32, float64 (real values only)."""
MM_PER_UNIT = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 0.001}
"""xyz unit code (``xyzt_units & 7``) -> millimetres per unit; 0 (unknown) is read as mm."""
FORM_CODES = range(6)
"""Valid qform/sform codes: unknown, scanner, aligned, talairach, mni, template."""
QUATERNION_TOLERANCE = 1e-5
"""Largest b^2 + c^2 + d^2 - 1 of a qform quaternion taken as rounding (float32 storage)."""

_CHUNK = 1 << 20
_UNIT_NAMES = {0: "unknown (read as mm)", 1: "m", 2: "mm", 3: "micron"}


class NiftiProblem(Exception):
    """What is wrong with one file, as one line without the file's name."""


@dataclass(frozen=True)
class NiftiHeader:
    """A checked header: where the voxels are and what they mean.

    ``shape`` is the (X, Y, Z) grid; ``affine`` the (4, 4) float64 voxel -> world map in mm
    (sform if coded, else qform, else pixdim); ``spacing`` its column norms in mm, so it
    follows the sform where pixdim disagrees; ``header`` the normalised NIfTI-1 header.
    """

    shape: tuple[int, int, int]
    dtype: np.dtype
    offset: int
    slope: float | None
    inter: float | None
    affine: np.ndarray
    spacing: tuple[float, float, float]
    header: nib.Nifti1Header
    frames: int = 1
    """Volumes along the 4th axis (a Decathlon image holds one per channel)."""

    @property
    def n_bytes(self) -> int:
        """Header, extensions and voxel bytes the file must hold."""
        return self.offset + math.prod(self.shape) * self.frames * self.dtype.itemsize


@dataclass(frozen=True)
class NiftiVolume:
    """A checked volume: ``data`` (X, Y, Z) as stored times slope plus intercept."""

    data: np.ndarray
    meta: NiftiHeader


# -------------------------------------------------------------------------------- the path


def check_path(path: Path) -> None:
    """Raise :class:`NiftiProblem` for a dangling link, a link loop or a non-regular file."""
    try:
        is_link = path.is_symlink()
    except OSError as err:
        raise NiftiProblem(f"cannot read the file ({err.strerror or err})") from None
    if is_link:
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python 3.11 reports a loop this way
            raise NiftiProblem("symbolic link loop (the link never reaches a file)") from None
        except FileNotFoundError:
            target = os.readlink(path)
            raise NiftiProblem(
                f"dangling symbolic link (its target {target} does not exist)"
            ) from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise NiftiProblem("symbolic link loop (the link never reaches a file)") from None
            raise NiftiProblem(f"cannot follow the symbolic link ({err.strerror or err})") from None
    try:
        st = path.stat()
    except PermissionError:
        raise NiftiProblem("permission denied: the file cannot be read") from None
    except OSError as err:
        raise NiftiProblem(f"cannot read the file ({err.strerror or err})") from None
    if not path.is_file():
        raise NiftiProblem("not a regular file")
    if st.st_size == 0:
        raise NiftiProblem("empty file (0 bytes)")


@contextmanager
def _open_stream(path: Path) -> Iterator[tuple[BinaryIO, bool]]:
    """Open ``path`` -> (byte stream, compressed?); gzip is recognised by its magic bytes."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below; a test replaces this name)
    except PermissionError:
        raise NiftiProblem("permission denied: the file cannot be opened for reading") from None
    except OSError as err:
        raise NiftiProblem(f"cannot open the file ({err.strerror or err})") from None
    with fh:
        compressed = fh.read(2) == b"\x1f\x8b"
        fh.seek(0)
        if not compressed:
            yield fh, False
            return
        try:
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                yield gz, True  # type: ignore[misc]
        except (OSError, EOFError, zlib.error) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise NiftiProblem(f"truncated or corrupt gzip stream ({reason})") from None


def _read_up_to(stream: BinaryIO, n: int, into: bytearray) -> None:
    """Append bytes from ``stream`` to ``into`` until it holds ``n`` or the stream ends.

    Reads in chunks, so a header claiming gigabytes costs only what the file really holds.
    """
    while len(into) < n:
        chunk = stream.read(min(_CHUNK, n - len(into)))
        if not chunk:
            return
        into += chunk


def _drain(stream: BinaryIO, limit: int) -> int:
    """Read ``stream`` to its end (at most ``limit`` bytes) -> the number of bytes read."""
    count = 0
    while chunk := stream.read(_CHUNK):
        count += len(chunk)
        if count > limit:
            raise NiftiProblem(
                f"the compressed stream goes on for more than {limit >> 20} MiB after the "
                "voxel data the header describes"
            )
    return count


# ------------------------------------------------------------------------------ the header


def parse_header(block: bytes) -> nib.Nifti1Header:
    """The raw, unfixed NIfTI-1 or -2 header at the start of ``block`` (nibabel, check off)."""
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.sizeof_hdr
        for endian in ("<", ">"):
            if int.from_bytes(block[:4], "little" if endian == "<" else "big") != size:
                continue
            if len(block) < size:
                raise NiftiProblem(
                    f"truncated file: {len(block)} bytes, shorter than the {size}-byte header"
                )
            hdr = klass(bytes(block[:size]), endianness=endian, check=False)
            magic = bytes(hdr["magic"].item())
            if magic == klass.pair_magic:
                raise NiftiProblem(
                    "header of a .hdr/.img pair (the voxels are in another file, not read)"
                )
            if magic == klass.single_magic:
                return hdr
    raise NiftiProblem("not a NIfTI file (no valid NIfTI header)")


def _check_datatype(hdr: nib.Nifti1Header) -> np.dtype:
    code = int(hdr["datatype"])
    if code not in SUPPORTED_DATATYPES:
        codes = nib.nifti1.data_type_codes
        name = codes.label[code] if code in codes.value_set() else "unknown"
        raise NiftiProblem(
            f"unsupported voxel data type {name} (datatype {code}): only real integer and "
            "floating-point voxels are read"
        )
    return hdr.get_data_dtype()


def _check_shape(hdr: nib.Nifti1Header, frames: bool = False) -> tuple[int, int, int, int]:
    """-> (X, Y, Z, frames); a 4th axis is allowed only when ``frames`` (one volume per
    channel, as the Decathlon stores them); the voxel limit counts one frame."""
    dim = [int(d) for d in hdr["dim"]]
    if not 1 <= dim[0] <= 7:
        raise NiftiProblem(f"invalid dimensions: dim[0] = {dim[0]} (must be 1 to 7)")
    sizes = dim[1 : 1 + dim[0]]
    shown = "x".join(str(s) for s in sizes)
    if any(s < 1 for s in sizes):
        raise NiftiProblem(f"invalid dimensions: {shown} (every size must be at least 1)")
    n_frames = sizes[3] if frames and len(sizes) >= 4 else 1
    extra = sizes[4:] if frames else sizes[3:]
    if len(sizes) < 3 or any(s != 1 for s in extra):
        what = "3-D or 4-D" if frames else "3-D"
        raise NiftiProblem(f"image is not {what} (shape {shown})")
    if max(sizes[:3]) > NIFTI1_MAX_DIM:
        raise NiftiProblem(
            f"image too large: {shown} (at most {NIFTI1_MAX_DIM} voxels along an axis)"
        )
    n = math.prod(sizes[:3])
    if n > MAX_VOXELS:
        raise NiftiProblem(
            f"image too large: the header claims {shown} = {n} voxels (at most {MAX_VOXELS})"
        )
    return sizes[0], sizes[1], sizes[2], n_frames


def _check_vox_offset(hdr: nib.Nifti1Header) -> int:
    raw = float(hdr["vox_offset"])
    first = int(hdr.single_vox_offset)  # 352 (NIfTI-1) or 544 (NIfTI-2)
    if not math.isfinite(raw) or raw != int(raw):
        raise NiftiProblem(f"invalid vox_offset {raw!r} (must be a whole number of bytes)")
    if raw < first:
        raise NiftiProblem(
            f"vox_offset {int(raw)} points inside the header (the voxel data of a single-file "
            f"NIfTI starts at byte {first} or later)"
        )
    if raw > MAX_VOX_OFFSET:
        raise NiftiProblem(
            f"vox_offset {int(raw)} puts the voxels more than {MAX_VOX_OFFSET >> 20} MiB "
            "into the file (header extensions are never that large)"
        )
    return int(raw)


def _check_scaling(hdr: nib.Nifti1Header) -> tuple[float | None, float | None]:
    """(slope, inter), or (None, None) for no scaling: slope 0 (as the standard says) or NaN
    (read as unscaled, as nibabel and nifti1_io do)."""
    slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    if slope == 0 or math.isnan(slope):
        return None, None
    if not math.isfinite(slope):
        raise NiftiProblem(f"invalid scaling: scl_slope = {slope}")
    if not math.isfinite(inter):
        raise NiftiProblem(f"invalid scaling: scl_inter = {inter}")
    return slope, inter


def _check_pixdim(hdr: nib.Nifti1Header) -> None:
    pix = [float(p) for p in hdr["pixdim"][1:4]]
    if not all(math.isfinite(p) and p > 0 for p in pix):
        shown = ", ".join(f"{p:g}" for p in pix)
        raise NiftiProblem(
            f"invalid voxel size: pixdim[1:4] = ({shown}) (each must be finite and positive)"
        )


def _check_units(hdr: nib.Nifti1Header) -> float:
    code = int(hdr["xyzt_units"]) & 0x07
    if code not in MM_PER_UNIT:
        raise NiftiProblem(f"unknown spatial unit code {code} in xyzt_units")
    return MM_PER_UNIT[code]


def _finite_fields(hdr: nib.Nifti1Header, names: tuple[str, ...], form: str) -> list[float]:
    values = [float(v) for name in names for v in np.atleast_1d(hdr[name])]
    if not all(math.isfinite(v) for v in values):
        raise NiftiProblem(f"{form} has non-finite values ({', '.join(names)}: NaN or Inf)")
    return values


def qform_matrix(hdr: nib.Nifti1Header) -> np.ndarray:
    """The qform as a (4, 4) float64 matrix, decoded as nifti1_io does.

    b^2 + c^2 + d^2 up to 1 + :data:`QUATERNION_TOLERANCE` is rounding (a = 0, b, c, d
    renormalised: a 180-degree rotation written in float64 can be 1e-15 over); more is refused.
    qfac is -1 when pixdim[0] < 0, else 1.
    """
    b, c, d = _finite_fields(hdr, ("quatern_b", "quatern_c", "quatern_d"), "qform")
    offset = _finite_fields(hdr, ("qoffset_x", "qoffset_y", "qoffset_z"), "qform")
    norm2 = b * b + c * c + d * d
    if norm2 > 1 + QUATERNION_TOLERANCE:
        raise NiftiProblem(f"qform quaternion is not a rotation: b^2 + c^2 + d^2 = {norm2:.6g} > 1")
    if 1 - norm2 < 1e-7:
        scale = 1 / math.sqrt(norm2)
        a, b, c, d = 0.0, b * scale, c * scale, d * scale
    else:
        a = math.sqrt(1 - norm2)
    pix = np.array([float(p) for p in hdr["pixdim"][1:4]])
    if float(hdr["pixdim"][0]) < 0:
        pix[2] = -pix[2]
    out = np.eye(4)
    out[:3, :3] = quat2mat([a, b, c, d]) * pix
    out[:3, 3] = offset
    return out


def sform_matrix(hdr: nib.Nifti1Header) -> np.ndarray:
    """The sform as a (4, 4) float64 matrix; refused when not finite or singular."""
    rows = _finite_fields(hdr, ("srow_x", "srow_y", "srow_z"), "sform")
    out = np.eye(4)
    out[:3, :] = np.reshape(rows, (3, 4))
    norms = np.linalg.norm(out[:3, :3], axis=0)
    if not np.all(norms > 0) or abs(np.linalg.det(out[:3, :3])) <= 1e-9 * float(np.prod(norms)):
        raise NiftiProblem("sform is singular (its 3x3 part does not span three dimensions)")
    return out


def _check_forms(hdr: nib.Nifti1Header) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(qform, sform) in the file's unit; ``None`` where the code is 0."""
    codes = {}
    for name in ("qform_code", "sform_code"):
        codes[name] = int(hdr[name])
        if codes[name] not in FORM_CODES:
            raise NiftiProblem(f"invalid {name} {codes[name]} (NIfTI defines 0 to 5)")
    qform = qform_matrix(hdr) if codes["qform_code"] else None
    sform = sform_matrix(hdr) if codes["sform_code"] else None
    return qform, sform


def _in_mm(matrix: np.ndarray, factor: float, what: str) -> np.ndarray:
    out = matrix.copy()
    out[:3, :] *= factor
    if not np.all(np.isfinite(out)):
        raise NiftiProblem(f"{what} is not finite in mm")
    return out


def check_header(hdr: nib.Nifti1Header, frames: bool = False) -> NiftiHeader:
    """Check a raw header (:func:`parse_header`) -> :class:`NiftiHeader`, one concern each;
    ``frames`` allows a 4th axis of volumes."""
    dtype = _check_datatype(hdr)
    *xyz, n_frames = _check_shape(hdr, frames)
    shape = tuple(xyz)
    offset = _check_vox_offset(hdr)
    slope, inter = _check_scaling(hdr)
    _check_pixdim(hdr)
    factor = _check_units(hdr)
    qform, sform = _check_forms(hdr)
    base = np.asarray(hdr.get_base_affine(), dtype=np.float64)  # pixdim only (method 1)
    best = sform if sform is not None else qform if qform is not None else base
    affine = _in_mm(best, factor, "the affine")
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise NiftiProblem("the affine gives a zero or non-finite voxel size")
    out = nib.Nifti1Header()
    out.set_data_dtype(dtype)
    out.set_data_shape(shape)
    out.set_zooms(spacing)
    out.set_xyzt_units(xyz="mm")
    if qform is not None:  # re-encoded from the checked matrix: nibabel can decode it again
        out.set_qform(_in_mm(qform, factor, "the qform"), code=int(hdr["qform_code"]))
    if sform is not None:
        out.set_sform(affine, code=int(hdr["sform_code"]))
    out["dim_info"] = hdr["dim_info"]
    out["descrip"] = hdr["descrip"]
    if slope is not None:
        out.set_slope_inter(slope, inter)
    return NiftiHeader(shape, dtype, offset, slope, inter, affine, spacing, out, n_frames)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- reading


def _read_checked(
    path: Path, with_voxels: bool, frames: bool = False
) -> tuple[NiftiHeader, bytearray]:
    check_path(path)
    size = path.stat().st_size
    buf = bytearray()
    with _open_stream(path) as (stream, compressed):
        _read_up_to(stream, nib.Nifti2Header.sizeof_hdr, buf)
        meta = check_header(parse_header(buf), frames)
        if not with_voxels:
            return meta, buf
        if not compressed and size < meta.n_bytes:
            raise NiftiProblem(
                f"truncated file: {size} bytes, the header needs {meta.n_bytes} bytes of "
                "header and voxel data"
            )
        _read_up_to(stream, meta.n_bytes, buf)
        if len(buf) < meta.n_bytes:
            raise NiftiProblem(
                f"truncated file: the decompressed stream holds {len(buf)} bytes, the header "
                f"needs {meta.n_bytes} bytes of header and voxel data"
            )
        if compressed:
            _drain(stream, GZIP_TAIL_LIMIT)  # the CRC and length are checked at the end
    return meta, buf


def read_header(path: Path, frames: bool = False) -> NiftiHeader:
    """Check ``path`` and its header without reading the voxels; raise :class:`NiftiProblem`.
    ``frames`` allows a 4-D image (one volume per channel)."""
    return _read_checked(Path(path), with_voxels=False, frames=frames)[0]


def read_nifti(path: Path, frame: int | None = None) -> NiftiVolume:
    """Read and check one 3-D NIfTI file -> :class:`NiftiVolume`; raise :class:`NiftiProblem`.

    ``data`` is (X, Y, Z) in native byte order: the stored dtype when unscaled, else nibabel's
    scaled float type. Memory is bounded by what the file really holds, never by the header.
    ``frame`` reads that volume of a 4-D file (``meta.frames`` of them) instead.
    """
    meta, buf = _read_checked(Path(path), with_voxels=True, frames=frame is not None)
    count = math.prod(meta.shape)
    start = meta.offset + (frame or 0) * count * meta.dtype.itemsize
    if frame is not None and not 0 <= frame < meta.frames:
        raise NiftiProblem(f"frame {frame} asked for, the image has {meta.frames}")
    raw = np.frombuffer(buf, dtype=meta.dtype, count=count, offset=start)
    raw = raw.reshape(meta.shape, order="F")
    with np.errstate(over="ignore", invalid="ignore"):
        data = np.asarray(apply_read_scaling(raw, meta.slope, meta.inter))
    if not data.dtype.isnative or data.base is not None:  # own, native-order values
        data = data.astype(data.dtype.newbyteorder("="))
    return NiftiVolume(data, meta)
