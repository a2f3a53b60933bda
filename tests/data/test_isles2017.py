"""The ISLES 2017 reader: layout quirks, orientation, validation of every broken-case kind."""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_helpers import (
    BREAKERS,
    Breaker,
    missing_modality,
    modality_file,
    nan_voxels,
    ot_not_binary,
)

from strokelrp.config import MODALITIES
from strokelrp.core.orientation import to_file_order
from strokelrp.data.isles2017 import (
    Case,
    case_sort_key,
    discover_cases,
    inspect_isles2017,
    load_isles2017,
    token_of,
)
from strokelrp.errors import DataError, StrokeLRPError

# ------------------------------------------------------------------------ reading


def test_loads_every_case_with_the_contract_shapes_and_types(tiny: Path) -> None:
    cases = load_isles2017(tiny)
    assert [c.case_id for c in cases] == ["1", "2", "4", "5"]
    for case in cases:
        assert case.image.dtype == np.float32 and case.image.shape == (6, 8, 32, 32)
        assert case.label is not None and case.label.dtype == np.uint8
        assert case.label.shape == (8, 32, 32) and set(np.unique(case.label)) <= {0, 1}
        assert case.affine.shape == (4, 4) and case.affine.dtype == np.float64
        assert set(case.paths) == {*MODALITIES, "OT"}
        assert all(p.is_file() for p in case.paths.values())


def test_image_axes_are_z_y_x_of_the_ras_nifti_array_in_channel_order(tiny: Path) -> None:
    case = load_isles2017(tiny, cases=["2"])[0]
    assert case.orientation == "LPS"  # synthetic files: x to the left, y posterior
    for c, mod in enumerate(MODALITIES):
        native = nib.load(str(case.paths[mod])).get_fdata()
        assert native.shape == (32, 32, 8)  # x = W, y = H, z = D
        ras = native[::-1, ::-1, :]  # LPS -> RAS: x and y reversed
        np.testing.assert_allclose(case.image[c], ras.transpose(2, 1, 0), rtol=1e-6)
        # one voxel spelled out: image[c, z, y, x] == nifti[31 - x, 31 - y, z]
        assert case.image[c, 3, 20, 5] == pytest.approx(native[26, 11, 3], rel=1e-6)
    ot = np.asanyarray(nib.load(str(case.paths["OT"])).dataobj)
    assert np.array_equal(case.label, ot[::-1, ::-1, :].transpose(2, 1, 0))


def test_spacing_comes_from_the_header_and_is_anisotropic(tiny: Path) -> None:
    for case in load_isles2017(tiny):
        zooms = nib.load(str(case.paths["ADC"])).header.get_zooms()
        assert case.spacing == pytest.approx(tuple(float(z) for z in zooms))
        assert case.spacing[2] > case.spacing[0] == case.spacing[1]


def test_repr_shows_id_grid_spacing_and_lesion_volume(tiny: Path) -> None:
    case = load_isles2017(tiny, cases=["4"])[0]
    text = repr(case)
    assert text.startswith("Case('4', grid 32x32x8")
    assert "mm" in text and f"lesion {case.lesion_ml:.2f} mL" in text
    voxel_ml = np.prod(case.spacing) / 1000
    assert case.lesion_ml == pytest.approx(case.label.sum() * voxel_ml)


def test_case_ids_sort_numerically(tiny: Path) -> None:
    shutil.copytree(tiny / "training_2", tiny / "training_10")
    shutil.copytree(tiny / "training_2", tiny / "training_21")
    ids = [c.case_id for c in discover_cases(tiny)]
    assert ids == ["1", "2", "4", "5", "10", "21"]
    assert sorted(["10", "2", "b", "1"], key=case_sort_key) == ["1", "2", "10", "b"]


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("VSD.Brain.XX.O.MR_ADC.128020", "MR_ADC"),
        ("SMIR.Brain.XX.O.MR_rCBF.128025.nii", "MR_rCBF"),
        ("SMIR.Brain.XX.O.OT.128050.nii.gz", "OT"),
        ("VSD.Brain.XX.O.MR_4DPWI.128027", "MR_4DPWI"),
        ("VSD.Brain.XX.O.MR_Tmax.1", "MR_Tmax"),
        ("notes.txt", None),
        ("VSD.Brain.XX.O.MR_ADCx.1", None),
    ],
)
def test_tokens_are_matched_whatever_the_prefix(name: str, token: str | None) -> None:
    assert token_of(name) == token


