"""The reader's edges found by fuzzing and real-world headers (one test each), and the memory
rules: a case too large for the budget is refused before any voxel is read."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_helpers import modality_file, rewrite
from hostile_nifti import edit_header

from strokelrp.data.layouts import inspect_data, load_case, load_cases
from strokelrp.errors import DataError


def _stored(path: Path) -> np.ndarray:
    """The raw stored integers of ``path`` (no scaling), independent of the reader."""
    img = nib.load(str(path))
    return np.asarray(img.dataobj.get_unscaled())


def test_a_one_voxel_axis_is_refused_with_one_line(tiny: Path) -> None:
    for path in (tiny / "training_2").glob("*/*.nii"):
        data = np.asanyarray(nib.load(str(path)).dataobj)[:, :, 3:4]
        rewrite(path, data)
    with pytest.raises(DataError) as info:
        load_cases(tiny)
    problems = info.value.problems
    assert len(problems) == 7  # every file of the case, one line each
    assert all("32x32x1 has an axis of 1 voxel" in p for p in problems)
    assert {c.case_id for c in load_cases(tiny, on_error="skip")} == {"1", "4", "5"}


def test_scl_slope_nan_reads_as_unscaled(tiny: Path) -> None:
    path = modality_file(tiny, "2", "MR_ADC")
    edit_header(path, scl_slope=np.nan, scl_inter=7.0)
    case = load_case(tiny, "2")
    stored = _stored(path).astype(np.float32)  # ADC is int16: the values as stored
    assert np.array_equal(np.sort(case.image[0].ravel()), np.sort(stored.ravel()))


def test_ot_stored_as_255_with_slope_1_over_255_is_binary(tiny: Path) -> None:
    path = modality_file(tiny, "2", "OT")
    ot = np.asanyarray(nib.load(str(path)).dataobj).astype(np.uint8)
    rewrite(path, (ot * 255).astype(np.uint8))
    edit_header(path, scl_slope=np.float32(1 / 255), scl_inter=0.0)
    scaled = 255 * float(np.float32(1 / 255))  # the header's float32 slope, applied in float64
    assert scaled != 1.0 and abs(scaled - 1.0) < 1e-6  # 1.0000001: the case to accept
    reports = {r.case_id: r for r in inspect_data(tiny)}
    assert reports["2"].status == "ok"
    assert any("within float32 rounding" in n for n in reports["2"].notes)
    case = load_case(tiny, "2")
    assert int(case.label.sum()) == int(ot.sum()) and set(np.unique(case.label)) <= {0, 1}


def test_int32_beyond_float32_precision_warns_and_a_cast_constant_is_named(tiny: Path) -> None:
    path = modality_file(tiny, "2", "MR_TTP")
    shape = nib.load(str(path)).shape
    big = (1 << 25) + np.random.default_rng(0).integers(0, 1000, shape)
    rewrite(path, big.astype(np.int32))
    with pytest.warns(UserWarning, match="integers above 2\\^24 are rounded to float32"):
        case = load_case(tiny, "2")
    # 2^25 + k lands on the float32 grid of step 4: each value within 2 of the stored one
    assert np.abs(case.image[5].astype(np.float64) - np.sort(big.ravel())[0]).max() < 1100
    constant = np.full(shape, 1 << 25, np.int32)
    constant[0, 0, 0] += 1  # differs by one: float32 cannot tell 2^25 + 1 from 2^25
    rewrite(path, constant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        (report,) = [r for r in inspect_data(tiny) if r.case_id == "2"]
    (line,) = report.problems
    assert "become 3.35544e+07 when cast to float32" in line and "2^24" in line
    assert "constant modality" not in line


def test_same_world_grid_in_another_voxel_order_is_read_exactly(tiny: Path) -> None:
    before = load_case(tiny, "2")
    path = modality_file(tiny, "2", "MR_MTT")
    img = nib.load(str(path))
    now = nib.orientations.io_orientation(img.affine)
    target = nib.orientations.axcodes2ornt(("S", "A", "L"))
    moved = img.as_reoriented(nib.orientations.ornt_transform(now, target))
    assert moved.shape == img.shape[::-1]  # x and z swapped: the old reader refused this
    rewrite(path, np.asanyarray(moved.dataobj), moved.affine)
    after = load_case(tiny, "2")
    np.testing.assert_array_equal(after.image, before.image)
    np.testing.assert_array_equal(after.affine, before.affine)


def test_a_case_beyond_the_memory_budget_is_refused_before_reading(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strokelrp.data.layouts.base as base

    monkeypatch.setenv("STROKELRP_MEMORY_BUDGET", str(6 * 32 * 32 * 8 * 4 - 1))
    read = []
    monkeypatch.setattr(base, "read_nifti", lambda *a, **k: read.append(a) or 1 / 0)
    with pytest.raises(DataError) as info:
        load_cases(tiny, cases=["2"])
    (line,) = info.value.problems
    assert line.startswith("case 2: training_2/")
    assert "needs 0.00 GiB as float32 (6 channels of 32x32x8)" in line
    assert "STROKELRP_MEMORY_BUDGET" in line and read == []
    monkeypatch.setenv("STROKELRP_MEMORY_BUDGET", str(6 * 32 * 32 * 8 * 4))
    monkeypatch.undo()
    assert load_case(tiny, "2").image.nbytes == 6 * 32 * 32 * 8 * 4
