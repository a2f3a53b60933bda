"""`strokelrp explain` end to end on a tiny trained run: files overlay the inputs, figure exists."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from cli_helpers import run_cli as cli
from run_helpers import train_quietly

from strokelrp.config import TrainConfig
from strokelrp.data.layouts.isles2017 import CHANNELS
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.lrp.presets import DEFAULT_PRESET
from strokelrp.run_files import RunDir
from strokelrp.train.checkpoint import save_checkpoint
from strokelrp.train.evaluate import evaluate


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 synthetic cases on differing native grids, a width-2 network trained for 2 epochs."""
    root = tmp_path_factory.mktemp("explain")
    data = synthesize_isles2017(root / "data", 3, shape=(20, 18, 7), seed=2, varied_grids=True)
    config = TrainConfig(
        data=str(data), series=(6, 16, 16), width=2, epochs=2, device="cpu",
        cache_dir=str(root / "cache"),
    )  # fmt: skip
    return train_quietly(config, root / "run"), data


def _case_ids(data: Path) -> list[str]:
    return sorted(p.name.removeprefix("training_") for p in data.glob("training_*"))


def test_explain_writes_overlaying_niftis_and_the_figure(trained, tmp_path, capsys) -> None:
    run, data = trained
    case_id = _case_ids(data)[0]
    out = tmp_path / "ex"
    argv = ["explain", str(run), str(data), "--case", case_id, "--target", "ground_truth",
            "--filter", "pass:0,0.4", "--filter", "clamp:0.2", "--out", str(out),
            "--per-modality"]  # fmt: skip
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    printed = [Path(line) for line in stdout.split()]
    names = {p.name for p in printed}
    assert {"relevance_raw.nii.gz", "relevance_pass_0-0.4.nii.gz",
            "relevance_clamp_0-0.2.nii.gz", "prediction.nii.gz", "figure1.png",
            "explanation.json", "relevance_raw_rCBF.nii.gz",
            "relevance_raw.json"} <= names  # fmt: skip
    assert all(p.exists() and p.parent == out for p in printed)
    assert names == {p.name for p in out.iterdir()}  # every file written is printed

    case_dir = next(data.glob(f"training_{case_id}"))
    modality = nib.load(next(case_dir.glob("*MR_rCBF*/*.nii")))
    truth = nib.load(next(case_dir.glob("*OT*/*.nii")))
    maps = []
    for name in ("relevance_raw", "relevance_pass_0-0.4", "relevance_clamp_0-0.2"):
        img = nib.load(out / f"{name}.nii.gz")
        assert img.shape == (*modality.shape, 6)
        assert img.get_data_dtype() == np.float32
        np.testing.assert_allclose(img.affine, modality.affine, atol=1e-5)
        maps.append(np.asarray(img.dataobj))
        sidecar = json.loads((out / f"{name}.json").read_text())
        assert sidecar["volumes"] == ["ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP"]
        rcbf = nib.load(out / sidecar["files"]["rCBF"])  # the per-modality 3-D file
        np.testing.assert_array_equal(np.asarray(rcbf.dataobj), maps[-1][..., 2])
    assert np.abs(maps[0]).max() > 0  # the OT start is not empty: relevance flows
    # the filters act inside the walk: the filtered maps are not the raw one
    assert not np.allclose(maps[0], maps[1]) and not np.allclose(maps[0], maps[2])
    pred = nib.load(out / "prediction.nii.gz")
    assert pred.shape == truth.shape and pred.get_data_dtype() == np.uint8
    np.testing.assert_allclose(pred.affine, truth.affine, atol=1e-5)
    assert (out / "figure1.png").stat().st_size > 10_000

    summary = json.loads((out / "explanation.json").read_text())
    (evaluated,) = evaluate(run, data, device="cpu", progress=False, echo=None)
    (row,) = [r for r in evaluated.rows if r["case_id"] == case_id]
    assert summary["dice"] == pytest.approx(row["dice"])  # same native-grid prediction
    assert summary["target"] == "ground_truth" and summary["rules"] == DEFAULT_PRESET
    assert [s["label"] for s in summary["settings"]] == ["raw", "pass(0,0.4)", "clamp(0,0.2)"]
    assert summary["grid_xyz"] == list(modality.shape)


