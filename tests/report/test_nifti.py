"""NIfTI writers: native grid, layout, dtype, geometry (affine, qform/sform codes) round trips."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from strokelrp.data.layouts.isles2017 import CHANNELS as MODALITIES
from strokelrp.errors import StrokeLRPError
from strokelrp.report.nifti import (
    labels_from_logits,
    native_shape,
    sidecar_path,
    write_label_nifti,
    write_relevance_companions,
    write_relevance_nifti,
)


@dataclass
class FakeCase:
    """The fields of ``strokelrp.data.layouts.Case`` that the writers use."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple[float, float, float]
    paths: dict[str, Path] = field(default_factory=dict)
    orientation: str = "RAS"  # image kept in the file's order: no reorientation
    native_affine: np.ndarray | None = None
    channels: tuple[str, ...] = MODALITIES


def _oblique_affine() -> np.ndarray:
    """An anisotropic, rotated, shifted voxel-to-world matrix (no shear)."""
    angle = 0.3
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 6.5])
    affine[:3, 3] = [-90.0, 12.5, -40.0]
    return affine


def make_case(tmp_path: Path, xyz: tuple[int, int, int] = (7, 6, 5)) -> FakeCase:
    """Write one modality file with qform code 1 / sform code 2 and load it as a case would."""
    rng = np.random.default_rng(0)
    affine = _oblique_affine()
    arr = rng.integers(0, 300, size=xyz).astype(np.int16)
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    img.header.set_xyzt_units("mm", "sec")
    path = tmp_path / "case" / "VSD.Brain.XX.O.MR_ADC.1.nii"
    path.parent.mkdir(parents=True)
    nib.save(img, path)
    loaded = nib.load(path)
    data = np.asarray(loaded.dataobj, dtype=np.float32)
    image = np.stack([data.transpose(2, 1, 0)] * 6)  # (6, z, y, x)
    return FakeCase(
        case_id="training_1",
        image=image,
        label=None,
        affine=loaded.affine,
        header=loaded.header,
        spacing=tuple(float(z) for z in loaded.header.get_zooms()[:3]),
        paths={"ADC": path},
    )