def test_smir_prefix_is_read_like_vsd(tiny: Path) -> None:
    smir = [p.name for p in (tiny / "training_5").iterdir()]
    assert smir and all(n.startswith("SMIR.") for n in smir)
    assert load_isles2017(tiny, cases=["5"])[0].case_id == "5"


def test_macosx_folders_and_dot_underscore_files_are_ignored(tiny: Path) -> None:
    before = load_isles2017(tiny, cases=["1"])[0]
    junk = b"\x00\x05\x16\x07Mac OS X resource fork"
    mac = tiny / "__MACOSX" / "training_1"
    for p in (tiny / "training_1").glob("*/*.nii"):
        target = mac / p.parent.name / f"._{p.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(junk)
        (p.parent / f"._{p.name}").write_bytes(junk)  # beside the real file
    (tiny / "training_1" / "._VSD.Brain.XX.O.MR_ADC.1").write_bytes(junk)
    cases = load_isles2017(tiny)
    assert [c.case_id for c in cases] == ["1", "2", "4", "5"]
    assert np.array_equal(cases[0].image, before.image)


def test_4dpwi_is_ignored(tiny: Path) -> None:
    folder = tiny / "training_2" / "VSD.Brain.XX.O.MR_4DPWI.999"
    folder.mkdir()
    pwi = np.random.default_rng(0).random((32, 32, 8, 1, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(pwi, np.eye(4)), str(folder / f"{folder.name}.nii"))
    case = load_isles2017(tiny, cases=["2"])[0]
    assert "4DPWI" not in case.paths and case.image.shape[0] == 6


def test_compressed_nii_gz_reads_the_same(tiny: Path) -> None:
    plain = load_isles2017(tiny, cases=["4"])[0]
    for p in list((tiny / "training_4").glob("*/*.nii")):
        p.with_name(p.name + ".gz").write_bytes(gzip.compress(p.read_bytes()))
        p.unlink()
    packed = load_isles2017(tiny, cases=["4"])[0]
    assert all(str(p).endswith(".nii.gz") for p in packed.paths.values())
    assert np.array_equal(packed.image, plain.image)
    assert np.array_equal(packed.label, plain.label)


def test_case_without_ot_is_valid_with_no_label(tiny: Path) -> None:
    shutil.rmtree(modality_file(tiny, "2", "OT").parent)
    case = next(c for c in load_isles2017(tiny) if c.case_id == "2")
    assert case.label is None and case.lesion_ml is None and "OT" not in case.paths
    assert "no OT" in repr(case)
    report = next(r for r in inspect_isles2017(tiny) if r.case_id == "2")
    assert report.status == "ok" and not report.has_label


def test_any_folder_holding_modality_subfolders_is_a_case(tiny: Path) -> None:
    nested = tiny / "extra" / "patient_A"
    nested.parent.mkdir()
    shutil.move(str(tiny / "training_2"), str(nested))
    ids = [c.case_id for c in load_isles2017(tiny)]
    assert ids == ["1", "4", "5", "patient_A"]
    # the root itself may be one case folder
    assert [c.case_id for c in load_isles2017(nested)] == ["patient_A"]


def test_files_directly_in_the_case_folder_are_found(tiny: Path) -> None:
    case_dir = tiny / "training_1"
    for p in list(case_dir.glob("*/*.nii")):
        folder = p.parent
        shutil.move(str(p), str(case_dir / p.name))
        folder.rmdir()
    assert load_isles2017(tiny, cases=["1"])[0].image.shape == (6, 8, 32, 32)


def test_nifti_round_trip_keeps_data_affine_and_codes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    theta = 0.1
    affine = np.array(
        [
            [-1.8 * np.cos(theta), 1.8 * np.sin(theta), 0.0, 90.5],
            [1.8 * np.sin(theta), 1.8 * np.cos(theta), 0.0, -120.25],
            [0.0, 0.0, 6.5, -40.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    case_dir = tmp_path / "data" / "training_9"
    arrays = {}
    for k, tok in enumerate([*(f"MR_{m}" for m in MODALITIES), "OT"]):
        if tok == "OT":
            data = (rng.random((12, 10, 4)) > 0.8).astype(np.uint8)
        else:
            data = rng.random((12, 10, 4)).astype(np.float32) + 0.5
        img = nib.Nifti1Image(data, affine)
        img.header.set_qform(affine, code=2)
        img.header.set_sform(affine, code=4)
        name = f"VSD.Brain.XX.O.{tok}.{100 + k}"
        (case_dir / name).mkdir(parents=True)
        nib.save(img, str(case_dir / name / f"{name}.nii"))
        arrays[tok] = data
    case = load_isles2017(tmp_path / "data")[0]
    assert case.case_id == "9"
    assert case.orientation == "LAS"  # the file's x runs to the left: held with x reversed
    np.testing.assert_allclose(case.native_affine, affine, atol=1e-5)
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip_x[0, 3] = 11  # RAS voxel i is file voxel 11 - i
    np.testing.assert_allclose(case.affine, affine @ flip_x, atol=1e-5)
    assert int(case.header["qform_code"]) == 2 and int(case.header["sform_code"]) == 4
    np.testing.assert_allclose(case.header.get_qform(), affine, atol=1e-5)
    np.testing.assert_allclose(case.header.get_sform(), affine, atol=1e-5)
    assert case.spacing == pytest.approx((1.8, 1.8, 6.5))
    for c, mod in enumerate(MODALITIES):
        assert np.array_equal(case.image[c], arrays[f"MR_{mod}"][::-1].transpose(2, 1, 0))
    assert np.array_equal(case.label, arrays["OT"][::-1].transpose(2, 1, 0))
    # writing the case back in the file's order with its header gives the same file content
    file_order = to_file_order(case.image[0], case.orientation)
    back = nib.Nifti1Image(file_order.transpose(2, 1, 0), case.native_affine, case.header)
    again = nib.Nifti1Image.from_bytes(back.to_bytes())
    assert np.array_equal(np.asanyarray(again.dataobj), arrays["MR_ADC"])
    assert int(again.header["qform_code"]) == 2 and int(again.header["sform_code"]) == 4
    np.testing.assert_allclose(again.affine, affine, atol=1e-5)


def test_scaled_storage_is_read_as_physical_values(tiny: Path) -> None:
    path = modality_file(tiny, "1", "MR_rCBF")
    img = nib.load(str(path))
    values = img.get_fdata().astype(np.float32)
    stored = nib.Nifti1Image(np.round(values * 100).astype(np.int16), img.affine, img.header)
    stored.header.set_data_dtype(np.int16)
    stored.header.set_slope_inter(0.01, 0.0)
    path.unlink()
    nib.save(stored, str(path))
    case = load_isles2017(tiny, cases=["1"])[0]
    ras = values[::-1, ::-1, :]  # synthetic files are stored LPS
    np.testing.assert_allclose(case.image[MODALITIES.index("rCBF")], ras.T, atol=0.006)


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda b: b.__name__)
def test_each_broken_kind_names_case_file_and_problem(tiny: Path, breaker: Breaker) -> None:
    rel, words = breaker(tiny)
    with pytest.raises(DataError) as info:
        load_isles2017(tiny)
    problems = info.value.problems
    assert len(problems) == 1, problems
    line = problems[0]
    assert line.startswith(f"case 2: {rel}: "), line
    assert words in line, line
    assert "\n" not in line
    # skip: the good cases still load, one warning per problem
    with pytest.warns(UserWarning, match=r"case 2: ") as caught:
        good = load_isles2017(tiny, on_error="skip")
    assert [c.case_id for c in good] == ["1", "4", "5"]
    assert sum("case 2" in str(w.message) for w in caught) == 1
    # inspect never raises and marks only case 2 invalid
    reports = {r.case_id: r for r in inspect_isles2017(tiny)}
    assert reports["2"].status == "invalid" and reports["2"].problems == [line]
    assert all(reports[c].status == "ok" for c in ("1", "4", "5"))


def test_all_problems_of_a_case_are_reported_at_once(tiny: Path) -> None:
    missing_modality(tiny)
    nan_voxels(tiny)
    ot_not_binary(tiny)
    with pytest.raises(DataError) as info:
        load_isles2017(tiny)
    text = str(info.value)
    assert len(info.value.problems) == 3
    for words in ("missing modality MR_TTP", "NaN", "OT is not binary"):
        assert words in text


def test_problems_of_several_cases_are_all_listed(tiny: Path) -> None:
    nan_voxels(tiny)
    shutil.rmtree(modality_file(tiny, "4", "MR_ADC").parent)
    with pytest.raises(DataError) as info:
        load_isles2017(tiny)
    assert [p.split(":")[0] for p in info.value.problems] == ["case 2", "case 4"]


def test_duplicate_case_ids_are_a_problem(tiny: Path) -> None:
    (tiny / "more").mkdir()
    shutil.copytree(tiny / "training_2", tiny / "more" / "training_2")
    with pytest.raises(
        DataError, match=r"case 2: .*training_2: case id 2 already used by .*training_2"
    ):
        load_isles2017(tiny)


def test_missing_or_empty_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StrokeLRPError, match="no such folder"):
        load_isles2017(tmp_path / "nope")
    with pytest.raises(StrokeLRPError, match="no ISLES 2017 case found"):
        load_isles2017(tmp_path)
    with pytest.raises(StrokeLRPError, match="no ISLES 2017 case found"):
        list(inspect_isles2017(tmp_path))


def test_unknown_case_ids_are_named(tiny: Path) -> None:
    with pytest.raises(StrokeLRPError, match=r"unknown case id\(s\) 3"):
        load_isles2017(tiny, cases=["3"])
    assert [c.case_id for c in load_isles2017(tiny, cases=["5", "1"])] == ["1", "5"]


def test_on_error_must_be_raise_or_skip(tiny: Path) -> None:
    with pytest.raises(ValueError, match="on_error"):
        load_isles2017(tiny, on_error="ignore")  # type: ignore[arg-type]


def test_valid_tree_gives_no_warning(tiny: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_isles2017(tiny, on_error="skip")) == 4
    assert isinstance(load_isles2017(tiny)[0], Case)


def test_a_modality_in_another_format_is_named(tiny: Path) -> None:
    path = modality_file(tiny, "1", "MR_ADC")
    folder = path.parent
    shutil.move(str(path), str(tiny / "training_1" / "VSD.Brain.XX.O.MR_ADC.7.mha"))
    folder.rmdir()
    with pytest.raises(DataError) as info:
        load_isles2017(tiny)
    assert info.value.problems == [
        "case 1: training_1: no .nii or .nii.gz image for MR_ADC "
        "(found training_1/VSD.Brain.XX.O.MR_ADC.7.mha)"
    ]


def test_a_case_is_also_selected_by_its_folder_name(tiny: Path) -> None:
    by_id = load_isles2017(tiny, cases=["2"])
    by_folder = load_isles2017(tiny, cases=["training_2"])
    assert [c.case_id for c in by_folder] == [c.case_id for c in by_id] == ["2"]
