"""The model-running trust measures on hand-computed cases: toy linear models whose right
answers are known."""

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
    ordering,
    random_ordering,
)
from strokelrp.analysis.shares import ablation_rho, abs_modality_shares
from strokelrp.trust.ablation import modality_ablation
from strokelrp.trust.assess import assess
from strokelrp.trust.perturbation import perturbation_curve

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
    mean = perturbation_curve(model, x, weights, order, (0.01,), removal="mean")
    idx = order[:2]
    xm = x.clone().view(2, -1)
    xm.view(-1)[idx] = x[0].mean((1, 2, 3)).repeat_interleave(100)[idx]
    want_mean = (s0 - float((torch.tensor([2.0, 1.0], dtype=F64).view(2, 1) * xm).sum())) / s0
    assert math.isclose(float(mean[0]), want_mean)


def test_curves_batched_together_equal_single_curves_and_skip_unchanged_inputs() -> None:
    """Several curves in one stream of batches give each curve's own drops; a perturbation
    that changes nothing (entries already 0) has drop 0 and costs no forward."""
    from strokelrp.trust.perturbation import Curve, perturbation_curves

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
        Curve(random_ordering(120, 1), removal="mean"),
        Curve(torch.cat([zeros, rest])),  # the zeros first: the small fractions change nothing
    ]
    fractions = (0.05, 0.1, 0.5)
    calls: list[int] = []
    handle = model.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    got = perturbation_curves(model, x, weights, curves, fractions, batch=4)
    handle.remove()
    assert sum(calls) == 1 + 3 * 3 + 1  # S(x), three full curves, one fraction of the last
    for row, c in zip(got, curves, strict=True):
        want = perturbation_curve(model, x, weights, c.order, fractions, c.removal, c.voxel)
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


def test_perturbation_batches_fit_half_the_budget_under_the_device_cap() -> None:
    from strokelrp.trust.assess import MAX_BATCH, batch_for

    assert batch_for(1000, "unlimited", "cpu") == MAX_BATCH["cpu"] == 8
    assert batch_for(1000, "unlimited", "cuda") == MAX_BATCH["other"] == 16  # no GPU touched
    assert batch_for(1000, 6000, "cpu") == 3  # half of 6000 bytes holds three 1000-byte inputs
    assert batch_for(1000, 100, "cpu") == 1  # never below one
    assert batch_for(1000, 10**9, "cuda") == 16


def test_a_2d_network_is_assessed_like_a_3d_one() -> None:
    """A 2-D MONAI U-Net on (C, H, W) slices: every default method gives a (C, H, W) map and
    every measure is defined; a 3-D input for it is one clear error."""
    from monai.networks.nets import BasicUNet

    from strokelrp.attribution import attribute, spatial_rank
    from strokelrp.errors import StrokeLRPError
    from strokelrp.trust.assess import DEFAULT_METHODS, assess

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


def test_fractions_count_relative_to_the_target_and_removals_fill_as_defined() -> None:
    """k = round(f * target voxels * C) elements (f * target voxels for voxel curves); on a
    linear model the drop is the removed elements' sum of w_c (x - fill)."""
    from strokelrp.analysis.removal import healthy_mean
    from strokelrp.trust.perturbation import removed_counts

    assert removed_counts((0.01, 0.5, 2.0, 100.0), 1000, 10, 3, False) == [0, 15, 60, 1000]
    assert removed_counts((0.5, 2.0), 1000, 10, 3, True) == [5, 20]
    assert removed_counts((0.5,), 1000, None, 3, False) == [500]
    w = torch.tensor([2.0, 1.0], dtype=F64)
    model = Linear(w.tolist())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 3, 4, 5, generator=gen, dtype=F64) + 0.1
    weights = torch.zeros(1, 2, 3, 4, 5, dtype=F64)
    weights[:, 1] = 1.0
    brain = np.ones((3, 4, 5), bool)
    target = np.zeros((3, 4, 5), bool)
    target[1, 1:3, 1:3] = True  # 4 voxels, 8 elements
    order = ordering(w.view(2, 1, 1, 1) * x[0], True)
    s0 = float((w.view(2, 1, 1, 1) * x[0]).sum())
    fill = healthy_mean(x[0].numpy(), brain, target)
    got = perturbation_curve(
        model, x, weights, order, (0.5, 1.0), "healthy", unit=4, brain=brain, target=target
    )
    for f, drop in zip((0.5, 1.0), got, strict=True):
        idx = order[: round(f * 8)]
        c = idx // 60
        want = float((w[c] * (x[0].reshape(-1)[idx] - torch.from_numpy(fill)[c])).sum()) / s0
        assert drop == pytest.approx(want, rel=1e-12)


def test_with_reference_adds_the_option_to_methods_that_take_one() -> None:
    from strokelrp.trust.assess import with_reference

    assert with_reference("lrp:epsilon", "healthy") == "lrp:epsilon(reference=healthy)"
    assert with_reference("lrp:epsilon+pass:0,0.4", "mirror") == (
        "lrp:epsilon(reference=mirror)+pass:0,0.4"
    )
    assert with_reference("integrated_gradients(steps=16)", "healthy") == (
        "integrated_gradients(steps=16,reference=healthy)"
    )
    assert with_reference("gradient", "healthy") == "gradient"
    assert with_reference("occlusion(reference=zero)", "healthy") == "occlusion(reference=zero)"
    assert with_reference("lrp:paper", None) == "lrp:paper"


