"""``explain --nnunet MODEL DATA --case ID`` on data sets in every layout the data layer reads
(written by strokelrp.data.synth_layouts), with the tiny nnU-Net trained by nnU-Net (conftest.py):
the channels matched by name, the same maps whatever the layout, the ground truth in figure 1
and explanation.json, provenance, --folds in nnU-Net's form, no stale files."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from strokelrp.data.nifti_file import read_header, read_nifti
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.data.synth_layouts import synthesize_layout

pytestmark = pytest.mark.slow

FAST = ["--folds", "0", "--no-mirroring", "--method", "gradient"]
CASES = {"nnunet": "STROKE_001", "isles2022": "strokecase0001", "msd": "stroke_001"}


def _variant(model_dir: Path, dest: Path, channels: dict[str, str] | None = None) -> Path:
    """A copy of the tiny model folder whose plan resamples to 8 mm voxels (the synthetic
    phantoms span 24 cm: a few patches instead of hundreds), optionally with its channels
    renamed in dataset.json (the weights do not depend on the names)."""
    out = dest / model_dir.parent.name / model_dir.name
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("*.png", "training_log*"))
    plans = json.loads((out / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["spacing"] = [8.0, 8.0, 8.0]
    (out / "plans.json").write_text(json.dumps(plans))
    if channels is not None:
        dataset = json.loads((out / "dataset.json").read_text())
        dataset["channel_names"] = channels
        (out / "dataset.json").write_text(json.dumps(dataset))
    return out


@pytest.fixture(scope="module")
def world(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nndata")
    found = {"model": _variant(tiny_model_dir, root / "model")}
    for layout in ("nnunet", "isles2022", "msd", "isles2024"):
        found[layout] = synthesize_layout(root / layout, 2, layout, shape=(32, 32, 6), seed=3)
    return found


def _explain(model: Path, data: Path, case: str, out: Path, capsys, *extra: str) -> dict:
    argv = ["explain", "--nnunet", str(model), str(data), "--case", case, *FAST, *extra]
    code, _, err = run_cli([*argv, "--out", str(out)], capsys)
    assert code == 0, err
    return json.loads((out / "explanation.json").read_text())


def _volume(path: Path) -> np.ndarray:
    """A NIfTI's voxels (x, y, z[, volume]): every frame of a 4-D file."""
    meta = read_header(path, frames=True)
    if meta.frames == 1:
        return np.asarray(read_nifti(path).data)
    frames = [np.asarray(read_nifti(path, frame=f).data) for f in range(meta.frames)]
    return np.stack(frames, -1)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Hard Dice by counting (an independent reference for core.metrics.dice_score)."""
    a, b = a.astype(bool).ravel(), b.astype(bool).ravel()
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    return 2.0 * both / (int(a.sum()) + int(b.sum())) if a.any() or b.any() else 1.0


def test_every_layout_gives_the_same_maps(world, tmp_path, capsys) -> None:
    """The same phantom in nnU-Net raw (DWI, ADC files), ISLES 2022 (BIDS dwi/adc files and a
    FLAIR the model does not take) and Decathlon (one 4-D image DWI, ADC, Tmax) gives the same
    prediction and the same gradient map, on the data's own grid and affine."""
    found = {}
    for layout, case in CASES.items():
        summary = _explain(world["model"], world[layout], case, tmp_path / layout, capsys)
        found[layout] = summary
        assert [i["data_channel"] for i in summary["inputs"]] == ["DWI", "ADC"]
    reads = {k: [i["read"] for i in s["inputs"]] for k, s in found.items()}
    assert reads["nnunet"] == reads["isles2022"] == ["as stored", "as stored"]
    assert all(r.startswith(f"frame {c} of the 4-D image") for c, r in enumerate(reads["msd"]))
    maps = {k: _volume(tmp_path / k / "relevance_gradient.nii.gz") for k in CASES}
    preds = {k: _volume(tmp_path / k / "prediction.nii.gz") for k in CASES}
    assert np.abs(maps["nnunet"]).max() > 0
    for layout in ("isles2022", "msd"):
        np.testing.assert_array_equal(maps[layout], maps["nnunet"])
        np.testing.assert_array_equal(preds[layout], preds["nnunet"])
    # written on the data's own files' grid: the DWI file, the Decathlon 4-D image
    dwi = next((world["isles2022"] / "rawdata").rglob("*_dwi.nii.gz"))
    image = world["msd"] / "imagesTr" / "stroke_001.nii.gz"
    for layout, source in (("isles2022", dwi), ("msd", image)):
        written = read_header(tmp_path / layout / "relevance_gradient.nii.gz", frames=True)
        assert written.shape == read_header(source, frames=True).shape
        np.testing.assert_allclose(written.affine, read_header(source, frames=True).affine)
    # the staged Decathlon copies are gone with the command
    assert not list((tmp_path / "msd").glob(".strokelrp-*"))


