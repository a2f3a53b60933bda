"""Hostile but realistic NIfTI files: one line naming case and file, never a traceback."""

from __future__ import annotations

import builtins
import gzip
import os
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_helpers import modality_file
from hostile_nifti import (
    HOSTILE,
    Hostile,
    as_nifti2_tilted,
    corrupt,
    edit_header,
    huge_claim_gzip,
    huge_claim_plain,
    raw_header,
    read_raw,
    rewrite_as,
    symlinked_case,
    tilted_180_affine,
    unit_variants,
    write_raw,
)
from test_data_cli import run_cli

from strokelrp.data import nifti_file
from strokelrp.data.layouts import inspect_data, load_cases
from strokelrp.data.layouts.isles2017 import CHANNELS as MODALITIES
from strokelrp.data.nifti_file import NiftiProblem, read_nifti
from strokelrp.errors import DataError


@pytest.mark.parametrize("kind", HOSTILE, ids=lambda k: k.__name__)
def test_each_hostile_file_is_one_line_and_the_others_load(tiny: Path, kind: Hostile) -> None:
    rel, words = kind(tiny)
    with pytest.raises(DataError) as info:
        load_cases(tiny)
    problems = info.value.problems
    assert len(problems) == 1, problems
    line = problems[0]
    assert line.startswith(f"case 2: {rel}: "), line
    assert words in line, line
    assert "\n" not in line and len(line) < 300 and "unexpected" not in line
    with pytest.warns(UserWarning, match=r"case 2: "):
        good = load_cases(tiny, on_error="skip")
    assert [c.case_id for c in good] == ["1", "4", "5"]


@pytest.mark.parametrize("kind", HOSTILE, ids=lambda k: k.__name__)
def test_inspect_exits_1_with_one_error_line(tiny: Path, kind: Hostile, capsys) -> None:
    rel, words = kind(tiny)
    code, text, err = run_cli(["inspect", str(tiny)], capsys)
    assert code == 1 and "Traceback" not in text + err
    assert "4 cases, 3 valid, 1 invalid" in text
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: case 2: {rel}: ") and words in lines[0]


# ----------------------------------------------------------------- no allocation of the claim


@pytest.mark.parametrize("kind", [huge_claim_plain, huge_claim_gzip], ids=lambda k: k.__name__)
def test_a_lying_header_is_refused_without_allocating_its_claim(tiny: Path, kind: Hostile) -> None:
    rel, _ = kind(tiny)
    claimed = 512**3 * 4  # 512 MiB of float32
    tracemalloc.start()
    try:
        with pytest.raises(NiftiProblem, match="truncated file"):
            read_nifti(tiny / rel)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20 < claimed, peak  # what the file holds (32 KiB) plus a chunk


# ---------------------------------------------------------------- the gzip stream is verified


def test_a_valid_gzip_file_with_changed_voxels_was_accepted_by_nibabel(tiny: Path) -> None:
    """The defect this guards against: nibabel reads such a file without complaint."""
    path = modality_file(tiny, "2", "MR_TTP")
    original = np.asanyarray(nib.load(str(path)).dataobj)
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes(), compresslevel=0, mtime=0))
    path.unlink()
    data = bytearray(gz.read_bytes())
    data[-100] ^= 0x01
    gz.write_bytes(bytes(data))
    changed = np.asanyarray(nib.load(str(gz)).dataobj)
    assert np.count_nonzero(changed != original) == 1
    with pytest.raises(NiftiProblem, match="CRC check failed"):
        read_nifti(gz)


# --------------------------------------------------------------- valid files that look odd


def test_units_in_metres_and_microns_are_read_in_mm(tiny: Path) -> None:
    before = load_cases(tiny, cases=["2"])[0]
    unit_variants(tiny)
    mtt = modality_file(tiny, "2", "MR_MTT")
    assert raw_header(read_raw(mtt)).get_xyzt_units()[0] == "meter"
    after = load_cases(tiny, cases=["2"])[0]  # the affine check passes: same mm geometry
    assert np.array_equal(after.image, before.image)
    meta = read_nifti(mtt).meta
    np.testing.assert_allclose(meta.affine, before.native_affine, rtol=1e-5, atol=1e-4)
    assert meta.spacing == pytest.approx(before.native_spacing, rel=1e-5)
    assert meta.header.get_xyzt_units()[0] == "mm"