def test_explain_default_output_folder_and_paper_filters(trained, capsys) -> None:
    run, data = trained
    case_id = _case_ids(data)[-1]
    code, stdout, err = cli(
        ["explain", str(run), str(data), "--case", case_id, "--target", "authors"], capsys
    )
    assert code == 0, err
    folder = run / "explanations" / case_id
    assert {p.name for p in folder.glob("relevance_*.nii.gz")} == {
        "relevance_raw.nii.gz", "relevance_pass_0-0.4.nii.gz", "relevance_clamp_0-0.2.nii.gz",
    }  # fmt: skip
    assert str(folder / "figure1.png") in stdout


def test_explain_errors(trained, tmp_path, capsys) -> None:
    run, data = trained
    code, _, err = cli(["explain", str(run), str(data), "--case", "99"], capsys)
    problems = [line for line in err.splitlines() if not line.startswith("explain: ")]  # progress
    assert code == 1 and len(problems) == 1
    assert problems[0].startswith("error: ") and "99" in problems[0]
    code, _, err = cli(["explain", str(tmp_path / "nope"), str(data), "--case", "1"], capsys)
    assert code == 1 and "nope" in err and "error: " in err
    code, _, err = cli(["explain", str(run), str(data), "--case", "1", "--filter", "band:2"],
                       capsys)  # fmt: skip
    assert code == 2 and "--filter" in err
    code, _, err = cli(["explain", str(run), str(data), "--case", "1", "--rules", "nope"], capsys)
    assert code == 2 and "paper" in err
    case_id = _case_ids(data)[0]
    code, _, err = cli(["explain", str(run), str(data), "--case", case_id, "--slice", "999",
                        "--out", str(tmp_path / "s")], capsys)  # fmt: skip
    assert code == 1 and "slice 999" in err
    assert not (tmp_path / "s").exists()  # checked before anything is computed or written


def test_explain_takes_the_folder_name_and_shows_progress(trained, capsys) -> None:
    run, data = trained
    case_id = _case_ids(data)[1]
    code, stdout, err = cli(
        ["explain", str(run), str(data), "--case", f"training_{case_id}", "--filter", "pass:0.4",
         "--device", "cpu"], capsys,
    )  # fmt: skip
    assert code == 0, err
    folder = run / "explanations" / case_id  # the plain id names the folder
    assert str(folder / "explanation.json") in stdout
    assert json.loads((folder / "explanation.json").read_text())["case"] == case_id
    steps = [line for line in err.splitlines() if line.startswith("explain: ")]
    assert len(steps) >= 4 and any("2 map(s)" in s for s in steps)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a build or machine without CUDA")
def test_explain_on_cuda_without_a_gpu_is_one_error_line(trained, tmp_path, capsys) -> None:
    run, data = trained
    out = tmp_path / "ex"
    code, _, err = cli(["explain", str(run), str(data), "--case", _case_ids(data)[0],
                        "--device", "cuda", "--out", str(out)], capsys)  # fmt: skip
    assert code == 1 and err.strip().splitlines() == [
        "error: --device cuda was asked for, but torch sees no CUDA GPU"
    ]
    assert not out.exists()