def test_ground_truth_is_shown_scored_and_explained(world, tmp_path, capsys) -> None:
    """ISLES 2022's derivatives mask and nnU-Net raw's labelsTr (class lesion = 1 of classes
    lesion and old_infarct) are the ground truth: named, scored by Dice of the prediction
    (checked by counting), and --target ground_truth starts from them on the network's grid
    exactly as nnU-Net's own preprocessing brings a training segmentation there."""
    import torch

    from strokelrp.families.nnunet import load_nnunet, load_nnunet_case, nnunet_window
    from strokelrp.families.nnunet.preprocess import _managers, preprocess_case
    from strokelrp.sliding_window import window_logits

    summary = _explain(world["model"], world["isles2022"], CASES["isles2022"], tmp_path, capsys)
    mask = next((world["isles2022"] / "derivatives").rglob("*_msk.nii.gz"))
    assert summary["ground_truth"] == {"file": str(mask), "name": "msk"}
    prediction = _volume(tmp_path / "prediction.nii.gz")
    assert summary["dice"] == pytest.approx(_dice(prediction == 1, _volume(mask) > 0), abs=1e-12)

    out = tmp_path / "raw"
    summary = _explain(world["model"], world["nnunet"], CASES["nnunet"], out, capsys)
    label = world["nnunet"] / "labelsTr" / "STROKE_001.nii.gz"
    assert summary["ground_truth"] == {"file": str(label), "name": "labelsTr, class lesion"}
    classes = _volume(label)
    assert (classes == 2).any()  # old_infarct is not the lesion
    truth = classes == 1
    assert summary["dice"] == pytest.approx(
        _dice(_volume(out / "prediction.nii.gz") == 1, truth), abs=1e-12
    )

    out = tmp_path / "gt"
    summary = _explain(
        world["model"], world["nnunet"], CASES["nnunet"], out, capsys, "--target", "ground_truth"
    )
    # the explained score from nnU-Net's own preprocessing of the image and label files
    model = load_nnunet(world["model"], folds=[0])
    case = load_nnunet_case(world["nnunet"], CASES["nnunet"], model.dataset)
    plans, config = _managers(model)
    binary = tmp_path / "lesion_only.nii.gz"
    import nibabel as nib

    ref = nib.load(label)
    nib.save(nib.Nifti1Image(truth.astype(np.uint8), ref.affine, ref.header), str(binary))
    data, seg, _ = config.preprocessor_class(verbose=False).run_case(
        [str(f) for f in case.files], str(binary), plans, config, model.dataset
    )
    pre = preprocess_case(model, case.files, case.case_id)
    np.testing.assert_array_equal(data, pre.data)  # the image is preprocessed alike
    logits = window_logits(model.networks, torch.from_numpy(pre.data), nnunet_window(model, False))
    expected = float(logits[1].double()[torch.from_numpy(seg[0] == 1)].sum())
    assert seg[0].max() == 1 and summary["score"] == pytest.approx(expected, rel=1e-5)


