"""Canonical orientation: one case stored in five voxel orientations is one case.

The trees are built by explicit index maps (``orientation_helpers``), not by the code under
test. Every orientation must give the same RAS arrays, the same preprocessed input, the same
prediction and relevance, written back in each file's own voxel order with its own affine.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from orientation_helpers import gather, index_map, reorient_tree

from strokelrp.config import TrainConfig
from strokelrp.core.orientation import axis_codes, canonical_axes, file_axes
from strokelrp.data.dataset import CaseDataset
from strokelrp.data.isles2017 import load_isles2017
from strokelrp.data.preprocess import preprocess_case
from strokelrp.run_files import RunDir
from strokelrp.train.checkpoint import save_checkpoint

ORIENTATIONS = ("LPS", "LAS", "RAS", "ASR", "ILA")


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Case 1 of a tiny synthetic tree (stored LPS, grid 20x18x7) in every orientation."""
    from strokelrp.data.synth import synthesize_isles2017

    root = tmp_path_factory.mktemp("orient")
    source = synthesize_isles2017(root / "source", 1, shape=(18, 20, 7), seed=3)
    return {codes: reorient_tree(source, root / codes, codes) for codes in ORIENTATIONS}


def _adc(tree: Path) -> nib.Nifti1Image:
    return nib.load(next(tree.glob("training_1/*MR_ADC*/*.nii")))


def test_the_trees_are_stored_as_named(trees) -> None:
    for codes, tree in trees.items():
        img = _adc(tree)
        assert "".join(nib.aff2axcodes(img.affine)) == codes
        assert axis_codes(img.affine) == codes


def test_every_orientation_reads_as_the_same_ras_case(trees) -> None:
    ras_file = np.asarray(_adc(trees["RAS"]).dataobj, dtype=np.float32)  # (x, y, z), RAS
    reference = load_isles2017(trees["RAS"])[0]
    assert reference.orientation == "RAS"
    np.testing.assert_array_equal(reference.image[0], ras_file.transpose(2, 1, 0))
    x_ref, y_ref = preprocess_case(reference, (4, 8, 8))
    for codes, tree in trees.items():
        (case,) = load_isles2017(tree)
        img = _adc(tree)
        assert case.orientation == codes
        np.testing.assert_array_equal(case.image, reference.image)
        np.testing.assert_array_equal(case.label, reference.label)
        np.testing.assert_allclose(case.spacing, reference.spacing, rtol=1e-6)
        np.testing.assert_allclose(case.affine, reference.affine, atol=1e-9)
        # the files' own geometry is kept exactly, for writing outputs back
        np.testing.assert_array_equal(case.native_affine, img.affine)
        assert case.native_grid == img.shape[:3]
        np.testing.assert_allclose(case.native_spacing, img.header.get_zooms()[:3], rtol=1e-6)
        assert case.lesion_ml == pytest.approx(reference.lesion_ml)
        x, y = preprocess_case(case, (4, 8, 8))
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)


def test_inspect_reports_the_files_grid_and_orientation(trees) -> None:
    from strokelrp.data.isles2017 import inspect_isles2017

    for codes, tree in trees.items():
        (report,) = inspect_isles2017(tree)
        img = _adc(tree)
        assert report.as_dict()["orientation"] == codes
        assert report.grid == img.shape[:3]
        np.testing.assert_allclose(report.spacing, img.header.get_zooms()[:3], rtol=1e-6)


def test_the_cache_holds_ras_arrays(trees, tmp_path) -> None:
    cache = tmp_path / "cache"
    first = CaseDataset(trees["RAS"], (4, 8, 8), cache_dir=cache)
    x_ref, y_ref = first.arrays(0)
    for codes, tree in trees.items():
        for _ in range(2):  # cold, then warm from the cache
            ds = CaseDataset(tree, (4, 8, 8), cache_dir=cache)
            x, y = ds.arrays(0)
            np.testing.assert_array_equal(x, x_ref)
            np.testing.assert_array_equal(y, y_ref)
            assert ds.geometry(0).orientation == codes
        assert ds.cache_hits == 1


def test_axis_helpers_invert_each_other() -> None:
    for codes in ORIENTATIONS:
        values = (10, 20, 30)
        assert file_axes(canonical_axes(values, codes), codes) == values


@pytest.fixture(scope="module")
def tiny_run(trees, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained width-2 network saved as a run, its lesion bias set to predict about half
    of the voxels of case 1 (so that the prediction has both classes)."""
    from strokelrp.train.checkpoint import build_model

    run = tmp_path_factory.mktemp("orient_run") / "run"
    config = TrainConfig(data=str(trees["LPS"]), series=(8, 16, 16), width=2, epochs=1)
    torch.manual_seed(0)
    model = build_model(config).eval()
    x, _ = preprocess_case(load_isles2017(trees["LPS"])[0], config.shape)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])[0]
        model.head.bias[1] -= (logits[1] - logits[0]).median()
    config.to_toml(run / "config.toml")
    save_checkpoint(RunDir(run).checkpoints, epoch=1, config=config, model=model)
    return run


def test_outputs_are_the_same_up_to_the_voxel_order(trees, tiny_run, tmp_path) -> None:
    from strokelrp.pipeline.explain import explain_case

    files = ("relevance_raw", "relevance_pass_0-0.4", "prediction")
    out: dict[str, dict[str, np.ndarray]] = {}
    for codes, tree in trees.items():
        result = explain_case(
            tiny_run, tree, "1", filters=["pass:0,0.4"], target="ground_truth",
            out=tmp_path / codes, device="cpu",
        )  # fmt: skip
        adc = _adc(tree)
        out[codes] = {}
        for name in files:
            img = nib.load(tmp_path / codes / f"{name}.nii.gz")
            assert img.shape[:3] == adc.shape[:3]
            np.testing.assert_array_equal(img.affine, adc.affine)
            assert "".join(nib.aff2axcodes(img.affine)) == codes
            out[codes][name] = np.asarray(img.dataobj)
        summary = json.loads(result.summary.read_text())
        assert summary["orientation"] == {"stored": codes, "computed_in": "RAS"}
    source_grid = _adc(trees["LPS"]).shape[:3]
    assert np.abs(out["LPS"]["relevance_raw"]).max() > 0  # relevance flows from the OT
    pred = out["LPS"]["prediction"]
    assert 0 < pred.sum() < pred.size  # a prediction with both classes: the test can fail
    for codes in ORIENTATIONS:
        m = index_map(codes, source_grid)
        for name in files:
            expected = gather(out["LPS"][name], m, source_grid)
            if name == "prediction":
                np.testing.assert_array_equal(out[codes][name], expected)
            else:
                scale = np.abs(expected).max()
                np.testing.assert_allclose(out[codes][name], expected, rtol=0, atol=1e-6 * scale)


def test_native_grid_metrics_do_not_depend_on_the_orientation(trees, tiny_run) -> None:
    from strokelrp.train.evaluate import evaluate

    dice = {}
    for codes, tree in trees.items():
        (result,) = evaluate(tiny_run, tree, progress=False, echo=None, device="cpu")
        (row,) = result.rows
        dice[codes] = (row["dice"], row["pred_ml"], row["true_ml"], row["hd95_mm"], row["assd_mm"])
    assert dice["LPS"][1] > 0  # something predicted
    for codes in ORIENTATIONS:
        np.testing.assert_allclose(dice[codes], dice["LPS"], rtol=1e-9)