def test_units_are_honoured_so_an_unscaled_micron_file_is_off_grid(tiny: Path) -> None:
    path = modality_file(tiny, "2", "MR_rCBF")
    edit_header(path, xyzt_units=3)  # says micron but holds mm numbers: 1000x too small
    with pytest.raises(DataError, match=r"case 2: .*MR_rCBF.*: affine differs from MR_ADC"):
        load_cases(tiny)


def test_spacing_follows_the_sform_where_pixdim_disagrees(tiny: Path) -> None:
    for token in ("MR_ADC", "MR_MTT", "MR_rCBF", "MR_rCBV", "MR_Tmax", "MR_TTP", "OT"):
        path = modality_file(tiny, "2", token)
        edit_header(path, pixdim={1: 1.0, 2: 1.0, 3: 1.0}, qform_code=0)
    case = load_cases(tiny, cases=["2"])[0]
    sform = raw_header(read_raw(modality_file(tiny, "2", "MR_ADC"))).get_sform()
    expected = np.linalg.norm(sform[:3, :3], axis=0)
    assert not np.allclose(expected, 1.0)
    assert case.native_spacing == pytest.approx(tuple(expected), rel=1e-6)
    assert case.header.get_zooms() == pytest.approx(case.native_spacing, rel=1e-6)
    np.testing.assert_allclose(case.native_affine, sform, atol=1e-6)


def test_nifti2_quaternion_a_hair_off_unit_is_read_and_written_back(tiny: Path, tmp_path) -> None:
    from strokelrp.report.nifti import write_label_nifti, write_relevance_nifti

    as_nifti2_tilted(tiny)
    adc = modality_file(tiny, "2", "MR_ADC")
    with pytest.raises(ValueError, match="w2 should be positive"):  # nibabel's own reader
        nib.load(str(adc)).header.get_qform()
    case = load_cases(tiny, cases=["2"])[0]
    np.testing.assert_allclose(case.native_affine, tilted_180_affine(), atol=1e-6)
    assert isinstance(case.header, nib.Nifti1Header)
    np.testing.assert_allclose(case.header.get_qform(), tilted_180_affine(), atol=1e-5)
    relevance = np.random.default_rng(0).normal(size=(6, 8, 32, 32)).astype(np.float32)
    out = write_relevance_nifti(tmp_path / "r.nii.gz", relevance, case, setting="raw")
    label = write_label_nifti(tmp_path / "p.nii.gz", case.label, case)
    for path in (out, label):
        np.testing.assert_allclose(nib.load(str(path)).affine, tilted_180_affine(), atol=1e-5)


def test_symlinked_file_reads_like_the_file(tiny: Path) -> None:
    before = load_cases(tiny, cases=["2"])[0]
    symlinked_case(tiny)
    assert modality_file(tiny, "2", "MR_ADC").is_symlink()
    assert np.array_equal(load_cases(tiny, cases=["2"])[0].image, before.image)


@pytest.mark.parametrize("variant", ["big_endian", "extension", "nifti2", "gzip", "qfac_zero"])
def test_unusual_but_valid_encodings_read_the_same_values(tiny: Path, variant: str) -> None:
    before = load_cases(tiny, cases=["2"])[0]
    path = modality_file(tiny, "2", "MR_rCBF")
    img = nib.load(str(path))
    if variant == "big_endian":
        hdr = img.header.as_byteswapped(">")
        new = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, hdr)
        write_raw(path, new.to_bytes())
        assert raw_header(read_raw(path)).endianness == ">"
    elif variant == "extension":
        new = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
        new.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * 37))
        write_raw(path, new.to_bytes())
        assert int(raw_header(read_raw(path))["vox_offset"]) > 352
    elif variant == "nifti2":
        rewrite_as(path, nib.Nifti2Image)
    elif variant == "gzip":
        write_raw(path.with_name(path.name + ".gz"), path.read_bytes(), compress=True)
        path.unlink()
    else:
        edit_header(path, pixdim={0: 0.0})  # the standard reads qfac 0 as 1
    after = load_cases(tiny, cases=["2"])[0]
    assert np.array_equal(after.image, before.image)
    np.testing.assert_allclose(after.affine, before.affine, atol=1e-5)


