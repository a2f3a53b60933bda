"""Synthetic ISLES 2017 cases: layout, determinism, manifest, stroke signatures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from strokelrp.data.layouts import load_cases
from strokelrp.data.layouts.isles2017 import CHANNELS as MODALITIES
from strokelrp.data.synth import (
    MANIFEST_NAME,
    REAL_CASE_GAPS,
    case_numbers,
    synthesize_isles2017,
)
from strokelrp.errors import StrokeLRPError

SHAPE = (32, 32, 8)


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_case_numbers_skip_the_real_gaps_then_continue_past_48() -> None:
    assert case_numbers(6) == [1, 2, 4, 5, 6, 7]
    real = case_numbers(43)
    assert real[-1] == 48 and not set(real) & set(REAL_CASE_GAPS) and len(set(real)) == 43
    assert case_numbers(45)[-2:] == [49, 50]


def test_layout_matches_the_real_set(tiny_source: Path) -> None:
    folders = sorted(p.name for p in tiny_source.iterdir() if p.is_dir())
    assert folders == ["training_1", "training_2", "training_4", "training_5"]
    ids = []
    for case_dir in tiny_source.glob("training_*"):
        subs = sorted(p.name for p in case_dir.iterdir())
        assert len(subs) == 7
        for sub in subs:
            prefix, brain, xx, o, token, file_id = sub.split(".")
            assert (brain, xx, o) == ("Brain", "XX", "O")
            assert prefix == ("SMIR" if case_dir.name == "training_5" else "VSD")
            assert token in {*(f"MR_{m}" for m in MODALITIES), "OT"}
            ids.append(int(file_id))
            files = list((case_dir / sub).iterdir())
            assert [f.name for f in files] == [f"{sub}.nii"]
            assert files[0].read_bytes()[344:348] == b"n+1\x00"  # uncompressed NIfTI-1
    assert len(ids) == len(set(ids)) == 28


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    a = synthesize_isles2017(tmp_path / "a", 3, shape=SHAPE, seed=11)
    b = synthesize_isles2017(tmp_path / "b", 3, shape=SHAPE, seed=11)
    c = synthesize_isles2017(tmp_path / "c", 3, shape=SHAPE, seed=12)
    assert _digests(a) == _digests(b)
    ca, cc = load_cases(a), load_cases(c)
    assert not np.array_equal(ca[0].image, cc[0].image)


def test_a_case_does_not_depend_on_how_many_cases_are_asked(tmp_path: Path) -> None:
    two = synthesize_isles2017(tmp_path / "two", 2, shape=SHAPE, seed=5)
    four = synthesize_isles2017(tmp_path / "four", 4, shape=SHAPE, seed=5)
    d2, d4 = _digests(two), _digests(four)
    shared = [k for k in d2 if k != MANIFEST_NAME]
    assert shared and all(d2[k] == d4[k] for k in shared)


def test_manifest_records_seed_lesions_and_informative_modalities(tiny_source: Path) -> None:
    manifest = json.loads((tiny_source / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 7 and manifest["n_cases"] == 4
    assert manifest["shape_hwd"] == list(SHAPE)
    assert manifest["informative_modalities"] == list(MODALITIES)
    assert set(manifest["cases"]) == {"1", "2", "4", "5"}
    cases = {c.case_id: c for c in load_cases(tiny_source)}
    for cid, entry in manifest["cases"].items():
        lesion = entry["lesion"]
        assert lesion["pattern"] in {"MCA", "ACA", "PCA", "scattered"}
        assert lesion["hemisphere"] in {"left", "right"}
        assert lesion["s_hypoperfused"] < lesion["t_ot"] < lesion["t_core"]
        assert entry["informative_modalities"] == list(MODALITIES)
        case = cases[cid]
        assert lesion["ot_voxels"] == int(case.label.sum()) > 0
        assert lesion["ot_ml"] == pytest.approx(case.lesion_ml, abs=1e-3)
        assert entry["grid"] == list(case.grid)
        assert entry["spacing_mm"] == pytest.approx(case.spacing, rel=1e-6)
        for key, rel in entry["files"].items():
            assert (tiny_source / rel) == case.paths[key]


def test_default_grid_spacing_and_orientation_codes(tmp_path: Path) -> None:
    root = synthesize_isles2017(tmp_path / "d", 1, seed=0)
    case = load_cases(root)[0]
    assert case.grid == (192, 192, 19) and case.image.shape == (6, 19, 192, 192)
    sx, sy, sz = case.spacing
    assert sx == sy and 1.0 < sx < 2.0 and 5.5 < sz < 7.5
    assert int(case.header["qform_code"]) == 1 and int(case.header["sform_code"]) == 1


def test_varied_grids_differ_between_cases_like_the_real_ones(tmp_path: Path) -> None:
    root = synthesize_isles2017(tmp_path / "v", 8, shape=SHAPE, seed=1, varied_grids=True)
    grids = {c.grid for c in load_cases(root)}
    allowed = {(32, 32, 8), (43, 43, 10), (21, 21, 11), (32, 32, 13)}
    assert len(grids) >= 2 and grids <= allowed


def _region_means(case, mask):
    return {m: float(case.image[c][mask].mean()) for c, m in enumerate(MODALITIES)}


@pytest.fixture(scope="module")
def signature_cases(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sig")
    full = load_cases(synthesize_isles2017(root / "full", 4, shape=(64, 64, 12), seed=3))
    flat = load_cases(
        synthesize_isles2017(
            root / "flat", 4, shape=(64, 64, 12), seed=3, uninformative=("Tmax", "adc")
        )
    )
    return full, flat


def _healthy_mirror(case) -> tuple[np.ndarray, np.ndarray]:
    """The lesion and the same voxels mirrored into the other hemisphere (healthy tissue)."""
    lesion = case.label.astype(bool)
    mirror = lesion[:, :, ::-1] & ~lesion
    return lesion, mirror


def test_lesions_carry_the_stroke_signatures(signature_cases) -> None:
    full, _ = signature_cases
    for case in full:
        lesion, mirror = _healthy_mirror(case)
        assert mirror.sum() > 0
        inside, outside = _region_means(case, lesion), _region_means(case, mirror)
        assert inside["Tmax"] > outside["Tmax"] + 4.0  # seconds
        assert inside["TTP"] > outside["TTP"] + 3.0
        assert inside["MTT"] > 1.3 * outside["MTT"]
        assert inside["rCBF"] < 0.6 * outside["rCBF"]
        assert inside["rCBV"] < 0.8 * outside["rCBV"]
        assert inside["ADC"] < outside["ADC"]


def test_uninformative_modalities_get_no_signature(signature_cases, tmp_path: Path) -> None:
    full, flat = signature_cases
    for a, b in zip(full, flat, strict=True):
        assert np.array_equal(a.label, b.label)  # same anatomy and lesion
        lesion, mirror = _healthy_mirror(b)
        inside, outside = _region_means(b, lesion), _region_means(b, mirror)
        assert abs(inside["Tmax"] - outside["Tmax"]) < 1.0
        assert inside["ADC"] > 0.85 * outside["ADC"]
        assert inside["rCBF"] < 0.6 * outside["rCBF"]  # still informative
        for mod in ("MTT", "rCBF", "rCBV", "TTP"):
            c = MODALITIES.index(mod)
            assert np.array_equal(a.image[c], b.image[c])
    manifest = json.loads((flat[0].paths["ADC"].parents[2] / MANIFEST_NAME).read_text())
    assert manifest["uninformative_modalities"] == ["Tmax", "ADC"]
    assert manifest["cases"]["1"]["informative_modalities"] == ["MTT", "rCBF", "rCBV", "TTP"]


def test_a_control_modality_is_noise_without_anatomy_or_lesion(signature_cases, tmp_path) -> None:
    full, _ = signature_cases
    root = synthesize_isles2017(tmp_path / "ctl", 4, shape=(64, 64, 12), seed=3, control=["mtt"])
    controlled = load_cases(root)
    c = MODALITIES.index("MTT")
    for a, b in zip(full, controlled, strict=True):
        assert np.array_equal(a.label, b.label)
        for k, mod in enumerate(MODALITIES):
            if mod != "MTT":  # the other modalities are untouched, signatures included
                assert np.array_equal(a.image[k], b.image[k])
        brain = a.image[c] != 0  # the informative MTT is non-zero exactly on the brain
        noise = b.image[c]
        assert not noise[~brain].any()  # 0 outside the brain, like any perfusion map
        inside = noise[brain].astype(np.float64)
        # zero-mean, so the brain's edge is not in the channel's mean; unit SD
        assert abs(inside.mean()) < 5 * inside.std() / np.sqrt(inside.size)
        assert 0.95 < inside.std() < 1.05
        # no lesion signature and no tissue contrast: uncorrelated with OT and every map
        for other in [b.label[brain]] + [b.image[k][brain] for k in range(6) if k != c]:
            assert abs(np.corrcoef(inside, other.astype(np.float64))[0, 1]) < 0.05
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest["control_modalities"] == ["MTT"]
    assert "MTT" not in manifest["informative_modalities"]
    assert manifest["cases"]["1"]["control_modalities"] == ["MTT"]
    again = synthesize_isles2017(tmp_path / "ctl2", 1, shape=(64, 64, 12), seed=3, control=["MTT"])
    name = manifest["cases"]["1"]["files"]["MTT"]
    assert _digests(again)[name] == _digests(root)[name]  # the noise is deterministic too


def test_value_ranges_are_realistic(signature_cases) -> None:
    full, _ = signature_cases
    for case in full:
        ranges = {m: (case.image[c].min(), case.image[c].max()) for c, m in enumerate(MODALITIES)}
        assert ranges["ADC"][0] >= 0 and 2000 < ranges["ADC"][1] <= 4000
        assert all(lo >= 0 for lo, _ in ranges.values())
        assert 8 < ranges["Tmax"][1] < 30 and 20 < ranges["TTP"][1] < 80
        assert 30 < ranges["rCBF"][1] < 150 and 2 < ranges["rCBV"][1] < 12
        raw = nib.load(str(case.paths["ADC"]))
        assert raw.get_data_dtype() == np.int16
        assert nib.load(str(case.paths["OT"])).get_data_dtype() == np.uint8


def test_lesions_vary_in_size_and_place(tmp_path: Path) -> None:
    root = synthesize_isles2017(tmp_path / "many", 12, shape=SHAPE, seed=2)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    lesions = [c["lesion"] for c in manifest["cases"].values()]
    volumes = [entry["ot_ml"] for entry in lesions]
    assert max(volumes) > 3 * min(volumes)
    assert len({entry["pattern"] for entry in lesions}) >= 2
    assert {entry["hemisphere"] for entry in lesions} == {"left", "right"}


def test_refuses_a_foreign_non_empty_folder_and_replaces_its_own(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(StrokeLRPError, match="not empty"):
        synthesize_isles2017(foreign, 1, shape=SHAPE)
    own = synthesize_isles2017(tmp_path / "own", 3, shape=SHAPE, seed=0)
    synthesize_isles2017(own, 1, shape=SHAPE, seed=0)
    assert sorted(p.name for p in own.iterdir()) == [MANIFEST_NAME, "training_1"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n_cases": 0}, "at least 1"),
        ({"n_cases": 1, "shape": (32, 32)}, "three sizes"),
        ({"n_cases": 1, "uninformative": ("T1",)}, "unknown modality 'T1'"),
        ({"n_cases": 1, "control": ("T2",)}, "unknown modality 'T2' for control"),
        ({"n_cases": 1, "control": MODALITIES}, "nothing to segment"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path: Path, kwargs: dict, words: str) -> None:
    with pytest.raises(StrokeLRPError, match=words):
        synthesize_isles2017(tmp_path / "x", **kwargs)
