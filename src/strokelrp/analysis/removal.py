"""What a removed input element becomes: the fills of the perturbation curves (pure numpy).

A perturbation curve removes the most relevant elements (channel x voxel) of x (C, *S) and
scores the model again; what a removed element is replaced by decides what the curve
measures (docs/assess.md, "Removal"). :data:`REMOVALS`:

- ``zero``: 0 (out of distribution for a standardised MR channel: a zero is "very dark");
- ``mean``: the channel's mean over the whole volume (background included);
- ``healthy``: the channel's mean over healthy brain: brain minus the target dilated by
  :data:`HEALTHY_GROW` voxels (:func:`healthy_mean`);
- ``impute``: ROAD-style noisy linear imputation in 3-D (Rong et al., ICML 2022): every removed
  element takes the mean of its non-removed or removed 6-neighbours in the same channel,
  jointly (a sparse linear solve of the discrete Laplace equation with the kept elements as
  boundary values), plus Gaussian noise of :data:`IMPUTE_NOISE` x the channel's standard
  deviation (:func:`linear_imputation`). The removed region then carries no shape the model
  could read ("the hole is where the lesion was"), and its values stay in distribution.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.ndimage import binary_dilation, label
from scipy.sparse.linalg import cg, spsolve

from strokelrp.errors import StrokeLRPError

REMOVALS: tuple[str, ...] = ("zero", "mean", "healthy", "impute")
"""The removal kinds, in table order."""

HEALTHY_GROW = 2
"""The target is grown by this many voxels (6-connected steps) before healthy tissue is
averaged, so that the lesion's rim does not enter the healthy mean."""

IMPUTE_NOISE = 0.01
"""Standard deviation of the imputation noise, in units of the channel's standard deviation
(over the whole volume)."""

CG_RTOL = 1e-12
"""Relative residual at which the imputation's conjugate-gradient solve stops (the solution
then agrees with a direct solve to about 1e-12 of the values; the noise added is 1e-2)."""


def healthy_mask(brain: np.ndarray, target: np.ndarray, grow: int = HEALTHY_GROW) -> np.ndarray:
    """Brain voxels (D, H, W) outside the target grown by ``grow`` voxels; the whole brain
    when that leaves nothing (a target that covers the brain)."""
    grown = binary_dilation(target, iterations=grow) if grow > 0 and target.any() else target
    healthy = brain & ~grown
    return healthy if healthy.any() else brain