def test_channels_are_matched_by_name_or_refused(world, tmp_path, capsys) -> None:
    """A model whose channels are named MR_ADC and TMAX reads ISLES 2017's ADC and Tmax (the
    data's other four channels unused); one that wants DWI finds none in ISLES 2024's CT data,
    and a case whose file is missing is named with it."""
    named = _variant(world["model"], tmp_path / "named", {"0": "MR_ADC", "1": "TMAX"})
    data = synthesize_isles2017(tmp_path / "isles2017", 1, shape=(32, 32, 6), seed=3)
    summary = _explain(named, data, "1", tmp_path / "out", capsys)
    assert [i["data_channel"] for i in summary["inputs"]] == ["ADC", "Tmax"]
    assert {i["read"] for i in summary["inputs"]} == {"as stored"}
    assert summary["ground_truth"]["name"] == "OT"
    assert any("channel 0 (MR_ADC) is the data's ADC" in n for n in summary["notes"])

    # FLAIR on its own coarser grid: resampled onto DWI's by the data layer, handed to nnU-Net
    # as a copy on the DWI file's grid, the maps written there
    flair = _variant(world["model"], tmp_path / "flair", {"0": "b1000", "1": "T2-FLAIR"})
    summary = _explain(flair, world["isles2022"], "strokecase0001", tmp_path / "fl", capsys)
    dwi, flair_read = summary["inputs"]
    assert dwi["read"] == "as stored" and dwi["data_channel"] == "DWI"
    assert flair_read["data_channel"] == "FLAIR" and "resampled" in flair_read["read"]
    written = read_header(tmp_path / "fl" / "relevance_gradient.nii.gz", frames=True)
    source = read_header(Path(dwi["file"]))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)

    argv = ["explain", "--nnunet", str(world["model"]), str(world["isles2024"]), "--case"]
    code, _, err = run_cli([*argv, "stroke0001", *FAST, "--out", str(tmp_path / "x")], capsys)
    assert code == 1
    assert "case stroke0001" in err and "the model's channel 0 (DWI) is not among them" in err
    assert "CBF, CBV, MTT, Tmax, NCCT, CTA" in err

    broken = tmp_path / "broken"
    shutil.copytree(world["isles2022"], broken)
    next(broken.rglob("sub-strokecase0002_ses-0001_adc.nii.gz")).unlink()
    code, _, err = run_cli(
        ["explain", "--nnunet", str(world["model"]), str(broken), "--case", "strokecase0002",
         *FAST, "--out", str(tmp_path / "y")], capsys,
    )  # fmt: skip
    assert code == 1 and "case strokecase0002" in err and "missing ADC" in err


def test_provenance_and_cohort_table(world, tmp_path, capsys) -> None:
    """explanation.json and cohort.csv's sidecar record the model folder, each fold's
    checkpoint with its SHA-256, the plans' and dataset.json's hashes, the nnunetv2 version and
    the command line; two shards of an ISLES 2022 cohort give the table of one."""
    model = world["model"]
    base = ["explain", "--nnunet", str(model), str(world["isles2022"]), *FAST]
    one, two = tmp_path / "one", tmp_path / "two"
    code, _, err = run_cli([*base, "--out", str(one)], capsys)
    assert code == 0, err
    for part in ("0/2", "1/2"):
        code, _, err = run_cli([*base, "--out", str(two), "--part", part], capsys)
        assert code == 0, err
    table = (one / "cohort.csv").read_text()
    assert table == (two / "cohort.csv").read_text()
    assert table.splitlines()[0].startswith("case,method,target,score,predicted_voxels,dice,")
    assert len(table.splitlines()) == 3

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    summary = json.loads((one / "strokecase0001" / "explanation.json").read_text())
    for record in (summary["provenance"], json.loads((one / "cohort.provenance.json").read_text())):
        assert record["command_line"] == ["strokelrp", *base, "--out", str(one)]
        assert record["versions"]["nnunetv2"] == importlib.metadata.version("nnunetv2")
        (ckpt,) = record["checkpoints"]
        checkpoint = model / "fold_0" / "checkpoint_final.pth"
        assert ckpt == {"fold": "0", "path": str(checkpoint.resolve()), "sha256": sha(checkpoint)}
        assert record["nnunet"]["plans_sha256"] == sha(model / "plans.json")
        assert record["nnunet"]["dataset_json_sha256"] == sha(model / "dataset.json")
        assert record["data"]["root"] == str(world["isles2022"].resolve())
        files = record["data"]["cases"]["strokecase0001"]["files"]
        assert files["DWI"].endswith("_dwi.nii.gz") and files["label"].endswith("_msk.nii.gz")