def test_an_empty_prediction_is_said_on_the_figure_and_in_the_json(
    trained, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strokelrp.model import UNet3D
    from strokelrp.report import figure1

    _, data = trained
    run = tmp_path / "silent"
    config = TrainConfig(data=str(data), series=(6, 16, 16), width=2, epochs=1)
    config.to_toml(run / "config.toml")
    model = UNet3D(width=2)
    with torch.no_grad():  # background everywhere: the network predicts no lesion
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([5.0, -5.0]))
    save_checkpoint(RunDir(run).checkpoints, epoch=1, config=config, model=model)
    texts: list[str] = []
    save = figure1._save_png_atomic

    def keep_texts(fig, path, dpi):
        texts.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        return save(fig, path, dpi)

    monkeypatch.setattr(figure1, "_save_png_atomic", keep_texts)
    out = tmp_path / "ex"
    code, _, err = cli(["explain", str(run), str(data), "--case", _case_ids(data)[0],
                        "--out", str(out), "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    assert any(t.startswith("empty prediction") for t in texts)
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["empty_prediction"] is True
    assert any("empty prediction" in n for n in summary["notes"])
    assert "note: case" in err and "empty prediction" in err
    assert not np.asarray(nib.load(out / "prediction.nii.gz").dataobj).any()


def test_filter_specs_swapped_bounds_and_the_channel_scope_in_help(tmp_path, capsys) -> None:
    code, _, err = cli(["explain", str(tmp_path), str(tmp_path), "--case", "1", "--filter",
                        "pass:1,0"], capsys)  # fmt: skip
    assert code == 2 and "swapped" in err and "pass:0,1" in err
    code, out, _ = cli(["explain", "--help"], capsys)
    assert code == 0 and ":channel" in out and "per modality channel" in " ".join(out.split())
    code, out, _ = cli(["sweep", "--help"], capsys)
    assert code == 0 and ":channel" in out


def test_explain_memory_budget_reaches_the_engine(trained, tmp_path, capsys) -> None:
    """A budget below one setting walks the settings one at a time (said in a note) and gives
    the maps of one unlimited walk; an unreadable budget is a usage error."""
    run, data = trained
    case_id = _case_ids(data)[1]
    base = ["explain", str(run), str(data), "--case", case_id, "--target", "authors"]
    code, _, err = cli(
        [*base, "--memory-budget", "unlimited", "--out", str(tmp_path / "u")], capsys
    )
    assert code == 0, err
    assert "memory budget" not in err
    code, _, err = cli([*base, "--memory-budget", "1kB", "--out", str(tmp_path / "t")], capsys)
    assert code == 0, err
    assert "memory budget 1 kB is below the estimated need" in err
    for name in ("relevance_raw", "relevance_pass_0-0.4", "relevance_clamp_0-0.2"):
        whole = np.asarray(nib.load(tmp_path / "u" / f"{name}.nii.gz").dataobj)
        tight = np.asarray(nib.load(tmp_path / "t" / f"{name}.nii.gz").dataobj)
        assert np.linalg.norm(tight - whole) <= 1e-5 * np.linalg.norm(whole), name
    code, _, err = cli([*base, "--memory-budget", "4XB"], capsys)
    assert code == 2 and "--memory-budget" in err and "4XB" in err
    code, _, err = cli(["sweep", str(run), str(data), "--memory-budget", "lots"], capsys)
    assert code == 2 and "--memory-budget" in err


def _canonical_channels(path: Path) -> np.ndarray:
    """A 4-D relevance NIfTI read back in the RAS grid (nibabel's own reorientation) as
    (C, D, H, W) = (C, z, y, x), float64."""
    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj, dtype=np.float64).transpose(3, 2, 1, 0)


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients(steps=4)"])
def test_explain_writes_any_method_as_attribute_gives_it(trained, tmp_path, capsys, method):
    """A baseline through explain's pipeline: the NIfTI, read back in the canonical grid, is
    strokelrp.attribute's map on the same case brought to the native grid; the figure and the
    summary name the method."""
    import strokelrp
    from strokelrp.analysis.table import baseline_setting
    from strokelrp.report.nifti import to_native_grid

    run, data = trained
    case_id = _case_ids(data)[0]
    out = tmp_path / "m"
    argv = ["explain", str(run), str(data), "--case", case_id, "--method", method,
            "--target", "ground_truth", "--out", str(out)]  # fmt: skip
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    stem = baseline_setting(method).stem
    assert {Path(p).name for p in stdout.split()} == {
        f"{stem}.nii.gz",
        f"{stem}.json",
        "prediction.nii.gz",
        "figure1.png",
        "explanation.json",
    }
    model, config = strokelrp.load_run(run)
    case = strokelrp.load_case(data, case_id)
    x, y = strokelrp.prepare_case(case, config)
    # explain's default reference (healthy) for a method that takes one
    want = strokelrp.attribute(
        model, x, method, target="ground_truth", label=torch.from_numpy(y), reference="healthy"
    )
    want = to_native_grid(want.numpy(), case.image.shape[1:]).astype(np.float64)
    got = _canonical_channels(out / f"{stem}.nii.gz")
    assert got.shape == want.shape and np.abs(want).max() > 0
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)
    summary = json.loads((out / "explanation.json").read_text())
    assert summary["method"] == method and summary["rules"] is None
    assert summary["reference"] == "healthy"
    assert [s["label"] for s in summary["settings"]] == [method]
    assert (
        json.loads((out / f"{stem}.json").read_text())["volumes"]
        == list(case.channels)
        == list(CHANNELS)
    )
    assert (out / "figure1.png").stat().st_size > 10_000