def test_read_values_match_nibabel_for_every_supported_dtype(tmp_path: Path) -> None:
    """Reference: nibabel's own scaled read of the same bytes (an independent decoder)."""
    rng = np.random.default_rng(1)
    for dtype in (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64):
        for scaled in (False, True):
            data = rng.integers(0, 100, size=(5, 4, 3)).astype(dtype)
            img = nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0]), dtype=dtype)
            img.header.set_data_dtype(dtype)
            if scaled:
                img.header.set_slope_inter(0.25, -3.0)
            path = tmp_path / f"{np.dtype(dtype).name}_{scaled}.nii"
            path.write_bytes(img.to_bytes())
            got = read_nifti(path).data
            want = np.asanyarray(nib.load(str(path)).dataobj)
            assert got.shape == want.shape and np.array_equal(got, want), (dtype, scaled)


# ------------------------------------------------------------------------------ permissions


def test_permission_denied_is_named(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = modality_file(tiny, "2", "MR_Tmax")

    def guarded_open(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(nifti_file, "open", guarded_open, raising=False)
    with pytest.raises(DataError) as info:
        load_cases(tiny)
    rel = path.relative_to(tiny).as_posix()
    assert info.value.problems == [
        f"case 2: {rel}: permission denied: the file cannot be opened for reading"
    ]


def test_unlistable_folder_is_named(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = modality_file(tiny, "2", "MR_Tmax").parent
    real_iterdir = Path.iterdir

    def iterdir(self: Path):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    reports = {r.case_id: r for r in inspect_data(tiny)}
    rel = folder.relative_to(tiny).as_posix()
    assert reports["2"].problems == [
        f"case 2: {rel}: permission denied: the folder cannot be listed"
    ]
    assert all(reports[c].status == "ok" for c in ("1", "4", "5"))


def test_an_unlistable_case_folder_is_one_line(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny / "training_2"
    real_iterdir = Path.iterdir

    def iterdir(self: Path):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    reports = {r.case_id: r for r in inspect_data(tiny)}
    assert reports["2"].problems == [
        "case 2: training_2: permission denied: the folder cannot be listed"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_without_read_permission_is_named(tiny: Path) -> None:
    path = modality_file(tiny, "2", "MR_Tmax")
    path.chmod(0)
    with pytest.raises(DataError, match="permission denied"):
        load_cases(tiny)


def test_a_symlink_loop_above_the_cases_does_not_duplicate_them(tiny: Path) -> None:
    (tiny / "mirror").symlink_to(".", target_is_directory=True)
    assert [c.case_id for c in load_cases(tiny)] == ["1", "2", "4", "5"]


def test_modalities_channel_order_is_kept(tiny: Path) -> None:
    case = load_cases(tiny, cases=["1"])[0]
    for c, mod in enumerate(MODALITIES):
        native = np.asanyarray(nib.load(str(case.paths[mod])).dataobj).astype(np.float32)
        ras = native[::-1, ::-1, :]  # synthetic files are stored LPS; cases are held RAS
        assert np.array_equal(case.image[c], ras.transpose(2, 1, 0))


# ------------------------------------------------------------- a seeded subset of the fuzzer


@pytest.mark.parametrize("trial", range(20))
def test_seeded_random_damage_gives_a_clean_line_or_a_finite_case(tiny: Path, trial: int) -> None:
    """20 of ``benchmarks/fuzz_bench.py``'s corruptions, in process (the bench runs 300+)."""
    rng = np.random.default_rng([1000, trial])
    files = sorted((tiny / "training_2").glob("*/*.nii"))
    damaged, what = corrupt(files[int(rng.integers(len(files)))], rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cases = {c.case_id: c for c in load_cases(tiny, on_error="skip")}
    lines = [str(w.message) for w in caught if "skipping invalid case" in str(w.message)]
    assert {"1", "4", "5"} <= set(cases), what
    if "2" in cases:
        case = cases["2"]
        assert not lines, (what, lines)
        assert np.isfinite(case.image).all() and np.isfinite(case.affine).all(), what
        assert all(np.isfinite(s) and s > 0 for s in case.spacing), what
    else:
        assert lines, what
        for line in lines:
            assert "\n" not in line and "unexpected" not in line, (what, line)
            assert line.startswith("skipping invalid case: case 2: "), (what, line)
        assert any(damaged.name in line for line in lines), (what, lines)