def test_positive_shares_follow_the_data_sets_channel_names() -> None:
    """positive_adc / positive_rcbf read the channels named ADC and rCBF (or CBF) wherever the
    data set puts them, and are NaN where it has none (no fixed six-tuple)."""
    from strokelrp.analysis.localisation import positive_share

    model = Linear([1.0, -2.0, 0.5]).eval()
    x = torch.rand(3, 2, 4, 4, dtype=F64) + 0.1
    y = np.zeros((2, 4, 4), bool)
    y[:, 1:3, 1:3] = True

    def shares(channels: list[str] | None) -> tuple[float, float]:
        rows, _ = assess(
            model,
            x,
            y,
            ["gradient_x_input(reference=zero)"],
            seeds=(1,),
            random_seeds=1,
            extras=False,
            channels=channels,
        )
        return rows[0]["positive_adc"], rows[0]["positive_rcbf"]

    r = (x * torch.tensor([1.0, -2.0, 0.5], dtype=F64)[:, None, None, None]).numpy()
    adc, cbf = shares(["DWI", "ADC", "CBF"])
    assert adc == pytest.approx(positive_share(r, y, 1)) and adc == 0.0  # weight -2: against
    assert cbf == pytest.approx(positive_share(r, y, 2)) and cbf == 1.0
    adc, rcbf = shares(["ADC", "FLAIR", "rCBF"])
    assert adc == 1.0 and rcbf == 1.0
    assert all(math.isnan(v) for v in shares(["T1w", "T2w", "FLAIR"]))
    assert all(math.isnan(v) for v in shares(None))


class Inert(nn.Module):
    """Three named blocks; ``mid``'s output is multiplied by 0 (re-initialising it changes no
    logit), ``head`` maps to the two logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.first = nn.Conv3d(2, 3, 3, padding=1).double()
        self.mid = nn.Conv3d(3, 3, 3, padding=1).double()
        self.head = nn.Conv3d(3, 2, 1).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.first(x))
        return self.head(h + 0.0 * self.mid(h))


def test_cascades_skip_inert_blocks_and_the_model_free_prior_reads_as_unchanged() -> None:
    """Every order's steps; a block whose re-initialisation moves the logits by less than
    LOGIT_CHANGE_MIN is skipped with empty read-outs; the prior (model-free) gets 1 from
    every similarity read-out and 0 from eMPRT; contrast_gradient is the gradient's own
    contrast_rho (computed here independently by autograd)."""
    from strokelrp.analysis.randomisation import LOGIT_CHANGE_MIN
    from strokelrp.analysis.shares import spearman
    from strokelrp.trust.assess import CASCADES

    model = Inert().eval()
    x = torch.rand(2, 4, 6, 6, dtype=F64) + 0.1
    with torch.no_grad():
        out = model(x[None])
        model.head.bias[1] -= (out[:, 1] - out[:, 0]).median()
        y = (model(x[None]).argmax(1) == 1)[0].numpy()
    methods = ["gradient", "locality_prior"]
    rows, steps = assess(
        model, x, y, methods, seeds=(1,), random_seeds=1, fractions=(0.5,), extras=False,
        cascade=True, smprt_samples=2,
    )  # fmt: skip
    by = {(s["method"], s["order"], s["step"]): s for s in steps}
    assert {s["order"] for s in steps} == set(CASCADES)
    assert [by[("gradient", "top_down", k)]["layer"] for k in (1, 2, 3)] == ["head", "mid", "first"]
    assert [by[("gradient", "bottom_up", k)]["layer"] for k in (1, 2, 3)] == [
        "first",
        "mid",
        "head",
    ]
    for order, k in (("top_down", 2), ("bottom_up", 2), ("independent", 2)):
        inert = by[("gradient", order, k)]
        assert inert["layer"] == "mid" and inert["skipped"] == 1
        assert inert["logit_change"] < LOGIT_CHANGE_MIN and "signed_rho" not in inert
    live = by[("gradient", "independent", 1)]
    assert live["skipped"] == 0 and live["logit_change"] > LOGIT_CHANGE_MIN
    assert -1 <= live["signed_rho"] <= 1 and -1 <= live["ssim"] <= 1
    prior = rows[1]
    for key in ("randomisation_signed", "randomisation_shell", "randomisation_ssim", "smprt"):
        assert prior[key] == pytest.approx(1.0), key
    assert prior["emprt"] == 0.0
    assert set(rows[0]["cascade_skipped"].split()) == {"top_down:mid", "bottom_up:mid",
                                                        "independent:mid"}  # fmt: skip
    # the gradient's own class contrast, by autograd
    logits_w = torch.zeros(1, 2, 4, 6, 6, dtype=F64)
    logits_w[0, 1] = torch.from_numpy(y.astype(float))
    grads = []
    for k in (1, 0):
        xg = x[None].clone().requires_grad_(True)
        (model(xg)[0, k] * logits_w[0, 1]).sum().backward()
        grads.append(xg.grad[0])
    from strokelrp.core.masks import brain_mask

    brain = brain_mask(x.numpy())
    want = spearman(grads[0][:, brain].ravel().numpy(), grads[1][:, brain].ravel().numpy())
    assert rows[0]["contrast_gradient"] == pytest.approx(want, abs=1e-9)
    assert rows[0]["contrast_gap"] == pytest.approx(0.0, abs=1e-9)
    assert prior["contrast_gap"] == pytest.approx(1.0 - want)
