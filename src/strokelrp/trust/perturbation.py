"""Perturbation curves: remove the most relevant input elements and score the model again.

x_k = x with the first k entries of an ordering removed (replaced as the curve's removal
kind says, :mod:`strokelrp.analysis.removal`); the curve is the relative drop
(S(x) - S(x_k)) / |S(x)| over a grid of fractions. Fractions count relative to the target:
k = round(f * n_target), n_target the target's channel x voxel elements (its voxels for a
voxel-level curve), so that a small lesion's curve is not saturated at its first point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from strokelrp.analysis.removal import REMOVALS, removal_fill
from strokelrp.attribution import score
from strokelrp.device import batched_layout
from strokelrp.errors import StrokeLRPError


@dataclass(frozen=True)
class Curve:
    """One perturbation curve: an ``order`` of elements (C*D*H*W,) or, with ``voxel``, of
    voxels (D*H*W,), and the ``removal`` kind of :data:`strokelrp.analysis.removal.REMOVALS`."""

    order: Tensor
    voxel: bool = False
    removal: str = "zero"


def removed_counts(
    fractions: Sequence[float], n: int, unit: int | None, channels: int, voxel: bool
) -> list[int]:
    """k per fraction: round(f * unit) (``unit``: the target's voxels; times ``channels`` for an
    element-level curve), or round(f * n) without a unit; at most n."""
    base = n if unit is None else unit * (1 if voxel else channels)
    return [min(n, round(f * base)) for f in fractions]


def perturbation_curves(
    model: nn.Module,
    x: Tensor,
    weights: Tensor,
    curves: Sequence[Curve],
    fractions: Sequence[float],
    batch: int = 8,
    s0: float | None = None,
    unit: int | None = None,
    brain: np.ndarray | None = None,
    target: np.ndarray | None = None,
) -> np.ndarray:
    """Relative drops (S(x) - S(x_k)) / |S(x)| of several curves: (len(curves), len(fractions)).

    x (1, C, *S); k per :func:`removed_counts` (``unit``: the target's voxel count, None: the
    fractions are of all n entries). ``brain``, ``target`` (*S) bool: for the ``healthy``
    removal. The perturbed inputs of all curves go through the model together, ``batch`` at a
    time (:func:`strokelrp.device.batched_layout`); an input the removal leaves unchanged has
    drop 0 and costs no forward. The imputation's noise is seeded by the fraction's index.
    ``s0``: S(x) when known. NaN rows when S(x) = 0.
    """
    if batch < 1:
        raise StrokeLRPError(f"perturbation batch must be >= 1, got {batch}")
    for curve in curves:
        if curve.removal not in REMOVALS:
            raise StrokeLRPError(
                f"removal must be one of {', '.join(REMOVALS)}, got {curve.removal!r}"
            )
    c = x.shape[1]
    out = np.zeros((len(curves), len(fractions)))
    x0 = x[0].detach().double().cpu().numpy()
    with torch.no_grad():
        if s0 is None:
            s0 = float(score(model, batched_layout(x), weights)[0])
        if s0 == 0:
            return np.full(out.shape, math.nan)
        jobs: list[tuple[int, int, np.ndarray]] = []  # (curve, fraction, perturbed x (C, *S))
        for i, curve in enumerate(curves):
            order = curve.order.cpu().numpy()
            ks = removed_counts(fractions, order.size, unit, c, curve.voxel)
            for j, k in enumerate(ks):
                removed = np.zeros(order.size, bool)
                removed[order[:k]] = True
                if curve.voxel:
                    removed = np.broadcast_to(removed.reshape(x0.shape[1:]), x0.shape)
                else:
                    removed = removed.reshape(x0.shape)
                filled = removal_fill(curve.removal, x0, removed, brain, target, seed=j)
                if np.array_equal(filled, x0):
                    continue  # x_k == x: drop 0, no forward
                jobs.append((i, j, filled))
        for start in range(0, len(jobs), batch):
            part = jobs[start : start + batch]
            xb = torch.from_numpy(np.stack([p[2] for p in part])).to(x)
            s = score(model, batched_layout(xb), weights.expand(len(part), *weights.shape[1:]))
            for n, (i, j, _) in enumerate(part):
                out[i, j] = (s0 - float(s[n])) / abs(s0)
    return out


def perturbation_curve(
    model: nn.Module,
    x: Tensor,
    weights: Tensor,
    order: Tensor,
    fractions: Sequence[float],
    removal: str = "zero",
    voxel: bool = False,
    batch: int = 8,
    unit: int | None = None,
    brain: np.ndarray | None = None,
    target: np.ndarray | None = None,
) -> np.ndarray:
    """One curve of :func:`perturbation_curves`: (F,)."""
    return perturbation_curves(
        model,
        x,
        weights,
        [Curve(order, voxel, removal)],
        fractions,
        batch,
        unit=unit,
        brain=brain,
        target=target,
    )[0]
