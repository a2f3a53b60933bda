"""The trust measures on hand-computed cases: toy linear models whose right answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from strokelrp.analysis.assess import (
    COLUMNS,
    EXTRA_COLUMNS,
    aopc,
    assess,
    brain_share,
    lesion_share,
    ordering,
    perturbation_curve,
    random_ordering,
)
from strokelrp.analysis.shares import ablation_rho, abs_modality_shares
from strokelrp.trust.ablation import modality_ablation

F64 = torch.float64


class Linear(nn.Module):
    """Lesion logit sum_c w_c x_c (+ b); background logit 0 (a 1x1 convolution)."""

    def __init__(self, w: list[float], b: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv3d(len(w), 2, 1).double()
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, :, 0, 0, 0] = torch.tensor(w, dtype=F64)
            self.conv.bias[1] = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_brain_and_lesion_shares_by_hand() -> None:
    x = np.zeros((2, 1, 2, 3))
    x[1, 0, 0, :] = 1.0  # brain: the first row (a perfusion channel is non-zero)
    r = np.zeros((2, 1, 2, 3))
    r[0, 0, 0, 0] = 3.0  # in the brain
    r[1, 0, 1, 2] = -1.0  # outside
    assert brain_share(r, x) == 0.75
    target = np.zeros((1, 2, 3), bool)
    target[0, 0, 0] = True
    r2 = np.zeros((1, 1, 2, 3))
    r2[0, 0, 0, 1] = 2.0  # a neighbour of the target: counted (1-voxel dilation)
    r2[0, 0, 1, 2] = 6.0  # two steps away: not counted
    r2[0, 0, 0, 0] = -5.0  # negative: ignored
    assert lesion_share(r2, target) == 0.25
    assert lesion_share(r2, target, grow=0) == 0.0
    assert math.isnan(brain_share(np.zeros_like(r), x))


def test_orderings_put_the_most_relevant_first_and_break_ties_reproducibly() -> None:
    r = torch.tensor([[[[0.1, 5.0, -3.0, 0.0]]]], dtype=F64)
    assert ordering(r, True).tolist() == [1, 0, 3, 2]
    assert ordering(r, False).tolist() == [2, 3, 0, 1]
    ties = torch.zeros(1, 1, 1, 50)
    assert torch.equal(ordering(ties, seed=3), ordering(ties, seed=3))
    assert sorted(ordering(ties).tolist()) == list(range(50))


def test_perturbation_curve_on_a_linear_model_by_hand() -> None:
    """S = sum_v sum_c w_c x_cv; zeroing the k largest contributions drops S by their sum."""
    model = Linear([2.0, 1.0])
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 4, 5, 5, generator=gen, dtype=F64) + 0.1
    weights = torch.zeros(1, 2, 4, 5, 5, dtype=F64)
    weights[:, 1] = 1.0
    contrib = (torch.tensor([2.0, 1.0], dtype=F64).view(2, 1, 1, 1) * x[0]).reshape(-1)
    s0 = float(contrib.sum())
    fractions = (0.01, 0.1, 0.2)
    order = ordering(contrib.view(2, 4, 5, 5), True)
    got = perturbation_curve(model, x, weights, order, fractions, batch=2)
    top = torch.sort(contrib, descending=True).values
    want = [float(top[: round(f * 200)].sum()) / s0 for f in fractions]
    np.testing.assert_allclose(got, want)
    # exact ordering >= random >= least relevant first (all contributions positive)
    morf = aopc(got)
    curves = [
        perturbation_curve(model, x, weights, random_ordering(200, s), fractions) for s in range(5)
    ]
    rand = np.mean([aopc(c) for c in curves])
    lerf = aopc(
        perturbation_curve(model, x, weights, ordering(contrib.view(2, 4, 5, 5), False), fractions)
    )
    assert morf > rand > lerf > 0
    # voxel level: a voxel's relevance is its channels' sum; all channels are zeroed together
    vox = perturbation_curve(
        model, x, weights, ordering(contrib.view(2, 4, 5, 5), voxel=True), (0.01,), voxel=True
    )
    per_voxel = torch.sort(contrib.view(2, -1).sum(0), descending=True).values
    assert math.isclose(float(vox[0]), float(per_voxel[:1].sum()) / s0)
    # mean baseline: the element takes its channel's mean
    mean = perturbation_curve(model, x, weights, order, (0.01,), baseline="mean")
    idx = order[:2]
    xm = x.clone().view(2, -1)
    xm.view(-1)[idx] = x[0].mean((1, 2, 3)).repeat_interleave(100)[idx]
    want_mean = (s0 - float((torch.tensor([2.0, 1.0], dtype=F64).view(2, 1) * xm).sum())) / s0
    assert math.isclose(float(mean[0]), want_mean)


def test_curves_batched_together_equal_single_curves_and_skip_unchanged_inputs() -> None:
    """Several curves in one stream of batches give each curve's own drops; a perturbation
    that changes nothing (entries already 0) has drop 0 and costs no forward."""
    from strokelrp.analysis.assess import Curve, perturbation_curves

    model = Linear([2.0, -1.0])
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 3, 4, 5, generator=gen, dtype=F64) + 0.1
    x[0, 0, 0] = 0.0  # 20 zero elements: a random order of only these changes nothing
    weights = torch.zeros(1, 2, 3, 4, 5, dtype=F64)
    weights[:, 1] = 1.0
    zeros = torch.nonzero(x.reshape(-1) == 0).ravel()
    rest = torch.nonzero(x.reshape(-1) != 0).ravel()
    curves = [
        Curve(random_ordering(120, 0)),
        Curve(ordering(x[0], True, voxel=True), voxel=True),
        Curve(random_ordering(120, 1), baseline="mean"),
        Curve(torch.cat([zeros, rest])),  # the zeros first: the small fractions change nothing
    ]
    fractions = (0.05, 0.1, 0.5)
    calls: list[int] = []
    handle = model.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    got = perturbation_curves(model, x, weights, curves, fractions, batch=4)
    handle.remove()
    assert sum(calls) == 1 + 3 * 3 + 1  # S(x), three full curves, one fraction of the last
    for row, c in zip(got, curves, strict=True):
        want = perturbation_curve(model, x, weights, c.order, fractions, c.baseline, c.voxel)
        np.testing.assert_allclose(row, want, rtol=1e-12)
    assert got[3, 0] == 0.0 and got[3, 1] == 0.0 and got[3, 2] > 0


def test_ablation_finds_the_only_modality_the_model_uses() -> None:
    """Lesion where x_0 > 0.5 (logit x_0 - 0.5): mean-filling x_0 changes the mask, x_1 nothing."""
    model = Linear([1.0, 0.0], b=-0.5)
    x = torch.zeros(1, 2, 1, 4, 4, dtype=F64)
    x[0, 0, 0, :2] = 1.0  # lesion on the first two rows; channel mean 0.5 -> logit 0 -> no lesion
    x[0, 1] = torch.rand(1, 4, 4, dtype=F64)
    y = np.zeros((1, 4, 4), bool)
    y[0, :2] = True
    ablation = modality_ablation(model, x[0], y)
    assert ablation.dice == 1.0
    np.testing.assert_allclose(ablation.drop, [1.0, 0.0])
    # an empty label counts as none: the drop is the change against the own prediction
    np.testing.assert_allclose(modality_ablation(model, x[0], np.zeros_like(y)).drop, [1.0, 0.0])
    r = np.stack([np.ones((1, 4, 4)), 0.1 * np.ones((1, 4, 4))])
    assert math.isclose(ablation_rho(abs_modality_shares(r), ablation.drop), 1.0)
    assert math.isclose(ablation_rho(abs_modality_shares(r[::-1]), ablation.drop), -1.0)


def tiny_unet() -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    from strokelrp.model import UNet3D

    torch.manual_seed(0)
    model = UNet3D(width=2).double().eval()
    x = torch.rand(6, 4, 8, 8, dtype=F64)
    x[1:, :, :2] = 0  # a "background" strip outside the brain
    with torch.no_grad():
        out = model(x[None])
        model.head.bias[1] -= (out[:, 1] - out[:, 0]).median()
        y = (model(x[None]).argmax(1) == 1)[0].numpy()
    return model, x, y


def test_assess_one_case_writes_every_column() -> None:
    model, x, y = tiny_unet()
    methods = ["lrp:epsilon(target=contrastive)", "gradient_x_input", "locality_prior"]
    rows, curves = assess(model, x, y, methods, case="7", seeds=(1,), random_seeds=2, cascade=True)
    assert [r["method"] for r in rows] == methods
    for row in rows:
        assert list(row)[: len(COLUMNS)] == list(COLUMNS)
        assert set(EXTRA_COLUMNS) <= set(row)
        assert 0 <= row["brain_share"] <= 1 and 0 <= row["lesion_share"] <= 1
        assert row["case"] == "7"
    # random orderings are shared by the methods of one target; the contrastive one has its own
    assert rows[1]["random_aopc"] == rows[2]["random_aopc"] != rows[0]["random_aopc"]
    prior = rows[2]
    assert prior["randomisation_rho"] == 1.0 and prior["contrast_rho"] == 1.0  # model-free
    assert {c["method"] for c in curves} == set(methods)
    assert curves[0]["layer"] == "head" and curves[0]["step"] == 1


def test_assess_rejects_unknown_methods_before_working() -> None:
    from strokelrp.errors import StrokeLRPError

    model, x, y = tiny_unet()
    with pytest.raises(StrokeLRPError, match="unknown method"):
        assess(model, x, y, ["gradient", "gradcamm"])


def test_summary_checks_by_hand() -> None:
    from strokelrp.analysis.assess import summarize_methods

    def row(case: str, method: str, morf: float, rand: float, **kw: float) -> dict:
        base = dict(brain_share=0.95, lesion_share=0.6, lerf_aopc=0.0, randomisation_rho=0.8,
                    contrast_rho=0.5, ablation_rho=0.5)  # fmt: skip
        base.update(kw)
        return {"case": case, "method": method, "morf_aopc": morf, "random_aopc": rand, **base}

    rows = [
        row("1", "good", 1.0, 0.05),
        row("2", "good", 1.0, 0.2),  # ratio 5 in one case: the median (15) still passes
        row("3", "good", 1.5, 0.1),
        row("1", "bad", 1.0, 0.01, contrast_rho=-0.99),
        row("2", "bad", 1.0, 0.01, contrast_rho=-0.97, brain_share=""),
    ]
    good, bad = summarize_methods(rows)
    assert good["morf_over_random"] == 15.0 and good["passes"]
    assert bad["brain_share"] == 0.95 and not bad["contrast_ok"] and not bad["passes"]
    assert math.isclose(bad["contrast_rho"], -0.98)


def test_randomisation_leaves_out_seeds_with_an_undefined_correlation() -> None:
    """A constant re-initialised map has no rank correlation: the mean, min and max are over
    the seeds that have one (by hand), and all-undefined stays undefined."""
    from strokelrp.analysis.assess import _randomisation_summary

    got = _randomisation_summary([0.2, math.nan, 0.6])
    assert got["randomisation_rho"] == pytest.approx(0.4)
    assert (got["randomisation_rho_min"], got["randomisation_rho_max"]) == (0.2, 0.6)
    assert got["randomisation_seeds"] == 2
    none = _randomisation_summary([math.nan, math.nan])
    assert math.isnan(none["randomisation_rho"]) and none["randomisation_seeds"] == 0


def test_perturbation_batches_fit_half_the_budget_under_the_device_cap() -> None:
    from strokelrp.analysis.assess import MAX_BATCH, batch_for

    assert batch_for(1000, "unlimited", "cpu") == MAX_BATCH["cpu"] == 8
    assert batch_for(1000, "unlimited", "cuda") == MAX_BATCH["other"] == 16  # no GPU touched
    assert batch_for(1000, 6000, "cpu") == 3  # half of 6000 bytes holds three 1000-byte inputs
    assert batch_for(1000, 100, "cpu") == 1  # never below one
    assert batch_for(1000, 10**9, "cuda") == 16


def test_a_2d_network_is_assessed_like_a_3d_one() -> None:
    """A 2-D MONAI U-Net on (C, H, W) slices: every default method gives a (C, H, W) map and
    every measure is defined; a 3-D input for it is one clear error."""
    from monai.networks.nets import BasicUNet

    from strokelrp.analysis.assess import DEFAULT_METHODS, assess
    from strokelrp.attribution import attribute, spatial_rank
    from strokelrp.errors import StrokeLRPError

    torch.manual_seed(0)
    model = BasicUNet(2, 3, 2, features=(4, 4, 4, 4, 4, 4), norm="batch").double().eval()
    assert spatial_rank(model) == 2
    x = torch.zeros(3, 32, 32, dtype=F64)
    x[:, 4:28, 4:28] = torch.rand(3, 24, 24, dtype=F64) + 0.5  # a "brain" inside a zero rim
    with torch.no_grad():  # put about half of the brain in the lesion class
        out = model(x[None])
        model.final_conv.bias[1] -= (out[:, 1] - out[:, 0])[0, 4:28, 4:28].median()
    y = np.zeros((32, 32), bool)
    y[8:20, 8:20] = True
    for method in DEFAULT_METHODS:
        assert attribute(model, x, method).shape == (3, 32, 32), method
    options = {"occlusion": {"patch": (4, 8, 8)}}
    rows, _ = assess(model, x, y, DEFAULT_METHODS, seeds=(1,), random_seeds=2,
                     fractions=(0.01, 0.1), options=options)  # fmt: skip
    assert [r["method"] for r in rows] == list(DEFAULT_METHODS)
    for row in rows:
        for key in ("brain_share", "morf_aopc", "lerf_aopc", "random_aopc", "contrast_rho"):
            assert math.isfinite(row[key]), (row["method"], key)
        assert 0 <= row["brain_share"] <= 1 + 1e-12
    with pytest.raises(StrokeLRPError, match="for this 2-D network"):
        attribute(model, torch.rand(3, 4, 32, 32, dtype=F64), "gradient")
