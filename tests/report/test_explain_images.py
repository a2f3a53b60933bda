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
    assert summary["model"] == "monai.networks.nets:UNet" and summary["figure"] == "figure1.png"
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


def _cli_args(weights: Path, images: list[Path], out: Path, *extra: str) -> list[str]:
    argv = ["explain", "--model", "monai.networks.nets:UNet", "--model-args", json.dumps(ARGS),
            "--weights", str(weights), "--out", str(out), *extra]  # fmt: skip
    for p in images:
        argv += ["--image", str(p)]
    return argv


def _store_permuted(src: Path, dst: Path) -> None:
    """Write ``src`` (stored RAS) as another voxel order: file voxel (i, j, k) = RAS voxel
    (k, Y-1-i, j), i.e. axes P, S, R; the affine moves with it (the same world positions)."""
    img = nib.load(str(src))
    data = np.asarray(img.dataobj)
    ny = data.shape[1]
    permuted = np.ascontiguousarray(data.transpose(1, 2, 0)[::-1])  # [i, j, k] = data[k, Y-1-i, j]
    m = np.array([[0, 0, 1, 0], [-1, 0, 0, ny - 1], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(permuted, img.affine @ m), str(dst))


def test_images_stored_in_another_voxel_order_give_the_same_maps_in_their_own_grid(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The network sees RAS voxels whichever way the files store them; the outputs go back to
    each file's own order and affine (checked against the permutation applied by hand)."""
    weights, images, _ = user_files
    label = tmp_path / "lesion.nii.gz"
    mask = np.zeros((10, 8, 6), np.uint8)
    mask[2:7, 1:5, 2:4] = 1
    nib.save(nib.Nifti1Image(mask, nib.load(str(images[0])).affine), str(label))
    permuted = []
    for p in [*images, label]:
        permuted.append(tmp_path / f"psr_{p.name}")
        _store_permuted(p, permuted[-1])
    assert nib.aff2axcodes(nib.load(str(permuted[0])).affine) == ("P", "S", "R")
    for target in ("ground_truth", "contrastive"):
        ras, psr = tmp_path / f"ras_{target}", tmp_path / f"psr_{target}"
        flags = ["--target", target, "--filter", "pass:0,0.4", "--label"]
        code, _, err = cli(_cli_args(weights, images, ras, *flags, str(label)), capsys)
        assert code == 0, err
        code, _, err = cli(_cli_args(weights, permuted[:2], psr, *flags, str(permuted[2])), capsys)
        assert code == 0, err
        summary = json.loads((psr / "explanation.json").read_text())
        assert summary["orientation"] == {"stored": "PSR", "computed_in": "RAS"}
        assert summary["grid_xyz"] == [8, 6, 10]
        for name in ("relevance_raw", "relevance_pass_0-0.4", "prediction"):
            a = nib.load(str(ras / f"{name}.nii.gz"))
            b = nib.load(str(psr / f"{name}.nii.gz"))
            np.testing.assert_allclose(b.affine, nib.load(str(permuted[0])).affine, atol=1e-5)
            want = np.asarray(a.dataobj)  # (x, y, z[, C]) in RAS order
            got = np.asarray(b.dataobj)  # (i, j, k[, C]) in P, S, R order
            by_hand = want.transpose(1, 2, 0, *range(3, want.ndim))[::-1]
            assert got.shape == by_hand.shape
            scale = float(np.abs(want).max()) or 1.0
            np.testing.assert_allclose(got, by_hand, rtol=0, atol=1e-6 * scale)
        assert np.abs(np.asarray(nib.load(str(ras / "relevance_raw.nii.gz")).dataobj)).max() > 0


def test_ground_truth_and_contrastive_targets_match_the_python_api(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, images, model = user_files
    label = tmp_path / "lesion.nii.gz"
    mask = np.zeros((10, 8, 6), np.uint8)
    mask[3:8, 2:6, 1:4] = 1
    nib.save(nib.Nifti1Image(mask, nib.load(str(images[0])).affine), str(label))
    x = torch.from_numpy(
        np.stack([nib.load(str(p)).get_fdata().astype(np.float32).T for p in images])
    )[None]
    for target, extra in (("ground_truth", ["--label", str(label)]), ("contrastive", [])):
        out = tmp_path / target
        code, _, err = cli(_cli_args(weights, images, out, "--target", target, *extra), capsys)
        assert code == 0, err
        want = explain(model, x, target=target, label=torch.from_numpy(mask.T.copy()))
        got = np.asarray(nib.load(str(out / "relevance_raw.nii.gz")).dataobj).transpose(3, 2, 1, 0)
        np.testing.assert_allclose(got, want.relevance[0].numpy(), rtol=1e-5, atol=1e-7)
        summary = json.loads((out / "explanation.json").read_text())
        assert summary["target"] == target
        assert (summary["dice"] is None) == (target != "ground_truth")


def test_ground_truth_without_label_is_one_clear_error(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, images, _ = user_files
    out = tmp_path / "o"
    code, stdout, err = cli(_cli_args(weights, images, out, "--target", "ground_truth"), capsys)
    assert code == 1 and stdout == ""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--target ground_truth needs --label" in lines[0]
    assert not out.exists()
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(small))
    code, _, err = cli(
        _cli_args(weights, images, out, "--target", "ground_truth", "--label", str(small)), capsys
    )
    assert code == 1 and "label" in err and "differs from" in err


def test_figure_of_six_channels_is_the_same_whichever_voxel_order_the_files_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Figure 1 is drawn from the RAS-held images with their affine (radiological display): the
    same head stored as RAS or as P, S, R gives the same picture."""
    from matplotlib.image import imread

    args = dict(ARGS, in_channels=6)
    torch.manual_seed(2)
    weights = tmp_path / "six.safetensors"
    model = UNet(**args).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    gen = np.random.default_rng(3)
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    (tmp_path / "ras").mkdir()
    (tmp_path / "psr").mkdir()
    ras, psr = [], []
    for name in ("adc", "mtt", "rcbf", "rcbv", "tmax", "ttp"):
        ras.append(tmp_path / "ras" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(gen.random((10, 8, 6)).astype(np.float32), affine), str(ras[-1]))
        psr.append(tmp_path / "psr" / f"{name}.nii.gz")
        _store_permuted(ras[-1], psr[-1])
    figures = []
    for images, out in ((ras, tmp_path / "out_ras"), (psr, tmp_path / "out_psr")):
        argv = ["explain", "--model", "monai.networks.nets:UNet", "--model-args",
                json.dumps(args), "--weights", str(weights), "--out", str(out),
                "--target", "authors"]  # fmt: skip
        for p in images:
            argv += ["--image", str(p)]
        code, _, err = cli(argv, capsys)
        assert code == 0, err
        assert json.loads((out / "explanation.json").read_text())["figure"] == "figure1.png"
        figures.append(imread(str(out / "figure1.png")))
    assert figures[0].shape == figures[1].shape
    assert np.array_equal(figures[0], figures[1])


def test_weights_that_name_a_shared_module_once_fit(tmp_path: Path) -> None:
    """A DynUNet saved by safetensors' save_model keeps one name per shared tensor: the other
    names are the same tensors, so the weights fit; a truly missing tensor is still refused."""
    from safetensors.torch import save_model

    from strokelrp.errors import StrokeLRPError
    from strokelrp.model.architectures import build_network
    from strokelrp.pipeline.explain_images import load_weights

    torch.manual_seed(0)
    trained = build_network("monai-dynunet", 6, 2, 2).eval()
    path = tmp_path / "dyn.safetensors"
    save_model(trained, str(path))
    fresh = build_network("monai-dynunet", 6, 2, 2).eval()
    load_weights(fresh, path)
    x = torch.rand(1, 6, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(fresh(x), trained(x))
    partial = {k: v.contiguous() for k, v in UNet(**ARGS).state_dict().items()}
    partial.pop(next(iter(partial)))
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(StrokeLRPError, match="1 missing"):
        load_weights(UNet(**ARGS), tmp_path / "partial.safetensors")


def test_a_one_voxel_axis_is_one_clear_error(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, _, _ = user_files
    flat = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.ones((10, 8, 1), np.float32), np.eye(4)), str(path))
        flat.append(path)
    out = tmp_path / "o"
    code, _, err = cli(_cli_args(weights, flat, out), capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "grid 10x8x1 has an axis of 1 voxel" in lines[0]


# ------------------------------------------------- defects a new user hit (issue 21, point 5)


def test_model_writes_per_channel_and_normalised_files_and_lists_them(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--per-modality --normalised with --model: one 3-D file per input channel and the copy
    divided per volume by its max |R|, with the sidecar; every file is printed."""
    weights, images, _ = user_files
    out = tmp_path / "o"
    argv = _cli_args(weights, images, out, "--filter", "pass:0,0.4", "--per-modality",
                     "--normalised")  # fmt: skip
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    printed = {Path(p).name for p in stdout.split()}
    for stem in ("relevance_raw", "relevance_pass_0-0.4"):
        four = np.asarray(nib.load(str(out / f"{stem}.nii.gz")).dataobj, dtype=np.float64)
        sidecar = json.loads((out / f"{stem}.json").read_text())
        assert sidecar["volumes"] == ["adc", "tmax"]  # named by the image files
        for c in range(2):
            name = f"{stem}_{('adc', 'tmax')[c]}.nii.gz"
            assert name in printed
            one = np.asarray(nib.load(str(out / name)).dataobj, dtype=np.float64)
            np.testing.assert_array_equal(one, four[..., c])
        norm = np.asarray(nib.load(str(out / f"{stem}_norm.nii.gz")).dataobj, dtype=np.float64)
        for c in range(2):  # reference: each volume over its own largest magnitude, by hand
            peak = max(abs(float(v)) for v in four[..., c].ravel())
            np.testing.assert_allclose(norm[..., c], four[..., c] / peak, rtol=1e-6, atol=1e-7)
        assert {f"{stem}.json", f"{stem}_norm.nii.gz"} <= printed


def test_model_explains_with_any_method_through_the_same_outputs(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model --method gradient_x_input: the NIfTI is x * d(sum of the lesion logits on the
    predicted voxels)/dx, computed here with plain autograd."""
    weights, images, model = user_files
    out = tmp_path / "g"
    code, _, err = cli(_cli_args(weights, images, out, "--method", "gradient_x_input"),
                            capsys)  # fmt: skip
    assert code == 0, err
    x = torch.from_numpy(
        np.stack([nib.load(str(p)).get_fdata().astype(np.float32).T for p in images])
    )[None].requires_grad_(True)
    logits = model(x)
    chosen = logits.argmax(1) == 1
    logits[:, 1][chosen].sum().backward()
    want = (x.grad * x).detach()[0].numpy()
    got = np.asarray(nib.load(str(out / "relevance_gradient_x_input.nii.gz")).dataobj)
    got = got.transpose(3, 2, 1, 0)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["method"] == "gradient_x_input" and summary["rules"] is None
    code, _, err = cli(_cli_args(weights, images, out, "--method", "gradient", "--rules",
                                 "paper"), capsys)  # fmt: skip
    assert code == 2 and "not both" in err


def test_model_case_name_and_record(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The case is named after the whole first file name (or --case), and explanation.json
    holds the method, the slice, empty_prediction and a provenance record with the files'
    fingerprint and the weights' hash."""
    import hashlib

    weights, images, _ = user_files
    isles = tmp_path / "VSD.Brain.XX.O.MR_ADC.128020.nii.gz"
    isles.write_bytes(images[0].read_bytes())
    out = tmp_path / "o"
    code, _, err = cli(_cli_args(weights, [isles, images[1]], out), capsys)
    assert code == 0, err
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["case"] == "VSD.Brain.XX.O.MR_ADC.128020"
    assert summary["method"] == "lrp:epsilon" and isinstance(summary["slice"], int)  # figure 1
    assert (out / summary["figure"]).is_file()  # figure 1 for any channel count
    assert summary["empty_prediction"] is False
    record = summary["provenance"]
    assert record["command"] == "explain"
    assert record["model"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "fingerprint_sha256" in record["data"]["cases"]["VSD.Brain.XX.O.MR_ADC.128020"]
    code, _, err = cli(_cli_args(weights, images, out, "--case", "patient7"), capsys)
    assert code == 0, err
    assert json.loads((out / "explanation.json").read_text())["case"] == "patient7"


def test_a_second_method_in_the_same_folder_replaces_the_first(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Explaining again into a folder removes the files of the earlier explanation, so the folder
    holds what explanation.json describes; files strokelrp did not write stay."""
    weights, images, _ = user_files
    out = tmp_path / "o"
    code, _, err = cli(_cli_args(weights, images, out, "--per-modality"), capsys)
    assert code == 0, err
    (out / "notes.txt").write_text("mine")
    code, stdout, err = cli(_cli_args(weights, images, out, "--method", "gradient"), capsys)
    assert code == 0, err
    summary = json.loads((out / "explanation.json").read_text())
    listed = {"explanation.json", summary["prediction"], summary["figure"], "notes.txt"}
    for s in summary["settings"]:
        listed |= {s["file"], s["sidecar"], *s["companions"].values()}
    assert {p.name for p in out.iterdir()} == listed
    assert listed - {"notes.txt"} == {Path(p).name for p in stdout.split()}


def test_whole_pickled_model_and_2d_network_are_one_line_each(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, images, model = user_files
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    argv = _cli_args(whole, images, tmp_path / "o")
    code, _, err = cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and "model.state_dict()" in lines[0]
    flat = dict(ARGS, spatial_dims=2)
    torch.save(UNet(**flat).state_dict(), tmp_path / "flat.pt")
    argv = ["explain", "--model", "monai.networks.nets:UNet", "--model-args", json.dumps(flat),
            "--weights", str(tmp_path / "flat.pt"), "--out", str(tmp_path / "f"),
            "--image", str(images[0]), "--image", str(images[1])]  # fmt: skip
    code, _, err = cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and "2-D network" in lines[0]


def test_model_reference_file_reaches_the_map_in_any_voxel_order(
    user_files: tuple[Path, list[Path], UNet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model --method gradient_x_input --reference REF.nii.gz (4-D, the images' grid): the
    map is (x - b) * dS/dx with b the file's volumes and the gradient by plain autograd; the
    same files stored in another voxel order give the same map in that order; without
    --reference the map is the plain x * dS/dx and explanation.json says zero."""
    weights, images, model = user_files
    affine = nib.load(str(images[0])).affine
    b_xyzc = np.random.default_rng(7).random((10, 8, 6, 2)).astype(np.float32)
    ref = tmp_path / "reference.nii.gz"
    nib.save(nib.Nifti1Image(b_xyzc, affine), str(ref))
    out = tmp_path / "ref"
    argv = _cli_args(weights, images, out, "--method", "gradient_x_input", "--reference", str(ref))
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    x = torch.from_numpy(
        np.stack([nib.load(str(p)).get_fdata().astype(np.float32).T for p in images])
    )[None].requires_grad_(True)
    logits = model(x)
    logits[:, 1][logits.argmax(1) == 1].sum().backward()
    b = torch.from_numpy(b_xyzc.transpose(3, 2, 1, 0).copy())[None]  # (1, C, z, y, x)
    want = ((x - b) * x.grad).detach()[0].numpy()
    got = np.asarray(nib.load(str(out / "relevance_gradient_x_input.nii.gz")).dataobj)
    got = got.transpose(3, 2, 1, 0)
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * scale)
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["reference"] == "reference.nii.gz"
    plain = (x * x.grad).detach()[0].numpy()
    assert np.abs(got - plain).max() > 0.1 * scale  # the reference changed the map

    # the images and the reference stored P, S, R: the same map, in that order
    permuted = []
    for p in images:
        permuted.append(tmp_path / f"psr_{p.name}")
        _store_permuted(p, permuted[-1])
    channels = []
    for c in range(2):
        one = tmp_path / f"ref{c}.nii.gz"
        nib.save(nib.Nifti1Image(b_xyzc[..., c], affine), str(one))
        _store_permuted(one, tmp_path / f"psr_ref{c}.nii.gz")
        channels.append(nib.load(str(tmp_path / f"psr_ref{c}.nii.gz")))
    psr_ref = tmp_path / "psr_reference.nii.gz"
    stacked = np.stack([np.asarray(v.dataobj) for v in channels], axis=-1)
    nib.save(nib.Nifti1Image(stacked, channels[0].affine), str(psr_ref))
    psr = tmp_path / "psr"
    argv = _cli_args(weights, permuted, psr, "--method", "gradient_x_input", "--reference",
                     str(psr_ref))  # fmt: skip
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    stored = np.asarray(nib.load(str(psr / "relevance_gradient_x_input.nii.gz")).dataobj)
    ras = np.asarray(nib.load(str(out / "relevance_gradient_x_input.nii.gz")).dataobj)
    by_hand = ras.transpose(1, 2, 0, 3)[::-1]
    np.testing.assert_allclose(stored, by_hand, rtol=0, atol=1e-6 * scale)

    # no --reference: the plain map; a reference on another grid: one clear error
    code, _, err = cli(_cli_args(weights, images, tmp_path / "z", "--method", "gradient_x_input"),
                       capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "z" / "explanation.json").read_text())["reference"] == "zero"
    got = np.asarray(nib.load(str(tmp_path / "z" / "relevance_gradient_x_input.nii.gz")).dataobj)
    np.testing.assert_allclose(got.transpose(3, 2, 1, 0), plain, rtol=1e-4, atol=1e-6 * scale)
    code, _, err = cli(_cli_args(weights, images, tmp_path / "e", "--method", "gradient_x_input",
                                 "--reference", str(psr_ref)), capsys)  # fmt: skip
    assert code == 1 and "reference file" in err and "grid" in err
