"""Small explanation folders and viewer cases for the viewer's tests."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.networks.nets import UNet
from safetensors.torch import save_file

from strokelrp.report.viewer import ViewerCase

MODEL_ARGS = {"spatial_dims": 3, "in_channels": 2, "out_channels": 2, "channels": [2, 3],
              "strides": [2], "num_res_units": 1}  # fmt: skip
SHAPE = (20, 16, 10)


def oriented_case(codes: str) -> ViewerCase:
    """A case stored ``codes`` (``"LAS"`` or ``"RAS"``): a lesion in the patient's right
    hemisphere, relevance positive there in setting ``for`` and negative in ``against``; every
    volume varies along every axis so that a wrong voxel reads a wrong value."""
    sign = -1.0 if codes[0] == "L" else 1.0
    affine = np.diag([2.0 * sign, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-19.0 * sign, -16.0, -15.0]  # world x = sign * 2 * (i - 9.5)
    i, j, k = np.indices(SHAPE).astype(np.float32)
    right = (2.0 * sign * (i - 9.5)) > 0  # world x > 0: the patient's right
    centre = 16 if sign > 0 else 3
    truth = right & (abs(i - centre) <= 2) & (abs(j - 8) <= 2) & (abs(k - 5) <= 2)
    inside = 1.0 + 0.2 * (i - centre) + 0.05 * (j - 8) + 0.02 * (k - 5)  # 0.46 ... 1.54
    relevance = np.where(truth, inside, 0.0).astype(np.float32)
    mr = (100.0 + 3.0 * i + 0.5 * j + 0.25 * k).astype(np.float32)
    return ViewerCase(
        case_id=codes,
        channels=["ADC"],
        affine=affine,
        relevance={"for": {"ADC": relevance}, "against": {"ADC": -relevance}},
        mr={"ADC": mr},
        truth=truth,
        prediction=truth,
    )


def model_explanation(root: Path) -> tuple[Path, list[Path], Path]:
    """``strokelrp explain --model`` on two LAS images of a random MONAI U-Net, with a label:
    -> (the explanation folder, the images, the label)."""
    from strokelrp.pipeline.explain_images import explain_images

    torch.manual_seed(0)
    model = UNet(**MODEL_ARGS).eval()
    weights = root / "net.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    affine = np.diag([-1.5, 1.5, 3.0, 1.0])
    affine[:3, 3] = [12.0, -9.0, 2.0]
    gen = np.random.default_rng(3)
    images = []
    for name in ("adc", "tmax"):
        path = root / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(gen.random((16, 12, 8)).astype(np.float32), affine), path)
        images.append(path)
    label = root / "label.nii.gz"
    mask = np.zeros((16, 12, 8), np.uint8)
    mask[3:8, 4:9, 2:6] = 1
    nib.save(nib.Nifti1Image(mask, affine), label)
    out = root / "explained"
    explain_images(
        "monai.networks.nets:UNet", weights, images, out, label=label,
        model_args=json.dumps(MODEL_ARGS), filters=["pass:0,0.4"], device="cpu",
        target="ground_truth",
    )  # fmt: skip
    return out, images, label
