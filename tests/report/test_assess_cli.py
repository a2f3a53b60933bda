"""`strokelrp assess` end to end on a tiny trained run: the table's columns, rows and errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli as cli
from run_helpers import train_quietly

from strokelrp.config import TrainConfig
from strokelrp.data.synth import synthesize_isles2017


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("assess")
    data = synthesize_isles2017(root / "data", 3, shape=(20, 18, 7), seed=4)
    config = TrainConfig(
        data=str(data), series=(6, 16, 16), width=2, epochs=1, device="cpu",
        cache_dir=str(root / "cache"),
    )  # fmt: skip
    return train_quietly(config, root / "run"), data


def test_load_run_and_prepare_case_give_what_training_saw(trained) -> None:
    import strokelrp
    from strokelrp.data.dataset import CaseDataset

    run, data = trained
    model, config = strokelrp.load_run(run)
    case = strokelrp.load_case(data, "2")
    x, y = strokelrp.prepare_case(case, config)
    ds = CaseDataset(data, config.series, cache_dir=config.cache_dir, cases=["2"])
    xd, yd = ds.arrays(0)
    assert x.shape == (6, 6, 16, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(x, xd)
    np.testing.assert_array_equal(y, yd)
    assert not model.training


def test_assess_writes_the_table(trained, tmp_path, capsys) -> None:
    run, data = trained
    out = tmp_path / "trust"
    argv = ["assess", str(run), str(data), "--cases", "1,2", "--methods", "lrp:epsilon",
            "--methods", "locality_prior", "--seeds", "1", "--random-orders", "1",
            "--cascade", "--out", str(out)]  # fmt: skip
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    with (out / "assess.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:13] == [
        "case", "method", "brain_share", "lesion_share", "morf_aopc", "lerf_aopc",
        "random_aopc", "prior_aopc", "prior_gap", "random_gap", "randomisation_rho",
        "contrast_rho", "ablation_rho",
    ]  # fmt: skip
    assert [r[:2] for r in rows[1:]] == [
        ["1", "lrp:epsilon"], ["1", "locality_prior"], ["2", "lrp:epsilon"], ["2", "locality_prior"]
    ]  # fmt: skip
    assert (out / "cascade.csv").is_file()
    assert "lrp:epsilon" in stdout and f"wrote {out / 'assess.csv'}" in stdout
    header = stdout.splitlines()[0].split()
    assert "randomisation_rho" in header and header[-1] == "morf/random"
    assert "verdict lrp:epsilon (2 case(s)): passes" in stdout
    assert "verdict locality_prior (2 case(s)): " in stdout
    import json

    from strokelrp.data.dataset import case_fingerprint
    from strokelrp.data.layouts import load_case

    record = json.loads((out / "assess.provenance.json").read_text())
    assert record["command"] == "assess" and record["run"] == str(run.resolve())
    assert record["methods"] == ["lrp:epsilon", "locality_prior"] and record["seeds"] == [1]
    assert record["random_orders"] == 1 and record["cascade"] is True
    assert [c["epoch"] for c in record["checkpoints"]] == [1]
    for cid in ("1", "2"):
        paths = load_case(data, cid).paths
        assert record["data"]["cases"][cid]["fingerprint_sha256"] == case_fingerprint(paths)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_assess_writes_the_curves_its_aopcs_are_the_means_of(trained, tmp_path, capsys) -> None:
    import shutil

    import strokelrp
    from strokelrp.analysis.assess import CURVE_COLUMNS, FRACTIONS
    from strokelrp.train.checkpoint import save_checkpoint

    trained_run, data = trained
    run = shutil.copytree(trained_run, tmp_path / "run")
    # one epoch predicts no lesion: shift the lesion bias so that half of case 1 is predicted
    # (a target to explain and a score to perturb)
    model, config = strokelrp.load_run(run)
    x, _ = strokelrp.prepare_case(strokelrp.load_case(data, "1"), config)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])
        model.head.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    save_checkpoint(run / "checkpoints", epoch=2, config=config, model=model)
    out = tmp_path / "curves"
    argv = ["assess", str(run), str(data), "--cases", "1,2", "--methods", "gradient_x_input",
            "--methods", "locality_prior", "--seeds", "1", "--random-orders", "2",
            "--out", str(out)]  # fmt: skip
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    with (out / "assess.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (out / "assess_curves.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CURVE_COLUMNS
        points = list(reader)
    # every (case, method): MoRF and LeRF (element level, imputation), voxel-level MoRF and
    # MoRF under the healthy, mean and zero removals, and two random seeds for each of these
    # five variants
    assert len(points) == len(rows) * (6 + 5 * 2) * len(FRACTIONS)
    assert all(row["morf_aopc"] for row in rows)  # every case has a target to perturb
    columns = {  # AOPC column -> (order, level, baseline) of its curve(s)
        "morf_aopc": ("morf", "element", "impute"),
        "lerf_aopc": ("lerf", "element", "impute"),
        "random_aopc": ("random", "element", "impute"),
        "morf_aopc_voxel": ("morf", "voxel", "impute"),
        "random_aopc_voxel": ("random", "voxel", "impute"),
        "morf_aopc_healthy": ("morf", "element", "healthy"),
        "random_aopc_zero": ("random", "element", "zero"),
        "morf_aopc_mean": ("morf", "element", "mean"),
    }
    for row in rows:
        for column, key in columns.items():
            mine = [
                p for p in points
                if (p["case"], p["method"]) == (row["case"], row["method"])
                and (p["order"], p["level"], p["baseline"]) == key
            ]  # fmt: skip
            seeds = sorted({p["seed"] for p in mine})
            assert seeds == (["0", "1"] if key[0] == "random" else [""])
            for seed in seeds:
                fractions = [float(p["fraction"]) for p in mine if p["seed"] == seed]
                assert fractions == pytest.approx(FRACTIONS, rel=1e-6)
            drops = np.array([float(p["drop"]) for p in mine])
            scale = max(np.abs(drops).max(), 1e-3)
            # 6 significant digits in both files
            assert float(row[column]) == pytest.approx(drops.mean(), abs=1e-5 * scale), column
    # --no-extras: the same ten measures, the extra AOPC columns empty, only the element-level
    # zero-baseline curves (MoRF, LeRF, the random orders) written
    lean = tmp_path / "lean"
    code, _, err = cli([*argv[:-2], "--no-extras", "--out", str(lean)], capsys)
    assert code == 0, err
    with (lean / "assess.csv").open() as fh:
        lean_rows = list(csv.DictReader(fh))
    with (lean / "assess_curves.csv").open() as fh:
        lean_points = list(csv.DictReader(fh))
    assert len(lean_points) == len(rows) * (2 + 2) * len(FRACTIONS)
    assert {(p["level"], p["baseline"]) for p in lean_points} == {("element", "impute")}
    for full, thin in zip(rows, lean_rows, strict=True):
        for column in ("morf_aopc", "lerf_aopc", "random_aopc", "contrast_rho", "ablation_rho"):
            if full[column] == "":  # undefined (e.g. no ablation drop) in both
                assert thin[column] == ""
            else:
                assert float(thin[column]) == pytest.approx(float(full[column]), rel=1e-5)
        for column in ("morf_aopc_voxel", "random_aopc_voxel", "morf_aopc_healthy"):
            assert thin[column] == ""
    # --profile quick with a reference: one re-initialisation, 3 random orders, the quick
    # fractions, the reference written into the method; the paired table beside assess.csv
    from strokelrp.trust.assess import PROFILES

    quick = tmp_path / "quick"
    argv = ["assess", str(run), str(data), "--cases", "1", "--methods", "gradient_x_input",
            "--methods", "locality_prior", "--profile", "quick", "--reference", "healthy",
            "--out", str(quick)]  # fmt: skip
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    with (quick / "assess.csv").open() as fh:
        quick_rows = list(csv.DictReader(fh))
    assert [r["method"] for r in quick_rows] == [
        "gradient_x_input(reference=healthy)",
        "locality_prior",
    ]
    assert quick_rows[0]["randomisation_seeds"] == "1"
    with (quick / "assess_curves.csv").open() as fh:
        quick_points = list(csv.DictReader(fh))
    fractions = sorted({float(p["fraction"]) for p in quick_points})
    assert fractions == pytest.approx(sorted(PROFILES["quick"]["fractions"]))
    assert {p["seed"] for p in quick_points if p["order"] == "random"} == {"0", "1", "2"}
    with (quick / "assess_pairs.csv").open() as fh:
        pairs = list(csv.DictReader(fh))
    assert pairs and pairs[0]["method"] == "gradient_x_input(reference=healthy)"


def test_assess_rejects_a_bad_method_with_one_line(trained, tmp_path, capsys) -> None:
    run, data = trained
    argv = ["assess", str(run), str(data), "--methods", "lrp:papr", "--out", str(tmp_path / "t")]
    code, _, err = cli(argv, capsys)
    assert code == 1 and "error: unknown LRP preset" in err and "did you mean 'lrp:paper'" in err
    assert not (tmp_path / "t").exists()
    argv = ["assess", str(run), str(data), "--methods", "lrp:epsilon", "--methods",
            "gradcam(layer=dec1.act3)", "--out", str(tmp_path / "t")]  # fmt: skip
    code, _, err = cli(argv, capsys)
    assert code == 1 and "no layer 'dec1.act3' (did you mean 'dec1.act2'?)" in err
    assert not (tmp_path / "t").exists()  # checked against the model before any work


def test_assess_memory_budget_reaches_every_lrp_map(trained, tmp_path, capsys, monkeypatch) -> None:
    import strokelrp.trust.assess as assess_module
    from strokelrp.cli import ASSESS_IG_STEPS, ASSESS_PATCH

    assert assess_module.ASSESS_OPTIONS == {
        "integrated_gradients": {"steps": ASSESS_IG_STEPS},
        "occlusion": {"patch": ASSESS_PATCH},
    }
    budgets, options = [], []
    real_lrp, real_prepare = assess_module.lrp, assess_module.prepare_context

    def lrp(*args, **kwargs):  # type: ignore[no-untyped-def]
        budgets.append(kwargs["memory_budget"])
        return real_lrp(*args, **kwargs)

    def prepare(*args, **kwargs):  # type: ignore[no-untyped-def]
        ctx = real_prepare(*args, **kwargs)
        options.append((ctx.options, ctx.batch))
        return ctx

    monkeypatch.setattr(assess_module, "lrp", lrp)
    monkeypatch.setattr(assess_module, "prepare_context", prepare)
    run, data = trained
    argv = ["assess", str(run), str(data), "--cases", "1", "--methods", "lrp:epsilon",
            "--seeds", "2", "--random-orders", "1", "--memory-budget", "1kB",
            "--ig-steps", "3", "--occlusion-patch", "2,4,4",
            "--out", str(tmp_path / "t"), "--json"]  # fmt: skip
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    import json

    doc = json.loads(stdout)  # --json: one document, the table's path and the summaries
    assert doc["table"] == str(tmp_path / "t" / "assess.csv")
    assert [m["method"] for m in doc["methods"]] == ["lrp:epsilon"]
    assert [r["case"] for r in doc["rows"]] == ["1"]
    # the map, 2 re-initialised, the background target, sMPRT's 2 x SMPRT_SAMPLES noisy maps
    assert budgets == [1000.0] * (4 + 2 * assess_module.SMPRT_SAMPLES)
    ((opts, batch),) = options
    assert opts == {"integrated_gradients": {"steps": 3}, "occlusion": {"patch": (2, 4, 4)}}
    assert batch == 1  # the perturbed inputs are batched within the budget too
    base = ["assess", str(run), str(data), "--out", str(tmp_path / "u")]
    code, _, err = cli([*base, "--memory-budget", "4XB"], capsys)
    assert code == 2 and "--memory-budget" in err and "4XB" in err
    code, _, err = cli([*base, "--occlusion-patch", "2,x"], capsys)
    assert code == 2 and "--occlusion-patch" in err
    assert not (tmp_path / "u").exists()
