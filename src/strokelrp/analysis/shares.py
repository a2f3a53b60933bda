"""Where the relevance goes: each modality's share, the lesion's share, against ablation.

Positive relevance (evidence *for* the lesion), ``R+ = max(R, 0)``, unless said otherwise:

- modality share of channel c: ``sum R+_c / sum_c' sum R+_c'`` (the shares of one map sum to 1);
- lesion share of channel c: ``sum_{lesion} R+_c / sum R+_c`` (how much of the channel's
  positive relevance lies inside the lesion mask);
- per map, the shares against the modalities' ablation drops (the Dice drop when a modality
  is mean-filled, :mod:`strokelrp.trust.ablation`): ``ablation_rho``, the Spearman
  correlation of the shares of **|R|** (:func:`abs_modality_shares`; the one definition of
  ``strokelrp assess`` and of the sweep) with the drops, and the share of positive relevance
  on the modalities the model ignores against the uniform expectation.

What a model uses is measured, not taken from the data generator's intent: a modality
stripped of its lesion signature may still carry anatomy the model relies on.
:func:`spearman` is the project's one rank correlation (assess uses it too).

Undefined ratios (no positive relevance at all) are NaN, never a silent 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from strokelrp.analysis._arrays import require_ndim, to_float64, to_numpy
from strokelrp.errors import StrokeLRPError

IGNORED_DROP = 0.01
"""A modality whose mean-filling changes the Dice by less than this counts as ignored."""


def _nan_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=np.broadcast_to(den > 0, out.shape))
    return out


def positive_relevance(relevance: Any) -> np.ndarray:
    """Sum of ``max(R, 0)`` over the volume: (C, D, H, W) -> (C,), (K, C, D, H, W) -> (K, C)."""
    r = to_float64(relevance, "relevance")
    require_ndim(r, (4, 5), "relevance", "(C, D, H, W) or (K, C, D, H, W)")
    return np.clip(r, 0.0, None).sum(axis=(-3, -2, -1))


def modality_shares(relevance: Any) -> np.ndarray:
    """Each channel's share of the map's positive relevance: (…, C, D, H, W) -> (…, C).

    The shares of one map sum to 1; a map without positive relevance gives NaN.
    """
    pos = positive_relevance(relevance)
    return _nan_divide(pos, pos.sum(axis=-1, keepdims=True))


def abs_modality_shares(relevance: Any) -> np.ndarray:
    """Each channel's share of the map's |R|: (…, C, D, H, W) -> (…, C) (sum 1 per map; NaN
    for an all-zero map). The modality shares that :func:`ablation_rho` ranks."""
    r = to_float64(relevance, "relevance")
    require_ndim(r, (4, 5), "relevance", "(C, D, H, W) or (K, C, D, H, W)")
    a = np.abs(r).sum(axis=(-3, -2, -1))
    return _nan_divide(a, a.sum(axis=-1, keepdims=True))


def ablation_rho(abs_shares: Sequence[float], drops: Sequence[float]) -> float:
    """The modality-truth measure of one map: Spearman between the modalities' shares of |R|
    (:func:`abs_modality_shares`) and their ablation Dice drops
    (:func:`strokelrp.trust.ablation.modality_ablation`); NaN when either is constant."""
    return spearman(abs_shares, drops)


def lesion_shares(relevance: Any, label: Any) -> np.ndarray:
    """Per channel, the share of positive relevance inside the lesion: (…, C, D, H, W) -> (…, C).

    ``label``: (D, H, W), lesion where non-zero. A channel without positive relevance gives NaN;
    an empty label gives 0 where the channel has positive relevance.
    """
    r = to_float64(relevance, "relevance")
    require_ndim(r, (4, 5), "relevance", "(C, D, H, W) or (K, C, D, H, W)")
    lesion = to_numpy(label, "label")
    require_ndim(lesion, (3,), "label", "(D, H, W)")
    if lesion.shape != r.shape[-3:]:
        raise StrokeLRPError(
            f"relevance {tuple(r.shape)} and label {tuple(lesion.shape)} must share (D, H, W)"
        )
    pos = np.clip(r, 0.0, None)
    inside = (pos * (lesion != 0)).sum(axis=(-3, -2, -1))
    return _nan_divide(inside, pos.sum(axis=(-3, -2, -1)))


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n of v (n,), tied values sharing the mean of their ranks (numpy only: the
    import of ``scipy.stats`` for ``rankdata`` alone took 0.6 s of every assessment)."""
    order = np.argsort(v, kind="stable")
    ordered = v[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], v.size)  # each tie group holds sorted positions start..end-1
    group = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(v.size)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of two equally long 1-D vectors: the Pearson correlation of
    their ranks (average ranks for ties); NaN when either side is constant or has NaN."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise StrokeLRPError(f"spearman needs two equal 1-D sequences, got {x.shape}, {y.shape}")
    if np.isnan(x).any() or np.isnan(y).any():
        return math.nan
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / den) if den > 0 else math.nan


