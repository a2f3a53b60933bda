"""Where a map puts its relevance, for a segmentation target (pure numpy).

R (C, *S) is summed over channels to a voxel map r (*S) for the voxel-level measures. For a
segmentation network explained on its own predicted lesion, in-mask localisation is near
tautological (every local method puts relevance where the explained logits are); these
measures say more against the ground truth and beside the locality prior (docs/assess.md,
"Localisation").

- :func:`mass_accuracy`: relevance mass accuracy (Arras et al., Information Fusion 2022):
  sum of positive r inside the mask / sum of positive r;
- :func:`rank_accuracy`: relevance rank accuracy (ibid.): of the K = |mask| voxels of highest
  r, the share inside the mask;
- :func:`pointing_game`: 1 when the voxel of highest r is inside the mask, else 0;
- :func:`context_share`: share of the positive r outside the predicted lesion (context);
- :func:`positive_share`: of one channel's |R| inside a mask, the share that is positive
  (evidence *for* the target relative to the map's reference).
"""

from __future__ import annotations

import math

import numpy as np


def _voxels(r: np.ndarray) -> np.ndarray:
    return np.asarray(r, dtype=np.float64).sum(0)


def mass_accuracy(r: np.ndarray, mask: np.ndarray) -> float:
    """Positive relevance inside ``mask`` (*S) / all positive relevance, voxel level; NaN when
    r (C, *S) has none."""
    pos = np.clip(_voxels(r), 0, None)
    total = pos.sum()
    return float(pos[mask].sum() / total) if total > 0 else math.nan


def rank_accuracy(r: np.ndarray, mask: np.ndarray) -> float:
    """Share of the K = mask.sum() highest-relevance voxels that lie in ``mask``; ties at the
    K-th value count fractionally (each tied voxel weighs the places left / the ties). NaN
    for an empty mask."""
    k = int(mask.sum())
    if k == 0:
        return math.nan
    v = _voxels(r).ravel()
    m = np.asarray(mask, bool).ravel()
    threshold = np.sort(v)[::-1][k - 1]
    above = v > threshold
    tied = v == threshold
    places = k - int(above.sum())
    hits = (above & m).sum() + places * (tied & m).sum() / tied.sum()
    return float(hits / k)


def pointing_game(r: np.ndarray, mask: np.ndarray) -> float:
    """1.0 when a voxel of maximal relevance lies in ``mask`` (any of several tied maxima),
    else 0.0; NaN for an empty mask."""
    if not mask.any():
        return math.nan
    v = _voxels(r)
    return float(bool(mask[v == v.max()].any()))


def context_share(r: np.ndarray, lesion: np.ndarray) -> float:
    """Share of the positive voxel relevance outside ``lesion`` (the predicted lesion); NaN
    without positive relevance."""
    inside = mass_accuracy(r, lesion)
    return 1.0 - inside if not math.isnan(inside) else math.nan


def positive_share(r: np.ndarray, mask: np.ndarray, channel: int) -> float:
    """Of channel ``channel``'s |R| inside ``mask``, the share that is positive; NaN when the
    channel has no relevance there."""
    v = np.asarray(r, dtype=np.float64)[channel][mask]
    total = np.abs(v).sum()
    return float(np.clip(v, 0, None).sum() / total) if total > 0 else math.nan