def test_explain_lrp_relative_to_the_reference_explains_the_assessed_scalar(
    trained, tmp_path, capsys
) -> None:
    """explain's default LRP map (healthy reference) is strokelrp.attribute's map with that
    reference: the walk of x - b from W * logits, the scalar assess measures (it once started
    from W alone). A seeded random network, whose raw relevance reaches the input (its
    filtered maps are zero), on the case with the largest lesion."""
    import strokelrp
    from strokelrp.model import UNet3D
    from strokelrp.report.nifti import to_native_grid

    _, data = trained
    run = tmp_path / "random"
    config = TrainConfig(data=str(data), series=(6, 16, 16), width=2, epochs=1)
    config.to_toml(run / "config.toml")
    torch.manual_seed(3)
    save_checkpoint(RunDir(run).checkpoints, epoch=1, config=config, model=UNet3D(width=2))
    model, config = strokelrp.load_run(run)
    cases = {c: strokelrp.load_case(data, c) for c in _case_ids(data)}
    prepared = {c: strokelrp.prepare_case(case, config) for c, case in cases.items()}
    case_id = max(prepared, key=lambda c: int(prepared[c][1].sum()))
    x, y = prepared[case_id]
    out = tmp_path / "lrp"
    argv = ["explain", str(run), str(data), "--case", case_id, "--target", "ground_truth",
            "--out", str(out), "--filter", "pass:0,0.4", "--device", "cpu"]  # fmt: skip
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    want = strokelrp.attribute(
        model, x, f"lrp:{DEFAULT_PRESET}", target="ground_truth", label=torch.from_numpy(y),
        reference="healthy",
    )  # fmt: skip
    want = to_native_grid(want.numpy(), cases[case_id].image.shape[1:]).astype(np.float64)
    got = _canonical_channels(out / "relevance_raw.nii.gz")
    assert got.shape == want.shape and np.abs(want).max() > 0
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)
    assert json.loads((out / "explanation.json").read_text())["reference"] == "healthy"


def test_explain_method_errors_and_lrp_method_equals_rules(trained, tmp_path, capsys) -> None:
    run, data = trained
    case_id = _case_ids(data)[0]
    base = ["explain", str(run), str(data), "--case", case_id]
    code, _, err = cli([*base, "--method", "gradient", "--filter", "pass:0,0.4"], capsys)
    assert code == 1 and "filters apply to LRP methods only" in err
    code, _, err = cli([*base, "--method", "gradiant"], capsys)
    assert code == 2 and "did you mean 'gradient'" in err
    code, _, err = cli([*base, "--method", "gradient", "--rules", "paper"], capsys)
    assert code == 2 and "not both" in err
    # lrp:<preset>+<filter> is --rules <preset> --filter <filter>
    code, _, err = cli([*base, "--method", "lrp:zplus+pass:0,0.4", "--out", str(tmp_path / "a")],
                       capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = cli([*base, "--rules", "zplus", "--filter", "pass:0,0.4", "--out",
                        str(tmp_path / "b")], capsys)  # fmt: skip
    assert code == 0, err
    for name in ("relevance_raw", "relevance_pass_0-0.4"):
        a = np.asarray(nib.load(tmp_path / "a" / f"{name}.nii.gz").dataobj)
        b = np.asarray(nib.load(tmp_path / "b" / f"{name}.nii.gz").dataobj)
        np.testing.assert_array_equal(a, b)
    summary = json.loads((tmp_path / "a" / "explanation.json").read_text())
    assert summary["method"] == "lrp:zplus" and summary["rules"] == "zplus"


def test_a_second_method_replaces_the_first_in_the_case_folder(trained, tmp_path, capsys) -> None:
    """explain --method gradient after an LRP explain of the same case into the same folder: the
    folder then holds the gradient explanation only (what explanation.json and figure 1 show)."""
    run, data = trained
    case_id = _case_ids(data)[0]
    out = tmp_path / "twice"
    base = ["explain", str(run), str(data), "--case", case_id, "--out", str(out)]
    code, _, err = cli([*base, "--normalised"], capsys)
    assert code == 0, err
    assert (out / "relevance_clamp_0-0.2_norm.nii.gz").exists()
    code, _, err = cli([*base, "--method", "gradient"], capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {
        "relevance_gradient.nii.gz", "relevance_gradient.json", "prediction.nii.gz",
        "figure1.png", "explanation.json",
    }  # fmt: skip


def test_run_mode_refuses_the_options_of_model_mode(trained, tmp_path, capsys) -> None:
    run, data = trained
    image = next(data.glob("training_*/*MR_ADC*/*.nii"))
    base = ["explain", str(run), str(data), "--case", _case_ids(data)[0]]
    code, _, err = cli([*base, "--image", str(image)], capsys)
    assert code == 2 and "--image" in err and "--model" in err
    code, _, err = cli([*base, "--weights", str(image), "--class-index", "0"], capsys)
    assert code == 2 and "--weights, --class-index" in err
