"""`strokelrp explain --model ... --weights ... --image ...`: a user's MONAI network on a user's
NIfTI images; the written maps equal the Python API's, in the images' grid and affine."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from cli_helpers import run_cli as cli
from monai.networks.nets import UNet
from safetensors.torch import save_file

from strokelrp.lrp import explain
from strokelrp.lrp.filters import parse_filter

ARGS = {
    "spatial_dims": 3,
    "in_channels": 2,
    "out_channels": 2,
    "channels": [2, 3],
    "strides": [2],
    "num_res_units": 1,
}


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], UNet]:
    root = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    model = UNet(**ARGS).eval()
    weights = root / "net.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.0]
    gen = np.random.default_rng(1)
    images = []
    for name in ("adc", "tmax"):
        data = gen.random((10, 8, 6)).astype(np.float32)  # (x, y, z)
        path = root / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), str(path))
        images.append(path)
    return weights, images, model


def test_explains_a_user_network_on_user_images(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, images, model = user_files
    out = tmp_path / "out"
    argv = ["explain", "--model", "monai.networks.nets:UNet", "--model-args", json.dumps(ARGS),
            "--weights", str(weights), "--image", str(images[0]), "--image", str(images[1]),
            "--out", str(out), "--target", "authors", "--filter", "pass:0,0.4"]  # fmt: skip
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    written = stdout.split()
    assert str(out / "relevance_raw.nii.gz") in written
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["model"] == "monai.networks.nets:UNet" and summary["figure"] is None
    assert [s["label"] for s in summary["settings"]] == ["raw", "pass(0,0.4)"]
    # the same maps as the Python API, stored (x, y, z, C) in the images' grid and affine
    x = torch.from_numpy(
        np.stack([nib.load(str(p)).get_fdata().astype(np.float32).T for p in images])
    )[None]
    want = explain(model, x, target="authors", filters=[None, parse_filter("pass:0,0.4")])
    for k, name in enumerate(["relevance_raw", "relevance_pass_0-0.4"]):
        img = nib.load(str(out / f"{name}.nii.gz"))
        np.testing.assert_allclose(img.affine, nib.load(str(images[0])).affine, atol=1e-5)
        got = np.asarray(img.dataobj).transpose(3, 2, 1, 0)  # -> (C, D, H, W)
        np.testing.assert_allclose(got, want.relevance[k].numpy(), rtol=1e-5, atol=1e-7)
    pred = np.asarray(nib.load(str(out / "prediction.nii.gz")).dataobj)
    assert pred.shape == (10, 8, 6)


def test_user_model_errors_are_one_clear_line(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, images, _ = user_files
    base = ["explain", "--model", "monai.networks.nets:UNet", "--out", str(tmp_path / "o")]
    code, _, err = cli([*base, "--weights", str(weights)], capsys)
    assert code == 2 and "--model needs --image" in err
    wrong = dict(ARGS, channels=[2, 4])
    code, _, err = cli(
        [*base, "--model-args", json.dumps(wrong), "--weights", str(weights),
         "--image", str(images[0]), "--image", str(images[1])], capsys,
    )  # fmt: skip
    assert code == 1 and "do not fit the model" in err
    code, _, err = cli(
        [*base[:2], "nope.module:Net", *base[3:], "--weights", str(weights),
         "--image", str(images[0])], capsys,
    )  # fmt: skip
    assert code == 1 and "cannot import 'nope.module'" in err
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(small))
    code, _, err = cli(
        [*base, "--model-args", json.dumps(ARGS), "--weights", str(weights),
         "--image", str(images[0]), "--image", str(small)], capsys,
    )  # fmt: skip
    assert code == 1 and "differs from" in err
