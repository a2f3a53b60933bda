"""Data layouts: detection, every reader on hand-written trees (not only what synth writes),
the grid rules (resampling with world affines, exact voxel-order changes), channel names."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run_cli

from strokelrp.data.layouts import (
    LAYOUTS,
    detect_layout,
    discover_cases,
    inspect_data,
    load_case,
    load_cases,
    shown_channel,
)
from strokelrp.errors import DataError, StrokeLRPError

SHAPE = (12, 10, 6)  # x, y, z


def write(path: Path, data: np.ndarray, affine: np.ndarray | None = None, **header) -> Path:
    """A NIfTI-1 file of ``data`` (x, y, z[, c]) with ``affine`` (default 2 mm LPS-like)."""
    affine = np.diag([-2.0, 2.0, 3.0, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    for key, value in header.items():
        img.header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def volume(seed: int, shape: tuple[int, ...] = SHAPE, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 100.0, shape).astype(dtype)


def mask(shape: tuple[int, ...] = SHAPE, value: int = 1) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[3:7, 2:6, 1:4] = value
    return m


def ras(data: np.ndarray) -> np.ndarray:
    """(x, y, z) stored with the default affine diag(-2, 2, 3) -> the reader's (z, y, x) RAS
    array: x is flipped (L -> R), nothing else moves."""
    return data[::-1].transpose(2, 1, 0)


# ------------------------------------------------------------------------- ISLES 2022


def isles2022_tree(root: Path, flair_affine: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Subjects directly under the root (no rawdata/), upper-case suffixes, the mask in a
    derivatives pipeline folder with an anat/ level: the variants the reader must tolerate."""
    arrays = {}
    for n in (1, 2):
        sub = f"sub-strokecase{n:04d}"
        dwi, adc = volume(10 * n), volume(10 * n + 1)
        write(root / sub / "ses-0001" / "dwi" / f"{sub}_ses-0001_DWI.nii.gz", dwi)
        write(root / sub / "ses-0001" / "dwi" / f"{sub}_ses-0001_adc.nii", adc)
        flair_shape = (8, 7, 6)
        flair = volume(10 * n + 2, flair_shape)
        write(
            root / sub / "ses-0001" / "anat" / f"{sub}_ses-0001_flair.nii.gz", flair, flair_affine
        )
        deriv = root / "derivatives" / "lesion_masks" / sub / "ses-0001" / "anat"
        write(deriv / f"{sub}_ses-0001_MSK.nii.gz", mask())
        arrays[f"strokecase{n:04d}"] = np.stack([dwi, adc])
    return arrays


def test_isles2022_hand_tree_is_detected_read_and_flair_resampled(tmp_path: Path) -> None:
    flair_affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    flair_affine[:3, 3] = [1.0, -1.5, 0.0]
    arrays = isles2022_tree(tmp_path, flair_affine)
    assert detect_layout(tmp_path).name == "isles2022"
    cases = load_cases(tmp_path)
    assert [c.case_id for c in cases] == ["strokecase0001", "strokecase0002"]
    for case in cases:
        assert case.channels == ("DWI", "ADC", "FLAIR") and case.layout == "isles2022"
        np.testing.assert_array_equal(case.image[0], ras(arrays[case.case_id][0]))
        np.testing.assert_array_equal(case.image[1], ras(arrays[case.case_id][1]))
        np.testing.assert_array_equal(case.label, ras(mask()))
        assert "FLAIR" in case.resampled and "8x7x6" in case.resampled["FLAIR"]
    reports = list(inspect_data(tmp_path))
    assert all(r.status == "ok" for r in reports)
    assert all(any("FLAIR resampled" in n for n in r.notes) for r in reports)


