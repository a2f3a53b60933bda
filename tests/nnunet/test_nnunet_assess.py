"""``assess --nnunet``: the trust assessment through nnU-Net's sliding window, on the tiny
nnU-Net trained by nnU-Net's own code (conftest.py), against an independent stitched forward."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_cli

pytestmark = pytest.mark.slow

FAST = ["--folds", "0", "--no-mirroring"]
QUICK = ["--profile", "quick", "--methods", "gradient", "--methods", "locality_prior"]


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny networks run fastest on one thread, and the CPU is shared: restore after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _raw(root: Path) -> Path:
    import tiny_nnunet as tiny

    return root / "nnUNet_raw" / tiny.DATASET


def _stitched(net: torch.nn.Module, x: torch.Tensor, patch: tuple[int, ...]) -> torch.Tensor:
    """nnU-Net's sliding window written out with nnU-Net's own Gaussian and tile steps
    (``nnunetv2.inference.sliding_window_prediction``), one fold, no mirroring: the logits
    (K, *S) of x (C, *S), differentiable. Pads like nnU-Net (zeros, split evenly)."""
    from nnunetv2.inference.sliding_window_prediction import (
        compute_gaussian,
        compute_steps_for_sliding_window,
    )

    shape = x.shape[1:]
    padded = [max(s, p) for s, p in zip(shape, patch, strict=True)]
    before = [(p - s) // 2 for s, p in zip(shape, padded, strict=True)]
    pads: list[int] = []
    for s, p, b in reversed(list(zip(shape, padded, before, strict=True))):
        pads += [b, p - s - b]
    xp = F.pad(x, pads)
    g = compute_gaussian(patch, 1 / 8, 10, device=torch.device("cpu"), dtype=x.dtype)
    steps = compute_steps_for_sliding_window(padded, patch, 0.5)
    total = torch.zeros(2, *padded, dtype=x.dtype)
    norm = torch.zeros(padded, dtype=x.dtype)
    for a in steps[0]:
        for b in steps[1]:
            for c in steps[2]:
                sl = (slice(a, a + patch[0]), slice(b, b + patch[1]), slice(c, c + patch[2]))
                y = net(xp[(slice(None), *sl)][None])[0]
                total[(slice(None), *sl)] = total[(slice(None), *sl)] + y * g
                norm[sl] += g
    inner = tuple(slice(b, b + s) for b, s in zip(before, shape, strict=True))
    return (total / norm)[(slice(None), *inner)]


def test_assess_row_equals_an_independent_stitched_forward(tiny_nnunet, tiny_model_dir) -> None:
    """The gradient row's score, shares and MoRF AOPC (zero fill) equal the same quantities
    from autograd through a stitched forward written in this test and perturbed volumes scored
    by it (float64 networks, so the orderings agree)."""
    from strokelrp.analysis.assess import brain_share, lesion_share, ordering
    from strokelrp.families.nnunet import load_nnunet
    from strokelrp.families.nnunet.preprocess import preprocess_case
    from strokelrp.pipeline.explain_nnunet import case_files
    from strokelrp.sliding_window import Window
    from strokelrp.trust.assess import assess
    from strokelrp.trust.windowed import WindowedModel

    model = load_nnunet(tiny_model_dir, folds=[0])
    files = case_files(_raw(tiny_nnunet), "tiny_101", model.dataset)
    x = torch.from_numpy(preprocess_case(model, files, "tiny_101").data).double()
    net = copy.deepcopy(model.networks[0]).double().eval()
    patch = tuple(model.patch_size)
    with torch.no_grad():
        logits = _stitched(net, x, patch)
    w = torch.zeros_like(logits)
    w[1] = (logits.argmax(0) == 1).double()
    assert w.sum() > 0 and len(Window(patch).tiles(x.shape[1:])) >= 4
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((_stitched(net, xg, patch) * w).sum(), xg)
    s0 = float((w * logits).sum())
    fractions = (0.05, 0.5)
    rows, _ = assess(
        WindowedModel([net], Window(patch)),
        x,
        None,
        ["gradient"],
        weights=w[None],
        seeds=(1,),
        random_seeds=1,
        fractions=fractions,
        extras=False,
        removal="zero",
    )
    row = rows[0]
    target = (w[1] != 0).numpy()
    assert math.isclose(row["target_score"], s0, rel_tol=1e-9)
    assert math.isclose(row["lesion_share"], lesion_share(g, target), rel_tol=1e-6)
    assert math.isclose(row["brain_share"], brain_share(g, x), rel_tol=1e-6)
    order = ordering(g, True).numpy()
    drops = []
    for f in fractions:
        k = round(f * int(target.sum()) * x.shape[0])
        xk = x.clone().reshape(-1)
        xk[order[:k]] = 0
        with torch.no_grad():
            s = float((w * _stitched(net, xk.reshape(x.shape), patch)).sum())
        drops.append((s0 - s) / abs(s0))
    assert row["morf_aopc"] == pytest.approx(float(np.mean(drops)), abs=1e-9)


def _table(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    for r in rows:
        r.pop("seconds", None), r.pop("map_seconds", None)
    return rows


def test_two_shards_give_the_one_table(tiny_nnunet, tiny_model_dir, tmp_path, capsys) -> None:
    """assess --nnunet over two cases: two --part shards into one folder give the tables
    one process gives (timings aside); a finished case is skipped; the labelled case
    (imagesTr, labelsTr) has localisation measures, the unlabelled one none; report on the
    folder shows the trust section and no training or sweep sections."""
    data = _raw(tiny_nnunet)
    base = ["assess", "--nnunet", str(tiny_model_dir), str(data), *FAST, *QUICK]
    base += ["--cases", "tiny_000,tiny_100", "--seeds", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    code, stdout, err = run_cli([*base, "--out", str(one)], capsys)
    assert code == 0, err
    assert "gradient" in stdout
    for part in ("0/2", "1/2"):
        code, _, err = run_cli([*base, "--out", str(two), "--part", part], capsys)
        assert code == 0, err
    for name in ("assess_curves.csv", "assess_pairs.csv"):
        assert (one / name).read_text() == (two / name).read_text()
    rows = _table(one / "assess.csv")
    assert rows == _table(two / "assess.csv")
    assert [(r["case"], r["method"]) for r in rows] == [
        ("tiny_000", "gradient"),
        ("tiny_000", "locality_prior"),
        ("tiny_100", "gradient"),
        ("tiny_100", "locality_prior"),
    ]
    assert rows[0]["mass_accuracy"] != "" and rows[2]["mass_accuracy"] == ""
    record = json.loads((one / "assess.provenance.json").read_text())
    assert record["nnunet"]["plans_sha256"] and record["mirroring"] is False
    assert [c["fold"] for c in record["checkpoints"]] == ["0"] and record["checkpoints"][0][
        "sha256"
    ]
    assert sorted(record["data"]["cases"]) == ["tiny_000", "tiny_100"]
    code, _, err = run_cli([*base, "--out", str(two), "--part", "1/2"], capsys)
    assert code == 0 and "tiny_100: done before, skipped" in err
    code, stdout, err = run_cli(["report", str(one)], capsys)
    assert code == 0, err
    page = Path(stdout.strip()).read_text()
    assert 'id="trust"' in page and 'id="sweep"' not in page and 'id="metrics"' not in page
    assert "<p class='meta'>Results: " in page and "U-Net (ISLES 2017)" not in page


def test_sweep_shards_and_report(tiny_nnunet, tiny_model_dir, tmp_path, capsys) -> None:
    """sweep --nnunet: two shards give the one table; the gradient rows' |R| shares per
    channel equal those of autograd through the stitched forward written here; report on the
    sweep folder shows the sweep and no training sections."""
    from strokelrp.analysis.table import read_table
    from strokelrp.families.nnunet import load_nnunet
    from strokelrp.families.nnunet.preprocess import preprocess_case
    from strokelrp.pipeline.explain_nnunet import case_files
    from strokelrp.sliding_window import Window, window_logits

    data = _raw(tiny_nnunet)
    base = ["sweep", "--nnunet", str(tiny_model_dir), str(data), *FAST]
    base += ["--cases", "tiny_000,tiny_100", "--methods", "gradient"]
    one, two = tmp_path / "one", tmp_path / "two"
    code, stdout, err = run_cli([*base, "--out", str(one)], capsys)
    assert code == 0, err
    for part in ("0/2", "1/2"):
        code, _, err = run_cli([*base, "--out", str(two), "--part", part], capsys)
        assert code == 0, err
    assert (one / "sweep.csv").read_text() == (two / "sweep.csv").read_text()
    rows = read_table(one / "sweep.csv")
    settings = {r["setting"] for r in rows}
    assert {"raw", "pass(0,0.4)", "gradient"} <= settings and len(
        settings
    ) == 17  # the paper's 16 and gradient
    assert {r["case"] for r in rows} == {"tiny_000", "tiny_100"}
    labelled = [r for r in rows if r["case"] == "tiny_000"]
    assert all(np.isfinite(r["gt_inclusivity"]) for r in labelled)
    assert all(np.isnan(r["gt_inclusivity"]) for r in rows if r["case"] == "tiny_100")
    model = load_nnunet(tiny_model_dir, folds=[0])
    files = case_files(data, "tiny_100", model.dataset)
    x = torch.from_numpy(preprocess_case(model, files, "tiny_100").data)
    net, patch = model.networks[0], tuple(model.patch_size)
    xg = x.clone().requires_grad_(True)
    logits = _stitched(net, xg, patch)
    # W on nnU-Net's prediction (float16 stitching; equal to nnUNetv2_predict's, see
    # test_nnunet_predict.py), the gradient through the stitched forward written here
    predicted = window_logits([net], x, Window(patch), stitch_dtype=torch.float16)
    w = torch.zeros_like(logits)
    w[1] = (predicted.argmax(0) == 1).float()
    (g,) = torch.autograd.grad((logits * w).sum(), xg)
    shares = g.abs().double().flatten(1).sum(1) / g.abs().double().sum()
    got = {
        r["modality"]: r["abs_share"]
        for r in rows
        if r["case"] == "tiny_100" and r["setting"] == "gradient"
    }
    assert got == pytest.approx(
        dict(zip(model.channel_names, shares.tolist(), strict=True)), rel=1e-5
    )
    code, stdout, err = run_cli(["report", str(one)], capsys)
    assert code == 0, err
    page = Path(stdout.strip()).read_text()
    assert 'id="sweep"' in page and 'id="training"' not in page and 'id="trust"' not in page