def healthy_mean(x: np.ndarray, brain: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-channel mean of x (C, *S) over :func:`healthy_mask` -> (C,); the channel's mean
    over the volume when the brain is empty."""
    mask = healthy_mask(brain, target)
    if not mask.any():
        return x.reshape(x.shape[0], -1).mean(1)
    return x[:, mask].mean(1)


def _neighbour_pairs(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flat index pairs (a, b) of every 6-neighbour (2-D: 4-neighbour) pair of a grid, once."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    heads, tails = [], []
    for axis in range(len(shape)):
        lo = [slice(None)] * len(shape)
        hi = [slice(None)] * len(shape)
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        heads.append(idx[tuple(lo)].ravel())
        tails.append(idx[tuple(hi)].ravel())
    return np.concatenate(heads), np.concatenate(tails)


def _structure(ndim: int) -> np.ndarray:
    """The face-neighbour structuring element of an ``ndim``-D grid."""
    structure = np.zeros((3,) * ndim, bool)
    for axis in range(ndim):
        for step in (0, 1, 2):
            at = [1] * ndim
            at[axis] = step
            structure[tuple(at)] = True
    return structure


def _impute_channel(v: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """One channel v (*S) with the ``removed`` elements solved jointly from the discrete
    Laplace equation (each = the mean of its face neighbours, the kept ones fixed); a removed
    component that touches no kept element takes the mean of the kept ones (0 if none)."""
    out = v.astype(np.float64).copy()
    if not removed.any():
        return out
    kept_mean = float(out[~removed].mean()) if not removed.all() else 0.0
    # only the removed elements' box, one element wider, takes part: the same system
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(removed))
    whole = out
    out, removed = out[box].copy(), removed[box]
    kept = ~removed
    structure = _structure(v.ndim)
    components, _ = label(removed, structure=structure)
    anchored = np.unique(components[binary_dilation(kept, structure=structure) & removed])
    free = removed & ~np.isin(components, anchored[anchored > 0])
    out[free] = kept_mean
    whole[box] = _solve_box(out, removed & ~free)
    return whole


def _solve_box(out: np.ndarray, unknown_mask: np.ndarray) -> np.ndarray:
    """``out`` (*S) with its ``unknown_mask`` elements solved from the discrete Laplace
    equation, the others fixed (:func:`_impute_channel`'s system)."""
    solve = unknown_mask.ravel()
    n = int(solve.sum())
    if n == 0:
        return out
    unknown = np.full(solve.size, -1, np.int64)
    unknown[solve] = np.arange(n)
    flat = out.ravel()
    a, b = _neighbour_pairs(out.shape)
    degree = np.zeros(n)
    rhs = np.zeros(n)
    rows, cols = [np.arange(n)], [np.arange(n)]
    for p, q in ((a, b), (b, a)):
        mine = solve[p]
        np.add.at(degree, unknown[p[mine]], 1.0)
        both = mine & solve[q]
        rows.append(unknown[p[both]])
        cols.append(unknown[q[both]])
        fixed = mine & ~solve[q]  # a kept neighbour (a free one never touches a solved one)
        np.add.at(rhs, unknown[p[fixed]], flat[q[fixed]])
    values = np.concatenate([degree, -np.ones(sum(r.size for r in rows[1:]))])
    matrix = sparse.csr_matrix((values, (np.concatenate(rows), np.concatenate(cols))), (n, n))
    # symmetric positive definite (a Laplacian with fixed values around every component):
    # conjugate gradients to 1e-12 of the right-hand side, 5-15x faster than a direct solve
    # for a lesion's thousands of unknowns; the direct solve when it does not converge
    found, info = cg(matrix, rhs, rtol=CG_RTOL, atol=0.0, maxiter=10 * n)
    flat[solve] = found if info == 0 else spsolve(matrix.tocsc(), rhs)
    return flat.reshape(out.shape)


def linear_imputation(
    x: np.ndarray, removed: np.ndarray, noise: float = IMPUTE_NOISE, seed: int = 0
) -> np.ndarray:
    """x (C, *S) with the ``removed`` elements (C, *S) bool replaced channel by channel by the
    joint solution of "each removed element is the mean of its 6-neighbours" (the kept
    elements fixed), plus N(0, (noise * std_c)^2) noise on the removed elements (std_c the
    channel's standard deviation over the volume; ``seed`` fixes the noise). float64."""
    if x.shape != removed.shape:
        raise StrokeLRPError(
            f"imputation: x and the removed mask must have one shape, got {x.shape} and "
            f"{removed.shape}"
        )
    out = np.stack([_impute_channel(x[c], removed[c]) for c in range(x.shape[0])])
    if noise > 0 and removed.any():
        rng = np.random.default_rng(seed)
        std = x.reshape(x.shape[0], -1).std(1).reshape(-1, *([1] * (x.ndim - 1)))
        scale = np.broadcast_to(noise * std, x.shape)
        out[removed] += rng.standard_normal(int(removed.sum())) * scale[removed]
    return out


def removal_fill(
    kind: str,
    x: np.ndarray,
    removed: np.ndarray,
    brain: np.ndarray | None = None,
    target: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """x (C, *S) with the ``removed`` elements (C, *S) bool replaced as ``kind`` says
    (:data:`REMOVALS`); ``brain`` and ``target`` (*S) bool are needed by ``healthy``."""
    out = np.array(x, dtype=np.float64, copy=True)
    if kind == "impute":
        return linear_imputation(out, removed, seed=seed)
    if kind == "zero":
        values = np.zeros(x.shape[0])
    elif kind == "mean":
        values = out.reshape(x.shape[0], -1).mean(1)
    elif kind == "healthy":
        if brain is None or target is None:
            raise StrokeLRPError("removal 'healthy' needs the brain and target masks")
        values = healthy_mean(out, brain, target)
    else:
        raise StrokeLRPError(f"removal must be one of {', '.join(REMOVALS)}, got {kind!r}")
    full = np.broadcast_to(values.reshape(-1, *([1] * (x.ndim - 1))), x.shape)
    out[removed] = full[removed]
    return out
