"""`strokelrp explain` end to end on a tiny trained run: files overlay the inputs, figure exists."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from strokelrp.cli import main
from strokelrp.config import TrainConfig
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.train.evaluate import evaluate
from strokelrp.train.loop import train


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 synthetic cases on differing native grids, a width-2 network trained for 2 epochs."""
    root = tmp_path_factory.mktemp("explain")
    data = synthesize_isles2017(root / "data", 3, shape=(20, 18, 7), seed=2, varied_grids=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(
            data=str(data), series=(6, 16, 16), width=2, epochs=2, device="cpu",
            cache_dir=str(root / "cache"),
        )  # fmt: skip
        (run,) = train(config, root / "run", progress=False, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    return run, data


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
            "explanation.json"} == names  # fmt: skip
    assert all(p.exists() and p.parent == out for p in printed)

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
    assert summary["target"] == "ground_truth" and summary["rules"] == "paper"
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
    assert code == 1 and err.startswith("error: ") and "99" in err
    assert len(err.strip().splitlines()) == 1
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
