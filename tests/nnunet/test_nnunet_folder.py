"""Loading nnU-Net v2 model folders trained by nnU-Net (conftest.py): the network, the safe
checkpoint reader, the refusals, and the preprocessing's inverse against nnU-Net's export."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from strokelrp.errors import StrokeLRPError

pytestmark = pytest.mark.slow


@pytest.fixture
def folder_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the model folder (fold 0 only), named as nnU-Net names it."""
    dst = tmp_path / tiny_model_dir.name
    shutil.copytree(tiny_model_dir, dst, ignore=shutil.ignore_patterns("fold_1"))
    return dst


def test_network_matches_nnunets_own_build(tiny_model_dir: Path) -> None:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from strokelrp.families.nnunet import load_nnunet

    model = load_nnunet(tiny_model_dir)
    assert model.folds == [0, 1] and model.channel_names == ["DWI", "ADC"]
    assert model.patch_size == (16, 16, 16) and model.mirror_axes == (0, 1, 2)
    net = model.networks[0]
    assert not any(getattr(m, "inplace", False) for m in net.modules())
    assert not net.training
    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(
        str(tiny_model_dir), (0,), "checkpoint_final.pth"
    )
    x = torch.randn(1, 2, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = net(x), predictor.network.eval()(x)
    assert isinstance(ours, torch.Tensor)  # deep supervision off: one tensor
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_prefixed_keys_load_the_same_weights(folder_copy: Path) -> None:
    import torch

    from strokelrp.families.nnunet import load_nnunet

    plain = load_nnunet(folder_copy, folds=[0]).networks[0]
    path = folder_copy / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(path, weights_only=False)
    ckpt["network_weights"] = {
        f"module._orig_mod.{k}": v for k, v in ckpt["network_weights"].items()
    }
    torch.save(ckpt, path)
    prefixed = load_nnunet(folder_copy, folds=[0]).networks[0]
    for (k, a), (_, b) in zip(
        plain.state_dict().items(), prefixed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k


class _Payload:
    def __reduce__(self):  # would run code on unpickling
        return (print, ("pickled code ran",))


def test_checkpoint_with_pickled_code_is_refused(folder_copy: Path, capsys) -> None:
    import torch

    from strokelrp.families.nnunet import load_nnunet

    path = folder_copy / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(path, weights_only=False)
    ckpt["extra"] = _Payload()
    torch.save(ckpt, path, pickle_module=pickle)
    with pytest.raises(StrokeLRPError, match=r"checkpoint_final\.pth without executing code"):
        load_nnunet(folder_copy, folds=[0])
    assert "pickled code ran" not in capsys.readouterr().out


def _edit_plans(folder: Path, edit) -> None:
    plans = json.loads((folder / "plans.json").read_text())
    edit(plans)
    (folder / "plans.json").write_text(json.dumps(plans))


def test_inherits_from_is_followed_and_cascades_refused(folder_copy: Path) -> None:
    from strokelrp.families.nnunet import load_nnunet

    def child(plans):
        plans["configurations"]["3d_child"] = {"inherits_from": "3d_fullres", "batch_size": 1}
        plans["configurations"]["3d_cascade_fullres"] = {
            "inherits_from": "3d_fullres",
            "previous_stage": "3d_lowres",
        }

    _edit_plans(folder_copy, child)
    renamed = folder_copy.with_name(folder_copy.name.replace("3d_fullres", "3d_child"))
    shutil.copytree(folder_copy, renamed)
    model = load_nnunet(renamed, folds=[0])
    assert model.configuration == "3d_child" and model.patch_size == (16, 16, 16)
    cascade = folder_copy.with_name(folder_copy.name.replace("3d_fullres", "3d_cascade_fullres"))
    shutil.copytree(folder_copy, cascade)
    with pytest.raises(StrokeLRPError, match="cascade stage"):
        load_nnunet(cascade, folds=[0])


def test_plan_naming_other_code_is_refused(folder_copy: Path) -> None:
    from strokelrp.families.nnunet import load_nnunet

    def evil(plans):
        plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"

    _edit_plans(folder_copy, evil)
    with pytest.raises(StrokeLRPError, match="builds networks only from classes"):
        load_nnunet(folder_copy, folds=[0])


def test_missing_fold_and_v1_folder(folder_copy: Path, tmp_path: Path) -> None:
    from strokelrp.families.nnunet import load_nnunet

    with pytest.raises(StrokeLRPError, match=r"fold\(s\) 3 have no checkpoint_best\.pth"):
        load_nnunet(folder_copy, folds=[3], checkpoint="best")
    v1 = tmp_path / "nnUNetTrainerV2__nnUNetPlansv2.1"
    (v1 / "fold_0").mkdir(parents=True)
    (v1 / "plans.pkl").write_bytes(b"")
    (v1 / "fold_0" / "model_final_checkpoint.model").write_bytes(b"")
    with pytest.raises(StrokeLRPError, match="nnU-Net v1 model folder"):
        load_nnunet(v1)


def test_inverse_matches_nnunets_export(tiny_nnunet: Path, tiny_model_dir: Path) -> None:
    """softmax(to_native(logits)) equals nnU-Net's exported probabilities inside the crop box
    (nnU-Net resamples the logits, then applies the softmax; outside it sets background)."""
    import tiny_nnunet as tiny
    import torch

    from strokelrp.families.nnunet import load_nnunet
    from strokelrp.families.nnunet.preprocess import native_labels, preprocess_case, to_native

    model = load_nnunet(tiny_model_dir, folds=[0])
    ts = tiny_nnunet / "nnUNet_raw" / tiny.DATASET / "imagesTs"
    case = preprocess_case(model, sorted(ts.glob("tiny_101_*.nii.gz")), "tiny_101")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, *case.data.shape[1:])).astype(np.float32)
    _, prob = native_labels(model, logits, case.properties)
    native = to_native(model, logits, case.properties)
    ours = torch.softmax(torch.from_numpy(native), 0).numpy()
    bbox = case.properties["bbox_used_for_cropping"]
    inside = tuple(slice(a, b) for a, b in bbox)
    back = model.plans["transpose_backward"]
    inside = tuple(inside[back[i]] for i in range(3))  # the box in the reader's axis order
    np.testing.assert_allclose(
        ours[(slice(None), *inside)], prob[(slice(None), *inside)], atol=1e-5
    )
    outside = np.ones(native.shape[1:], bool)
    outside[inside] = False
    assert outside.any() and np.all(native[:, outside] == 0)


def test_write_native_is_the_input_grid(tiny_nnunet: Path, tmp_path: Path) -> None:
    """The reader's own array of an input, written back, is that input voxel for voxel."""
    import nibabel as nib
    import SimpleITK as sitk
    import tiny_nnunet as tiny

    from strokelrp.families.nnunet.preprocess import write_native

    for name in tiny.TEST_CASES:
        src = tiny_nnunet / "nnUNet_raw" / tiny.DATASET / "imagesTs" / f"{name}_0001.nii.gz"
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(src)))
        out = write_native(tmp_path / f"{name}.nii.gz", array.astype(np.float32), src)
        a, b = nib.load(str(out)), nib.load(str(src))
        np.testing.assert_array_equal(a.affine, b.affine)
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