def test_re_explaining_leaves_no_stale_file(world, tmp_path, capsys, monkeypatch) -> None:
    """A second explanation into the folder removes the first one's files it did not rewrite;
    one that fails half-way leaves the earlier explanation whole."""
    import strokelrp.report.figure1 as figure1
    from strokelrp.pipeline.explain_nnunet import explain_nnunet

    model, data, case = world["model"], world["nnunet"], CASES["nnunet"]
    first = ["--method", "lrp:epsilon", "--filter", "pass:0,0.4", "--per-modality"]
    argv = ["explain", "--nnunet", str(model), str(data), "--case", case, "--folds", "0"]
    code, _, err = run_cli([*argv, "--no-mirroring", *first, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert "relevance_pass_0-0.4_DWI.nii.gz" in before

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(figure1, "plot_figure1", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        explain_nnunet(model, data=data, case_id=case, out=tmp_path, folds="0", method="gradient")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()

    summary = _explain(model, data, case, tmp_path, capsys)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {
        "relevance_gradient.nii.gz", "relevance_gradient.json", "prediction.nii.gz",
        "figure1.png", "explanation.json",
    }  # fmt: skip
    assert summary["method"] == "gradient"


def test_folds_in_every_form(world, tmp_path, capsys, monkeypatch) -> None:
    """--folds 0 1 (nnU-Net's form), --folds 0,1 and --folds all reach the loader as the same
    folds; a bad value is one clear error."""
    import strokelrp.pipeline.explain_nnunet as pipeline

    seen: list = []
    monkeypatch.setattr(pipeline, "explain_nnunet", lambda *a, **k: seen.append(k["folds"]) or [])
    base = ["explain", "--nnunet", str(world["model"]), str(world["nnunet"]), "--case", "X"]
    for given in (["0", "1"], ["0,1"], ["all"], ["0,", "1"]):
        code, _, err = run_cli([*base, "--folds", *given, "--out", str(tmp_path)], capsys)
        assert code == 0, err
    assert seen == ["0,1", "0,1", "all", "0,1"]
    code, _, err = run_cli([*base, "--folds", "zero", "--out", str(tmp_path)], capsys)
    assert code == 2 and "'zero' is not a fold" in err
    code, _, err = run_cli([*base, "--folds", "all", "0"], capsys)
    assert code == 2 and "'all' is not a fold" in err
    monkeypatch.undo()

    summary = _explain(world["model"], world["nnunet"], CASES["nnunet"], tmp_path, capsys)
    assert summary["nnunet"]["folds"] == ["0"]
    code, _, err = run_cli(
        [*base[:-1], CASES["nnunet"], "--folds", "0", "1", "--no-mirroring", "--method",
         "gradient", "--out", str(tmp_path / "two")], capsys,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "two" / "explanation.json").read_text())
    assert summary["nnunet"]["folds"] == ["0", "1"]
    assert len(summary["provenance"]["checkpoints"]) == 2


def test_image_files_with_a_label(tiny_nnunet, tiny_model_dir, tmp_path, capsys) -> None:
    """--image files with --label: the label is the ground truth, named by its file and scored
    (Dice counted here)."""
    import tiny_nnunet as tiny

    raw = tiny_nnunet / "nnUNet_raw" / tiny.DATASET
    images = [raw / "imagesTr" / f"tiny_000_000{c}.nii.gz" for c in (0, 1)]
    label = raw / "labelsTr" / "tiny_000.nii.gz"
    argv = ["explain", "--nnunet", str(tiny_model_dir), *FAST, "--label", str(label)]
    for image in images:
        argv += ["--image", str(image)]
    code, _, err = run_cli([*argv, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "explanation.json").read_text())
    assert summary["ground_truth"] == {"file": str(label), "name": "tiny_000.nii.gz"}
    prediction = _volume(tmp_path / "prediction.nii.gz")
    assert summary["dice"] == pytest.approx(_dice(prediction == 1, _volume(label) > 0), abs=1e-12)
    files = summary["provenance"]["data"]["cases"]["tiny_000"]["files"]
    assert files == {"DWI": images[0].name, "ADC": images[1].name, "label": str(label.resolve())}