def test_flair_resampling_reproduces_a_linear_field_of_world_coordinates(tmp_path: Path) -> None:
    """Trilinear resampling is exact for a linear function of position: FLAIR holds
    f(world) = 3 + 0.5 x - 0.25 y + 0.125 z on its own grid; on the DWI grid the reader must give
    f at each DWI voxel's world position (where the FLAIR grid covers it)."""
    flair_affine = np.array(
        [[-3.0, 0, 0, 4.0], [0, 2.5, 0, -2.0], [0, 0, 3.0, 0.0], [0, 0, 0, 1]], dtype=float
    )
    isles2022_tree(tmp_path, flair_affine)

    def field(aff: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        out = np.zeros(shape, np.float32)
        for i in range(shape[0]):
            for j in range(shape[1]):
                for k in range(shape[2]):
                    x, y, z, _ = aff @ np.array([i, j, k, 1.0])
                    out[i, j, k] = 3 + 0.5 * x - 0.25 * y + 0.125 * z + 100
        return out

    flair_shape = (8, 7, 6)
    sub = "sub-strokecase0001"
    write(
        tmp_path / sub / "ses-0001" / "anat" / f"{sub}_ses-0001_flair.nii.gz",
        field(flair_affine, flair_shape),
        flair_affine,
    )
    case = load_case(tmp_path, "sub-strokecase0001")
    dwi_affine = np.diag([-2.0, 2.0, 3.0, 1.0])
    expected = ras(field(dwi_affine, SHAPE))
    inside = np.zeros(SHAPE, bool)
    to_flair = np.linalg.inv(flair_affine) @ dwi_affine
    for i in range(SHAPE[0]):
        for j in range(SHAPE[1]):
            for k in range(SHAPE[2]):
                v = to_flair @ np.array([i, j, k, 1.0])
                inside[i, j, k] = all(0 <= v[a] <= flair_shape[a] - 1 for a in range(3))
    inside_ras = ras(inside)
    assert inside_ras.sum() > 50
    np.testing.assert_allclose(case.image[2][inside_ras], expected[inside_ras], rtol=1e-5)


def test_isles2022_without_flair_and_a_misplaced_adc(tmp_path: Path) -> None:
    isles2022_tree(tmp_path)
    cases = load_cases(tmp_path, channels=["dwi", "ADC"])
    assert cases[0].channels == ("DWI", "ADC") and cases[0].resampled == {}
    sub = "sub-strokecase0002"
    shifted = np.diag([-2.0, 2.0, 3.0, 1.0])
    shifted[0, 3] = 5.0
    write(tmp_path / sub / "ses-0001" / "dwi" / f"{sub}_ses-0001_adc.nii", volume(1), shifted)
    with pytest.raises(DataError) as info:
        load_cases(tmp_path)
    (line,) = info.value.problems
    assert line.startswith(f"case strokecase0002: {sub}/ses-0001/dwi/{sub}_ses-0001_adc.nii: ")
    assert "affine differs from DWI" in line and "5 mm" in line


def test_isles2022_missing_mask_and_missing_dwi(tmp_path: Path) -> None:
    isles2022_tree(tmp_path)
    next((tmp_path / "derivatives").rglob("sub-strokecase0001_*")).unlink()
    next(tmp_path.glob("sub-strokecase0002/ses-0001/dwi/*DWI*")).unlink()
    reports = {r.case_id: r for r in inspect_data(tmp_path)}
    assert reports["strokecase0001"].status == "ok" and not reports["strokecase0001"].has_label
    (line,) = reports["strokecase0002"].problems
    assert line == (
        "case strokecase0002: sub-strokecase0002: missing DWI (no file ending in "
        "_dwi.nii or .nii.gz)"
    )


# ------------------------------------------------------------------------- ISLES 2024


def isles2024_tree(root: Path) -> dict[str, np.ndarray]:
    sub = "sub-stroke0003"
    raw = root / "raw_data" / sub / "ses-01"
    write(raw / f"{sub}_ses-01_ncct.nii.gz", volume(1).astype(np.int16))
    write(raw / f"{sub}_ses-01_ctp.nii.gz", volume(2, (*SHAPE, 4)))
    maps = {}
    deriv = root / "derivatives" / sub / "ses-01"
    write(deriv / f"{sub}_ses-01_space-ncct_cta.nii.gz", volume(3))
    for k, name in enumerate(("cbf", "cbv", "mtt", "tmax")):
        maps[name] = volume(4 + k)
        write(deriv / "perfusion-maps" / f"{sub}_ses-01_space-ncct_{name}.nii.gz", maps[name])
    write(root / "derivatives" / sub / "ses-02" / f"{sub}_ses-02_lesion-msk.nii.gz", mask())
    return maps


def test_isles2024_default_and_chosen_channels(tmp_path: Path) -> None:
    maps = isles2024_tree(tmp_path)
    assert detect_layout(tmp_path).name == "isles2024"
    (case,) = load_cases(tmp_path)
    assert case.case_id == "stroke0003" and case.channels == ("CBF", "CBV", "MTT", "Tmax")
    for c, name in enumerate(("cbf", "cbv", "mtt", "tmax")):
        np.testing.assert_array_equal(case.image[c], ras(maps[name]))
    (case,) = load_cases(tmp_path, channels=["ncct", "Tmax"])
    assert case.channels == ("NCCT", "Tmax")
    with pytest.raises(StrokeLRPError, match="CTP is a 4-D perfusion time series"):
        load_cases(tmp_path, channels=["CTP"])
    with pytest.raises(StrokeLRPError, match="unknown channel"):
        load_cases(tmp_path, channels=["T2"])


# ------------------------------------------------------------------------- nnU-Net raw


def nnunet_tree(root: Path, labels: dict | None = None) -> None:
    doc = {
        "channel_names": {"0": "T1w", "1": "FLAIR"},
        "labels": labels or {"background": 0, "edema": 1, "stroke": 2},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(doc))
    for n in (1, 2):
        write(root / "imagesTr" / f"ATLAS_{n:03d}_0000.nii.gz", volume(n))
        write(root / "imagesTr" / f"ATLAS_{n:03d}_0001.nii.gz", volume(n + 10))
        labels_arr = mask(value=2)
        labels_arr[0:2, 0:2, 0:2] = 1
        write(root / "labelsTr" / f"ATLAS_{n:03d}.nii.gz", labels_arr)
    write(root / "imagesTs" / "ATLAS_100_0000.nii.gz", volume(100))
    write(root / "imagesTs" / "ATLAS_100_0001.nii.gz", volume(101))


def test_nnunet_channels_labels_and_test_split(tmp_path: Path) -> None:
    nnunet_tree(tmp_path)
    assert detect_layout(tmp_path).name == "nnunet"
    cases = load_cases(tmp_path)
    assert [c.case_id for c in cases] == ["ATLAS_001", "ATLAS_002", "ATLAS_100"]
    first = cases[0]
    assert first.channels == ("T1w", "FLAIR")
    np.testing.assert_array_equal(first.image[1], ras(volume(11)))
    np.testing.assert_array_equal(first.label, ras((mask(value=2) == 2).astype(np.uint8)))
    assert cases[2].label is None  # imagesTs
    (edema,) = load_cases(tmp_path, cases=["ATLAS_001"], lesion="edema")
    assert int(edema.label.sum()) == 8  # the 2x2x2 corner of class 1
    with pytest.raises(StrokeLRPError, match="no label class 'core'"):
        load_cases(tmp_path, lesion="core")


def test_nnunet_dataset_uses_only_labelled_cases(tmp_path: Path) -> None:
    from strokelrp.data.dataset import CaseDataset

    nnunet_tree(tmp_path)
    ds = CaseDataset(tmp_path, (4, 8, 8), use_cache=False)
    assert ds.case_ids == ["ATLAS_001", "ATLAS_002"] and ds.channels == ("T1w", "FLAIR")
    x, y, _ = ds[0]
    assert tuple(x.shape) == (2, 4, 8, 8) and set(y.unique().tolist()) <= {0, 1}


def test_nnunet_problems(tmp_path: Path) -> None:
    nnunet_tree(tmp_path)
    (tmp_path / "imagesTr" / "ATLAS_002_0001.nii.gz").unlink()
    bad = mask(value=2)
    bad[0, 0, 0] = 7
    write(tmp_path / "labelsTr" / "ATLAS_001.nii.gz", bad)
    reports = {r.case_id: r for r in inspect_data(tmp_path)}
    (line,) = reports["ATLAS_001"].problems
    assert line.startswith("case ATLAS_001: labelsTr/ATLAS_001.nii.gz: the label (lesion class")
    assert "not labels of the data set (0, 1, 2) found (7)" in line
    (line,) = reports["ATLAS_002"].problems
    assert line == (
        "case ATLAS_002: imagesTr: missing channel 0001 (FLAIR): no ATLAS_002_0001.nii.gz in "
        "imagesTr"
    )


def test_nnunet_refuses_region_labels_and_ambiguous_classes(tmp_path: Path) -> None:
    nnunet_tree(tmp_path / "a", {"background": 0, "whole": [1, 2], "core": 2})
    with pytest.raises(StrokeLRPError, match="region-based"):
        load_cases(tmp_path / "a")
    nnunet_tree(tmp_path / "b", {"background": 0, "edema": 1, "necrosis": 2})
    with pytest.raises(StrokeLRPError, match="choose the lesion class with --lesion"):
        load_cases(tmp_path / "b")


# ------------------------------------------------------------------------- Decathlon


def test_decathlon_4d_images_are_split_into_named_channels(tmp_path: Path) -> None:
    stack = np.stack([volume(1), volume(2), volume(3)], axis=-1)
    write(tmp_path / "imagesTr" / "BRATS_001.nii.gz", stack)
    write(tmp_path / "labelsTr" / "BRATS_001.nii.gz", mask(value=3))
    doc = {
        "modality": {"0": "FLAIR", "1": "T1w", "2": "T2w"},
        "labels": {"0": "background", "1": "edema", "3": "lesion"},
        "training": [
            {"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}
        ],
        "test": [],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    (tmp_path / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"mac resource fork")
    assert detect_layout(tmp_path).name == "msd"
    (case,) = load_cases(tmp_path)
    assert case.case_id == "BRATS_001" and case.channels == ("FLAIR", "T1w", "T2w")
    for c in range(3):
        np.testing.assert_array_equal(case.image[c], ras(stack[..., c]))
    np.testing.assert_array_equal(case.label, ras(mask()))
    (case,) = load_cases(tmp_path, channels=["T2w", "FLAIR"])
    np.testing.assert_array_equal(case.image[0], ras(stack[..., 2]))


# ------------------------------------------------------------------------ synth + CLI


@pytest.mark.parametrize("layout", ["isles2017", "isles2022", "isles2024", "nnunet", "msd"])
def test_synth_layout_then_inspect(tmp_path: Path, layout: str, capsys) -> None:
    out = tmp_path / layout
    args = ["synth", str(out), "--layout", layout, "--cases", "2", "--shape", "24", "24", "6"]
    code, text, err = run_cli(args, capsys)
    assert code == 0, err
    code, text, err = run_cli(["inspect", str(out)], capsys)
    assert code == 0, err
    assert text.splitlines()[0].startswith(f"layout: {layout} (2 cases; channels ")
    assert "2 cases, 2 valid, 0 invalid" in text
    code, text, _ = run_cli(["inspect", str(out), "--json", "--layout", layout], capsys)
    doc = json.loads(text)
    assert doc["layout"] == layout and doc["n_invalid"] == 0 and doc["channels"]
    written = sorted(out.rglob("*.nii*"))
    assert written
    for path in written:  # other tools read them: gzip where the name says so
        assert (path.read_bytes()[:2] == b"\x1f\x8b") == path.name.endswith(".gz"), path
        assert nib.load(path).shape


@pytest.mark.parametrize(
    ("layout", "title"),
    [("isles2022", "msk"), ("isles2024", "lesion-msk"), ("nnunet", "labelsTr, class lesion")],
)
def test_ground_truth_is_titled_by_the_layouts_own_name(
    tmp_path: Path, layout: str, title: str
) -> None:
    from strokelrp.data.layouts import ground_truth_title
    from strokelrp.data.synth import synthesize_isles2017
    from strokelrp.data.synth_layouts import synthesize_layout

    (case,) = load_cases(synthesize_layout(tmp_path / layout, 1, layout, shape=(24, 24, 6)))
    assert ground_truth_title(case, "lesion") == title
    synthesize_isles2017(tmp_path / "2017", n_cases=1, shape=(24, 24, 6))
    (old,) = load_cases(tmp_path / "2017")
    assert ground_truth_title(old) == "OT"
    old.label = None
    assert ground_truth_title(old) == ""


def test_forcing_the_wrong_layout_is_one_clear_error(tmp_path: Path, capsys) -> None:
    nnunet_tree(tmp_path)
    code, _, err = run_cli(["inspect", str(tmp_path), "--layout", "isles2022"], capsys)
    assert code == 1 and err.startswith("error: ") and "no ISLES 2022 case found" in err


def test_inspect_prints_each_case_before_a_later_one_fails(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strokelrp.data.layouts as layouts

    nnunet_tree(tmp_path)
    real = layouts.read_case
    seen = []

    def failing(folder, root, **options):
        seen.append(folder.case_id)
        if len(seen) == 2:
            raise MemoryError("simulated")
        return real(folder, root, **options)

    monkeypatch.setattr(layouts, "read_case", failing)
    with pytest.raises(MemoryError):
        from strokelrp.cli import main

        main(["inspect", str(tmp_path)])
    out = capsys.readouterr().out
    assert "ATLAS_001" in out and "ok" in out.split("ATLAS_001")[1].splitlines()[0]


def test_registry_and_shown_channel() -> None:
    from strokelrp.cli import _LAYOUT_NAMES, _SYNTH_LAYOUTS
    from strokelrp.data.synth_layouts import LAYOUTS as SYNTH

    assert list(LAYOUTS) == ["nnunet", "msd", "isles2024", "isles2022", "isles2017"]
    assert set(_LAYOUT_NAMES) == set(LAYOUTS) == {"isles2017", *SYNTH} == set(_SYNTH_LAYOUTS)
    assert shown_channel(("ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP")) == "rCBF"
    assert shown_channel(("DWI", "ADC")) == "DWI"
    assert shown_channel(("DWI", "ADC"), "adc") == "ADC"
    with pytest.raises(StrokeLRPError, match="not one of the data's channels"):
        shown_channel(("DWI", "ADC"), "rCBF")


def test_headers_only_inspect_reads_no_voxel(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strokelrp.data.layouts.base as base

    isles2022_tree(tmp_path)
    shifted = np.diag([-2.0, 2.0, 3.0, 1.0])
    shifted[1, 3] = 4.0
    sub = "sub-strokecase0002"
    write(tmp_path / sub / "ses-0001" / "dwi" / f"{sub}_ses-0001_adc.nii", volume(1), shifted)
    monkeypatch.setattr(base, "read_nifti", lambda *a, **k: 1 / 0)  # any voxel read fails
    code, text, err = run_cli(["inspect", str(tmp_path), "--headers-only"], capsys)
    assert code == 1 and "2 cases, 1 valid, 1 invalid" in text
    (line,) = err.strip().splitlines()
    assert "affine differs from DWI" in line and "4 mm" in line
    assert "note: case strokecase0001: FLAIR would be resampled onto DWI's grid" in text


def test_discover_names_only(tmp_path: Path) -> None:
    """Discovery never opens an image: a tree of garbage files is listed, not read."""
    isles2022_tree(tmp_path)
    for path in tmp_path.rglob("*.nii*"):
        path.write_bytes(b"not a nifti")
    folders = discover_cases(tmp_path)
    assert [f.case_id for f in folders] == ["strokecase0001", "strokecase0002"]