def raw_header(path: Path) -> nib.Nifti1Header:
    """The header exactly as stored on disk (a loaded image's header has scaling reset)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        return nib.Nifti1Header.from_fileobj(fh)


def test_native_shape_is_dhw(tmp_path: Path) -> None:
    case = make_case(tmp_path, xyz=(7, 6, 5))
    assert native_shape(case) == (5, 6, 7)


def test_relevance_in_native_grid_overlays_the_modality_file(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    relevance = torch.randn(6, 3, 4, 4)  # model scale, differs from native (5, 6, 7)
    out = write_relevance_nifti(
        tmp_path / "out" / "relevance_raw.nii.gz", relevance, case, setting="raw", rules="paper"
    )
    written = nib.load(out)
    modality = nib.load(case.paths["ADC"])
    assert written.shape == (*modality.shape, 6)
    assert written.get_data_dtype() == np.float32
    np.testing.assert_allclose(written.affine, modality.affine, atol=1e-5)
    np.testing.assert_allclose(written.affine, case.affine, atol=1e-5)
    assert int(written.header["qform_code"]) == 1
    assert int(written.header["sform_code"]) == 2
    np.testing.assert_allclose(written.header.get_zooms(), (0.9, 1.1, 6.5, 1.0), rtol=1e-5)
    assert written.header.get_xyzt_units()[0] == "mm"
    on_disk = raw_header(out)  # nibabel resets a loaded image's header scaling to NaN
    assert (float(on_disk["scl_slope"]), float(on_disk["scl_inter"])) == (1.0, 0.0)
    assert (written.dataobj.slope, written.dataobj.inter) == (1.0, 0.0)
    data = np.asarray(written.dataobj)
    assert data.dtype == np.float32
    assert written.header["cal_min"] == pytest.approx(-np.abs(data).max())
    assert written.header["cal_max"] == pytest.approx(np.abs(data).max())
    assert np.any(data < 0) and np.any(data > 0)  # signed, never abs()
    assert b"raw" in written.header["descrip"].tobytes()
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


def test_relevance_layout_is_x_y_z_channel(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    c, z, y, x = np.meshgrid(*(np.arange(n) for n in (6, 5, 6, 7)), indexing="ij")
    relevance = (1000 * c + 100 * z + 10 * y + x - 2500).astype(np.float32)
    out = write_relevance_nifti(tmp_path / "r.nii", relevance, case, setting="pass(0,0.4)")
    data = np.asarray(nib.load(out).dataobj)
    # voxel (x=3, y=2, z=4) of channel 5 is relevance[5, 4, 2, 3]
    assert data[3, 2, 4, 5] == relevance[5, 4, 2, 3]
    np.testing.assert_array_equal(data, relevance.transpose(3, 2, 1, 0))


def test_resizing_back_keeps_a_constant_map_constant(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    relevance = np.ones((6, 3, 4, 4), dtype=np.float32) * np.arange(-3, 3)[:, None, None, None]
    out = write_relevance_nifti(tmp_path / "r.nii.gz", relevance, case, setting="raw")
    data = np.asarray(nib.load(out).dataobj)
    for channel, value in enumerate(range(-3, 3)):
        np.testing.assert_allclose(data[..., channel], value, atol=1e-6)


def test_non_finite_relevance_is_refused(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    relevance = np.zeros((6, 5, 6, 7), dtype=np.float32)
    relevance[0, 0, 0, 0] = np.nan
    with pytest.raises(StrokeLRPError, match="training_1"):
        write_relevance_nifti(tmp_path / "r.nii.gz", relevance, case, setting="raw")
    assert not (tmp_path / "r.nii.gz").exists()


def test_label_map_round_trip(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    label = np.zeros((5, 6, 7), dtype=np.uint8)
    label[1:3, 2:4, 4:6] = 1
    out = write_label_nifti(tmp_path / "prediction.nii.gz", label, case)
    written = nib.load(out)
    modality = nib.load(case.paths["ADC"])
    assert written.shape == modality.shape
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, modality.affine, atol=1e-5)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 2)
    np.testing.assert_array_equal(np.asarray(written.dataobj), label.transpose(2, 1, 0))


def test_label_map_must_be_native(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    with pytest.raises(ValueError, match="native grid"):
        write_label_nifti(tmp_path / "p.nii.gz", np.zeros((3, 4, 4), np.uint8), case)


def test_labels_from_logits_resizes_then_argmaxes(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    logits = torch.zeros(2, 5, 6, 7)
    logits[1, 2:4, 1:5, 3:6] = 5.0  # lesion where class 1 wins
    labels = labels_from_logits(logits, case)
    assert labels.dtype == np.uint8 and labels.shape == (5, 6, 7)
    np.testing.assert_array_equal(labels, (logits[1] > logits[0]).numpy().astype(np.uint8))
    coarse = labels_from_logits(torch.nn.functional.avg_pool3d(logits[None], 1)[0, :, ::2], case)
    assert coarse.shape == (5, 6, 7) and coarse.any()


def test_header_without_orientation_codes_keeps_the_affine(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    header = case.header.copy()
    header.set_qform(None, code=0)
    header.set_sform(None, code=0)
    case.header = header
    case.affine = _oblique_affine()
    out = write_relevance_nifti(tmp_path / "r.nii.gz", np.ones((6, 5, 6, 7)), case, setting="raw")
    np.testing.assert_allclose(nib.load(out).affine, case.affine, atol=1e-5)


def test_overlays_a_synthetic_case_loaded_by_the_data_layer(tmp_path: Path) -> None:
    from strokelrp.data.layouts import load_cases
    from strokelrp.data.preprocess import preprocess_case
    from strokelrp.data.synth import synthesize_isles2017

    root = synthesize_isles2017(tmp_path / "data", n_cases=1, shape=(12, 10, 5), seed=3)
    (case,) = load_cases(root)
    x, _ = preprocess_case(case, (4, 8, 8))
    out = write_relevance_nifti(tmp_path / "r.nii.gz", x - 0.5, case, setting="raw")
    pred = write_label_nifti(tmp_path / "p.nii.gz", case.label, case)
    for name, path in case.paths.items():
        source = nib.load(path)
        written, label = nib.load(out), nib.load(pred)
        assert written.shape[:3] == source.shape[:3] == label.shape, name
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        np.testing.assert_allclose(label.affine, source.affine, atol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(nib.load(pred).dataobj), np.asarray(nib.load(case.paths["OT"]).dataobj)
    )


def test_companions_name_the_volumes_and_match_the_4d_file(tmp_path: Path) -> None:
    import json

    case = make_case(tmp_path)
    rng = np.random.default_rng(5)
    relevance = rng.normal(size=(6, 5, 6, 7)).astype(np.float32)
    relevance[3] *= 40.0  # volumes of very different amplitude
    path = write_relevance_nifti(
        tmp_path / "out" / "relevance_raw.nii.gz", relevance, case, setting="raw"
    )
    content = write_relevance_companions(
        path, relevance, case, setting="raw", rules="paper", per_modality=True, normalised=True
    )
    side = sidecar_path(path)
    assert side.name == "relevance_raw.json"
    assert json.loads(side.read_text()) == content
    four_d = nib.load(path).get_fdata()
    assert content["volumes"] == list(MODALITIES) and four_d.shape[3] == len(content["volumes"])
    for c, modality in enumerate(content["volumes"]):
        # volume c of the 4-D file is the modality the sidecar names at position c
        np.testing.assert_array_equal(four_d[..., c], relevance[c].transpose(2, 1, 0))
        single = nib.load(path.parent / content["files"][modality])
        assert single.shape == four_d.shape[:3]
        np.testing.assert_array_equal(single.get_fdata(), four_d[..., c])
        np.testing.assert_allclose(single.affine, nib.load(path).affine)
        assert content["max_abs_per_volume"][c] == pytest.approx(np.abs(relevance[c]).max())
    normed = nib.load(path.parent / content["files"]["normalised"]).get_fdata()
    peaks = np.abs(normed).reshape(-1, 6).max(axis=0)
    np.testing.assert_allclose(peaks, 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        normed * np.array(content["max_abs_per_volume"]), four_d, rtol=1e-5, atol=1e-6
    )


def test_companions_default_to_the_sidecar_only(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    relevance = np.ones((6, 5, 6, 7), np.float32)
    path = write_relevance_nifti(
        tmp_path / "o" / "relevance_raw.nii.gz", relevance, case, setting="raw"
    )
    content = write_relevance_companions(path, relevance, case, setting="raw")
    assert content["files"] == {"relevance": "relevance_raw.nii.gz"}
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "relevance_raw.json",
        "relevance_raw.nii.gz",
    ]
    with pytest.raises(StrokeLRPError, match="expected 6"):
        write_relevance_companions(path, relevance[:3], case, setting="raw")
