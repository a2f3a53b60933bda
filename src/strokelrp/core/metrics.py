"""Segmentation metrics of the ISLES 2017 challenge, in millimetres, through MONAI.

``segmentation_metrics(pred, truth, spacing)`` compares two binary masks ``(D, H, W)`` (array
axes z, y, x) whose voxel size ``spacing`` is given as the NIfTI header's (x, y, z) in mm.

Conventions for empty masks (a case with no lesion, or a network that predicts none):

- ``dice``: 1.0 when both masks are empty, 0.0 when exactly one is (MONAI's
  ``ignore_empty=False``). :func:`batch_dice` is the one Dice of the package (training logs,
  ``metrics.csv``, the sweep's ``case_dice``, ``explain``'s ``dice``); :func:`dice_score` is
  its one-case form for arrays.
- ``hd95_mm`` and ``assd_mm``: NaN when either mask is empty (no surface to measure from).
- ``precision`` = TP / |pred| and ``recall`` = TP / |truth|: NaN when the denominator is empty,
  except that both are 1.0 when both masks are empty (consistent with Dice).
- ``pred_ml`` and ``true_ml``: always defined (0.0 for an empty mask).

:func:`summarize` gives mean, SD and the count of valid (non-NaN) values per metric.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch

METRICS: tuple[str, ...] = (
    "dice",
    "hd95_mm",
    "assd_mm",
    "precision",
    "recall",
    "pred_ml",
    "true_ml",
)


def _one_hot(mask: np.ndarray) -> torch.Tensor:
    """(D, H, W) bool -> (1, 2, D, H, W) float, the layout MONAI's metrics expect."""
    m = torch.from_numpy(np.ascontiguousarray(mask))
    return torch.stack([~m, m])[None].float()


def segmentation_metrics(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]
) -> dict[str, float]:
    """Dice, HD95 and ASSD (mm), precision, recall and volumes (mL) of one case.

    ``pred``, ``truth``: bool (or 0/1) arrays (D, H, W) on the same grid; ``spacing``: voxel
    size in mm as (x, y, z), i.e. for the array axes in reverse order. Example::

        >>> p = np.zeros((3, 4, 4), bool); p[1, 1, 1] = True
        >>> segmentation_metrics(p, p, (1.0, 1.0, 2.0))["dice"]
        1.0
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(
            f"pred and truth must be 3-D masks of the same shape, got {pred.shape} and "
            f"{truth.shape}"
        )
    if len(spacing) != 3 or not all(float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive sizes (x, y, z) in mm, got {spacing}")
    pred, truth = pred.astype(bool), truth.astype(bool)
    zyx = tuple(float(s) for s in reversed(tuple(spacing)))
    voxel_ml = float(np.prod(zyx)) / 1000.0
    n_pred, n_true = int(pred.sum()), int(truth.sum())
    tp = int(np.logical_and(pred, truth).sum())
    out = {
        "pred_ml": n_pred * voxel_ml,
        "true_ml": n_true * voxel_ml,
        "precision": tp / n_pred if n_pred else math.nan,
        "recall": tp / n_true if n_true else math.nan,
    }
    if n_pred == 0 and n_true == 0:
        out.update(dice=1.0, precision=1.0, recall=1.0, hd95_mm=math.nan, assd_mm=math.nan)
        return {k: out[k] for k in METRICS}

    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    p, t = _one_hot(pred), _one_hot(truth)
    out["dice"] = dice_score(pred, truth)
    if n_pred == 0 or n_true == 0:
        out["hd95_mm"] = out["assd_mm"] = math.nan
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI's deprecation chatter, not about our data
            hd = compute_hausdorff_distance(p, t, percentile=95, spacing=zyx)
            asd = compute_average_surface_distance(p, t, symmetric=True, spacing=zyx)
        out["hd95_mm"], out["assd_mm"] = float(hd), float(asd)
    return {k: out[k] for k in METRICS}


def summarize(rows: Iterable[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric: ``mean``, ``sd`` (sample SD, ddof 1; NaN below two values) and ``n_valid``."""
    rows = list(rows)
    summary = {}
    for name in METRICS:
        values = np.array([r[name] for r in rows if name in r], dtype=float)
        valid = values[~np.isnan(values)]
        summary[name] = {
            "mean": float(valid.mean()) if valid.size else math.nan,
            "sd": float(valid.std(ddof=1)) if valid.size > 1 else math.nan,
            "n_valid": int(valid.size),
            "n": int(values.size),
        }
    return summary


def batch_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Hard Dice 2 |P ∩ T| / (|P| + |T|) per sample of (B, ...) masks; (B,) float64.

    ``pred``, ``truth``: bool or 0/1 tensors of the same shape (B, D, H, W) (any shape after
    the batch axis). Empty-mask convention: **1.0 when both masks are empty** (the network
    correctly predicts no lesion), 0.0 when exactly one is (MONAI's ``ignore_empty=False``).
    Stays on the tensors' device (no host sync), for logging during training. Example::

        >>> batch_dice(torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]),
        ...            torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]])).tolist()
        [0.6666666666666666, 1.0]
    """
    if pred.shape != truth.shape or pred.dim() < 1:
        raise ValueError(
            f"pred and truth must be masks of the same shape (B, ...), got {tuple(pred.shape)} "
            f"and {tuple(truth.shape)}"
        )
    p, t = pred.bool().flatten(1), truth.bool().flatten(1)
    inter = (p & t).sum(1).double()
    total = p.sum(1).double() + t.sum(1).double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def dice_score(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> float:
    """Hard Dice of one case's two masks (D, H, W) (bool or 0/1 arrays or tensors), as
    :func:`batch_dice`: 1.0 when both masks are empty, 0.0 when exactly one is."""

    def tensor(m: np.ndarray | torch.Tensor) -> torch.Tensor:
        return m if isinstance(m, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(m))

    return float(batch_dice(tensor(pred)[None], tensor(truth)[None])[0])
