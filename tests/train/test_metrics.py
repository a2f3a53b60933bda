"""Segmentation metrics on tiny hand-made masks whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from strokelrp.core.metrics import batch_dice, dice_score, segmentation_metrics, summarize


def masks(shape=(5, 6, 7)) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(shape, bool), np.zeros(shape, bool)


def test_identical_single_voxel() -> None:
    p, t = masks()
    p[1, 2, 3] = t[1, 2, 3] = True
    m = segmentation_metrics(p, t, (0.5, 1.0, 2.0))
    assert m["dice"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert m["hd95_mm"] == 0.0 and m["assd_mm"] == 0.0
    assert m["pred_ml"] == pytest.approx(0.001) and m["true_ml"] == pytest.approx(0.001)


def test_distances_use_the_spacing_of_each_axis() -> None:
    """Voxels 3 slices apart (array axis 0 = z) with z spacing 2 mm: 6 mm, not 1.5 mm."""
    p, t = masks()
    p[1, 2, 3] = True
    t[4, 2, 3] = True
    m = segmentation_metrics(p, t, (0.5, 1.0, 2.0))  # (x, y, z)
    assert m["hd95_mm"] == pytest.approx(6.0)
    assert m["assd_mm"] == pytest.approx(6.0)
    assert m["dice"] == 0.0 and m["precision"] == 0.0 and m["recall"] == 0.0


def test_percentile_and_symmetric_average() -> None:
    """pred = {x=0, x=3}, truth = {x=0}, 1 mm voxels.

    pred->truth distances (0, 3), truth->pred (0): HD95 = max(95th pct of (0, 3) = 2.85, 0);
    symmetric ASSD = mean of all three = 1.0; Dice = 2*1/(2+1).
    """
    p, t = masks((1, 1, 6))
    p[0, 0, 0] = p[0, 0, 3] = True
    t[0, 0, 0] = True
    m = segmentation_metrics(p, t, (1.0, 1.0, 1.0))
    assert m["hd95_mm"] == pytest.approx(2.85)
    assert m["assd_mm"] == pytest.approx(1.0)
    assert m["dice"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == 1.0


def test_partial_overlap_counts() -> None:
    """truth: a 2x2x2 cube (8 voxels); pred: its top half (4) plus 4 voxels elsewhere."""
    p, t = masks((6, 6, 6))
    t[0:2, 0:2, 0:2] = True
    p[0:1, 0:2, 0:2] = True
    p[5, 4:6, 4:6] = True
    m = segmentation_metrics(p, t, (1.0, 1.0, 3.0))
    assert m["dice"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["pred_ml"] == pytest.approx(8 * 3 / 1000) and m["true_ml"] == pytest.approx(0.024)


def test_both_empty() -> None:
    p, t = masks()
    m = segmentation_metrics(p, t, (1.0, 1.0, 1.0))
    assert m["dice"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert math.isnan(m["hd95_mm"]) and math.isnan(m["assd_mm"])
    assert m["pred_ml"] == 0.0 and m["true_ml"] == 0.0


def test_empty_prediction() -> None:
    p, t = masks()
    t[2, 2, 2] = True
    m = segmentation_metrics(p, t, (1.0, 1.0, 1.0))
    assert m["dice"] == 0.0 and m["recall"] == 0.0
    assert math.isnan(m["precision"]) and math.isnan(m["hd95_mm"]) and math.isnan(m["assd_mm"])


def test_empty_truth() -> None:
    p, t = masks()
    p[2, 2, 2] = True
    m = segmentation_metrics(p, t, (1.0, 1.0, 1.0))
    assert m["dice"] == 0.0 and m["precision"] == 0.0
    assert math.isnan(m["recall"]) and math.isnan(m["hd95_mm"])
    assert m["true_ml"] == 0.0 and m["pred_ml"] == pytest.approx(0.001)


def test_bad_inputs_are_named() -> None:
    p, t = masks()
    with pytest.raises(ValueError, match="same shape"):
        segmentation_metrics(p, t[:-1], (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        segmentation_metrics(p, t, (1, 0, 1))


def test_summary_counts_valid_values() -> None:
    rows = [
        {"dice": 1.0, "hd95_mm": math.nan},
        {"dice": 0.5, "hd95_mm": 4.0},
        {"dice": 0.0, "hd95_mm": 2.0},
    ]
    s = summarize(rows)
    assert s["dice"]["mean"] == pytest.approx(0.5) and s["dice"]["sd"] == pytest.approx(0.5)
    assert s["hd95_mm"]["n_valid"] == 2 and s["hd95_mm"]["n"] == 3
    assert s["hd95_mm"]["mean"] == pytest.approx(3.0)


def test_batch_dice_on_device_tensors() -> None:
    pred = torch.zeros(3, 2, 2, 2, dtype=torch.long)
    truth = torch.zeros_like(pred)
    pred[0, 0, 0, 0] = truth[0, 0, 0, 0] = 1  # perfect
    pred[1, 0, 0, 0] = 1  # truth empty -> 0
    # sample 2: both empty -> 1
    assert batch_dice(pred, truth).tolist() == [1.0, 0.0, 1.0]


def test_dice_by_hand_and_empty_mask_convention() -> None:
    """Hand-made masks: |P| = 3, |T| = 2, overlap 1 -> 2 * 1 / 5; both empty -> 1.0 (stated in
    batch_dice's docstring), one empty -> 0.0; numpy arrays and tensors alike."""
    p, t = masks()
    p[0, 0, 0] = p[0, 0, 1] = p[2, 3, 4] = True
    t[0, 0, 0] = t[4, 5, 6] = True
    assert dice_score(p, t) == pytest.approx(0.4, rel=1e-15)
    assert dice_score(torch.from_numpy(p), torch.from_numpy(t)) == pytest.approx(0.4, rel=1e-15)
    assert dice_score(p[::-1], t[::-1]) == pytest.approx(0.4, rel=1e-15)  # negative strides
    empty = np.zeros_like(p)
    assert dice_score(empty, empty) == 1.0
    assert dice_score(p, empty) == 0.0 and dice_score(empty, t) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        dice_score(p, t[:-1])


def test_dice_matches_monai_and_segmentation_metrics() -> None:
    """The one Dice against MONAI's independent implementation, on random masks."""
    from monai.metrics import compute_dice

    rng = np.random.default_rng(0)
    for density in (0.05, 0.3, 0.7):
        p, t = rng.random((2, 6, 7, 8)) < density
        onehot = [torch.from_numpy(np.stack([~m, m]))[None].double() for m in (p, t)]
        reference = float(compute_dice(*onehot, include_background=False, ignore_empty=False))
        assert dice_score(p, t) == pytest.approx(reference, rel=1e-12)
        assert segmentation_metrics(p, t, (1.0, 1.0, 1.0))["dice"] == dice_score(p, t)