def share_summary(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per series and setting, from sweep-table rows: where the positive relevance goes.

    Modality shares are judged against what the model uses, measured by ablation (the
    ``ablation_drop`` column: the Dice drop when the modality is mean-filled), not against what
    the data generator meant a modality to carry. For each (run, case, setting) map:

    - ``ablation_rho``: :func:`ablation_rho`, Spearman between the 6 modality shares of |R|
      (``abs_share``) and the 6 ablation drops (the definition of ``strokelrp assess``);
    - ``ignored_share``: the share of positive relevance on the modalities the model ignores
      (``|drop|`` below
      :data:`IGNORED_DROP`), against ``ignored_uniform``
      = n_ignored / C, what a map blind to the modalities would put there (only for cases
      where some, not all, modalities are ignored);
    - ``lesion_share``: ``sum_c share_c * lesion_share_c``.

    Returns one dict per (series, setting) with the means over maps (NaN when undefined) and
    the counts ``n_maps``, ``n_ablation_maps`` (maps with ablation drops and |R| shares) and
    ``n_ignored_maps``.
    """
    maps: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        maps.setdefault((row["series"], row["setting"], row["run"], row["case"]), []).append(row)
    groups: dict[tuple[Any, Any], dict[str, list[float]]] = {}
    for (series, setting, _run, _case), channel_rows in maps.items():
        acc = groups.setdefault(
            (series, setting),
            {"rho": [], "abl": [], "ign": [], "uni": [], "lesion": [], "n": []},
        )
        acc["n"].append(1.0)
        drops = [float(r.get("ablation_drop", math.nan)) for r in channel_rows]
        measured = not any(math.isnan(d) for d in drops)  # not: a table from before them
        abs_shares = [float(r.get("abs_share", math.nan)) for r in channel_rows]
        if measured and not any(math.isnan(s) for s in abs_shares):
            acc["abl"].append(1.0)
            rho = ablation_rho(abs_shares, drops)
            if not math.isnan(rho):  # all drops equal: the model's use gives no ranking
                acc["rho"].append(rho)
        shares = [float(r["relevance_share"]) for r in channel_rows]
        if any(math.isnan(s) for s in shares):
            continue  # no positive relevance in this map: nothing to share out
        lesion = sum(
            s * float(r["lesion_share"]) for s, r in zip(shares, channel_rows, strict=True) if s > 0
        )
        acc["lesion"].append(lesion)
        if not measured:
            continue
        ignored = [abs(d) < IGNORED_DROP for d in drops]
        if any(ignored) and not all(ignored):
            acc["ign"].append(sum(s for s, f in zip(shares, ignored, strict=True) if f))
            acc["uni"].append(sum(ignored) / len(ignored))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    return [
        {
            "series": series,
            "setting": setting,
            "ablation_rho": mean(acc["rho"]),
            "ignored_share": mean(acc["ign"]),
            "ignored_uniform": mean(acc["uni"]),
            "lesion_share": mean(acc["lesion"]),
            "n_maps": len(acc["n"]),
            "n_ablation_maps": len(acc["abl"]),
            "n_ignored_maps": len(acc["ign"]),
        }
        for (series, setting), acc in groups.items()
    ]
