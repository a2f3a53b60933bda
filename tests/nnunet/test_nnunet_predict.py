"""strokelrp's whole-volume prediction of an nnU-Net folder against nnU-Net's own predictor.

The reference is ``nnUNetPredictor.predict_from_files_sequential`` (what ``nnUNetv2_predict``
runs, without its worker processes) on the tiny model trained by nnU-Net (conftest.py), for
one fold and the two-fold ensemble, with and without mirroring, on test cases several patches
large (one resampled). nnU-Net 2.8 accumulates the stitched logits and the Gaussian in float16;
``predict_case`` does the same by default (equal to stock nnU-Net within 1e-4, same labels),
and with ``nnunet_arithmetic=False`` stitches exactly in float32 (the logits explanations
explain): that one is compared with nnU-Net's own loop with its two float16 choices set to
float32 (``torch.half`` and the Gaussian's dtype swapped in nnU-Net's module, nothing else).
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

CASES = ("tiny_100", "tiny_101")
COMBOS = [
    ((0,), False, "tiny_100"),
    ((0, 1), False, "tiny_101"),
    ((0,), True, "tiny_101"),
    ((0, 1), True, "tiny_100"),
]


def _files(root: Path, case: str) -> list[Path]:
    import tiny_nnunet as tiny

    ts = root / "nnUNet_raw" / tiny.DATASET / "imagesTs"
    return [ts / f"{case}_0000.nii.gz", ts / f"{case}_0001.nii.gz"]


def _nnunet_predict(
    model_dir: Path, root: Path, case: str, folds, mirror: bool, out: Path, fp32: bool
):
    """nnU-Net's predictor on one case: (segmentation, probabilities) as it writes them."""
    import SimpleITK as sitk
    import torch
    from nnunetv2.inference import predict_from_raw_data as pfr
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    saved = pfr.torch, pfr.compute_gaussian
    if fp32:  # nnU-Net's float16 accumulators and Gaussian made float32; its code unchanged
        proxy = types.ModuleType("torch_fp32")
        proxy.__dict__.update(torch.__dict__)
        proxy.half = torch.float32
        pfr.torch = proxy

        def gaussian32(*args, **kwargs):
            return compute_gaussian(*args, **{**kwargs, "dtype": torch.float32})

        gaussian32.cache_clear = compute_gaussian.cache_clear
        pfr.compute_gaussian = gaussian32
    try:
        predictor = pfr.nnUNetPredictor(
            tile_step_size=0.5,
            use_gaussian=True,
            use_mirroring=mirror,
            device=torch.device("cpu"),
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(
            str(model_dir), folds, "checkpoint_final.pth"
        )
        out.mkdir(parents=True, exist_ok=True)
        predictor.predict_from_files_sequential(
            [[str(f) for f in _files(root, case)]], [str(out / case)], save_probabilities=True
        )
    finally:
        pfr.torch, pfr.compute_gaussian = saved
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
    return seg, np.load(out / f"{case}.npz")["probabilities"]


@pytest.mark.parametrize(("folds", "mirror", "case"), COMBOS)
def test_prediction_equals_nnunet_predict(
    tiny_nnunet, tiny_model_dir, tmp_path, folds, mirror, case
):
    from strokelrp.families.nnunet import load_nnunet, predict_case

    model = load_nnunet(tiny_model_dir, folds=folds)
    files = _files(tiny_nnunet, case)
    ours = predict_case(model, files, case, mirror=mirror)
    tiles = np.prod([len(s) for s in _window_starts(model, ours)])
    assert tiles >= 4, f"the test case should span several patches, got {tiles}"
    seg16, prob16 = _nnunet_predict(
        tiny_model_dir, tiny_nnunet, case, folds, mirror, tmp_path / "a", False
    )
    assert ours.probabilities.shape == prob16.shape
    np.testing.assert_allclose(ours.probabilities, prob16, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(ours.segmentation, seg16)
    assert 0 < (seg16 == 1).sum() < seg16.size  # the check sees both classes

    exact = predict_case(model, files, case, mirror=mirror, nnunet_arithmetic=False)
    seg32, prob32 = _nnunet_predict(
        tiny_model_dir, tiny_nnunet, case, folds, mirror, tmp_path / "b", True
    )
    np.testing.assert_allclose(exact.probabilities, prob32, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(exact.segmentation, seg32)


def _window_starts(model, prediction):
    from strokelrp.families.nnunet.predict import nnunet_window

    return nnunet_window(model).starts(prediction.case.data.shape[1:])
