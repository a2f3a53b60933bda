"""``strokelrp explain --nnunet`` on the tiny nnU-Net trained by nnU-Net (conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.slow

FAST = ["--folds", "0", "--no-mirroring"]


def _raw(root: Path) -> Path:
    import tiny_nnunet as tiny

    return root / "nnUNet_raw" / tiny.DATASET


def test_explain_images_writes_native_maps(tiny_nnunet, tiny_model_dir, tmp_path, capsys) -> None:
    ts = _raw(tiny_nnunet) / "imagesTs"
    images = [ts / "tiny_101_0000.nii.gz", ts / "tiny_101_0001.nii.gz"]
    out = tmp_path / "out"
    argv = ["explain", "--nnunet", str(tiny_model_dir), *FAST, "--filter", "pass:0,0.4"]
    for image in images:
        argv += ["--image", str(image)]
    code, stdout, stderr = run_cli([*argv, "--out", str(out)], capsys)
    assert code == 0, stderr
    written = {Path(line).name for line in stdout.split()}
    assert {"relevance_raw.nii.gz", "relevance_pass_0-0.4.nii.gz", "prediction.nii.gz"} <= written
    src = nib.load(str(images[0]))
    raw = nib.load(str(out / "relevance_raw.nii.gz"))
    assert raw.shape == (*src.shape, 2)  # native grid, one volume per channel (DWI, ADC)
    np.testing.assert_array_equal(raw.affine, src.affine)
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["case"] == "tiny_101" and summary["nnunet"]["channels"] == ["DWI", "ADC"]
    assert summary["window"]["patches"] >= 4
    # LRP with the default rules on the model grid: relevance sums to the explained scalar
    # up to the rules' own (reported) deviation
    raw_sum = summary["settings"][0]["relevance_sum"]["model_grid"]
    assert summary["score"] > 0 and np.isfinite(raw_sum)
    prediction = np.asarray(nib.load(str(out / "prediction.nii.gz")).dataobj)
    assert prediction.shape == src.shape and summary["predicted_voxels"] == int(prediction.sum())


def test_explain_writes_figure_and_sidecars(tiny_nnunet, tiny_model_dir, tmp_path, capsys) -> None:
    """Figure 1 and one JSON sidecar per setting, the volumes named by dataset.json's
    channel_names in order, both listed in explanation.json and printed."""
    data = _raw(tiny_nnunet)
    out = tmp_path / "out"
    argv = ["explain", "--nnunet", str(tiny_model_dir), str(data), "--case", "tiny_101", *FAST]
    code, stdout, stderr = run_cli([*argv, "--filter", "pass:0,0.4", "--out", str(out)], capsys)
    assert code == 0, stderr
    printed = {Path(line).name for line in stdout.split()}
    given = json.loads((tiny_model_dir / "dataset.json").read_text())["channel_names"]
    names = [given[k] for k in sorted(given, key=int)]  # {"0": "DWI", "1": "ADC"}
    figure = out / "figure1.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["figure"] == "figure1.png" and summary["figure_modality"] == names[0]
    assert {"figure1.png", "relevance_raw.json", "relevance_pass_0-0.4.json"} <= printed
    for setting in summary["settings"]:
        sidecar = json.loads((out / setting["sidecar"]).read_text())
        assert sidecar["volumes"] == names and sidecar["setting"] == setting["label"]
        assert sidecar["files"]["relevance"] == setting["file"]
        # the sidecar's peaks follow the NIfTI's volume axis, channel by channel
        volume = np.asarray(nib.load(str(out / setting["file"])).dataobj)
        peaks = [float(np.abs(volume[..., c]).max()) for c in range(volume.shape[-1])]
        np.testing.assert_allclose(sidecar["max_abs_per_volume"], peaks, rtol=1e-6)


def test_gradient_sums_to_its_direct_value(tiny_nnunet, tiny_model_dir, tmp_path, capsys) -> None:
    """--method gradient through the window: the model-grid map is d S / d x, so its inner
    product with a direction equals a finite difference of S computed here independently."""
    import torch

    from strokelrp.families.nnunet import load_nnunet, nnunet_window
    from strokelrp.families.nnunet.preprocess import preprocess_case
    from strokelrp.sliding_window import window_attribute, window_logits

    model = load_nnunet(tiny_model_dir, folds=[0])
    ts = _raw(tiny_nnunet) / "imagesTs"
    case = preprocess_case(model, sorted(ts.glob("tiny_100_*.nii.gz")), "tiny_100")
    window = nnunet_window(model, mirror=False)
    x = torch.from_numpy(case.data).double()
    nets = [n.double() for n in model.networks]
    w = (window_logits(nets, x, window).argmax(0) == 1).double()
    weights = torch.stack([torch.zeros_like(w), w])
    grad = window_attribute(nets, x, window, "gradient", weights)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 1e-7  # small enough that no LeakyReLU kink is crossed
    s = lambda v: float((weights * window_logits(nets, v, window)).sum())  # noqa: E731
    finite = (s(x + eps * d) - s(x - eps * d)) / (2 * eps)
    assert float((grad * d).sum()) == pytest.approx(finite, rel=1e-4)


def test_two_shards_give_the_one_table(tiny_nnunet, tiny_model_dir, tmp_path, capsys) -> None:
    data = _raw(tiny_nnunet)
    base = ["explain", "--nnunet", str(tiny_model_dir), str(data), *FAST, "--method", "gradient"]
    one, two = tmp_path / "one", tmp_path / "two"
    code, _, err = run_cli([*base, "--out", str(one)], capsys)
    assert code == 0, err
    for part in ("0/2", "1/2"):
        code, _, err = run_cli([*base, "--out", str(two), "--part", part], capsys)
        assert code == 0, err
    table = (one / "cohort.csv").read_text()
    assert table == (two / "cohort.csv").read_text()
    assert len(table.strip().splitlines()) == 1 + 2  # header, tiny_100, tiny_101
    code, _, err = run_cli([*base, "--out", str(two), "--part", "1/2"], capsys)
    assert code == 0 and "done before, skipped" in err  # resumable


def test_errors_are_one_line(tiny_model_dir, tmp_path, capsys) -> None:
    code, _, err = run_cli(
        ["explain", "--nnunet", str(tiny_model_dir), "--folds", "7", "--image", "x.nii.gz"], capsys
    )
    assert code != 0 and "fold(s) 7 have no checkpoint_final.pth" in err


def test_a_reference_is_refused_not_ignored(tmp_path, capsys) -> None:
    args = ["explain", "--nnunet", str(tmp_path), "--image", "x.nii.gz", "--reference", "mean"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--reference: not available with --nnunet" in err
