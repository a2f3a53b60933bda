"""Can a relevance map be trusted? The pure measures of maps, curves and tables.

Functions of arrays R (C, D, H, W), x, masks and perturbation drops; definitions and
references in docs/assess.md. The model-running half (maps, perturbations, randomisation) is
:mod:`strokelrp.trust.assess`; :func:`summarize_methods` reads ``assess.csv`` rows back into
verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_dilation
from torch import Tensor

from strokelrp.analysis.removal import REMOVALS
from strokelrp.core.masks import brain_mask
from strokelrp.trust_measures import MEASURES


def _randomisation_summary(rhos: Sequence[float]) -> dict[str, float | int]:
    """Mean, min and max of the per-seed randomisation correlations over the seeds where it is
    defined, and their count. A re-initialised model whose map is constant in the brain (e.g.
    no relevance at all) gives an undefined correlation: it is left out, which can only raise
    the mean (a conservative reading: the map looks more model-independent, not less); NaN
    when no seed gives a defined value."""
    defined = [float(v) for v in rhos if not math.isnan(v)]
    if not defined:
        return {
            "randomisation_rho": math.nan,
            "randomisation_rho_min": math.nan,
            "randomisation_rho_max": math.nan,
            "randomisation_seeds": 0,
        }
    return {
        "randomisation_rho": float(np.mean(defined)),
        "randomisation_rho_min": min(defined),
        "randomisation_rho_max": max(defined),
        "randomisation_seeds": len(defined),
    }


FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Removed elements as shares of the target's own channel x voxel elements (of its voxels for
a voxel-level curve): 1 % to 200 % of the lesion, so that a small lesion's curve is not
saturated at its first point (docs/assess.md, "Fractions")."""

REMOVAL = "impute"
"""The removal kind of the main AOPC columns (docs/assess.md, "Removal": chosen by
measurement); the others are extras."""


def variants(removal: str = REMOVAL) -> dict[str, tuple[str, str]]:
    """The curve variants: name -> (level, removal). ``element`` and ``voxel`` use the main
    ``removal``; every other removal kind is an element-level variant of its own name."""
    out = {"element": ("element", removal), "voxel": ("voxel", removal)}
    out |= {r: ("element", r) for r in REMOVALS if r != removal}
    return out


def variant_of(name: str, removal: str = REMOVAL) -> tuple[str, str]:
    """(level, removal) of a variant name (:func:`variants`)."""
    return variants(removal)[name]


def extra_columns(removal: str = REMOVAL) -> tuple[str, ...]:
    """The extra AOPC columns: the voxel-level curve, and MoRF / random / prior under every
    other removal kind."""
    cols = ["morf_aopc_voxel", "random_aopc_voxel"]
    for r in REMOVALS:
        if r != removal:
            cols += [f"morf_aopc_{r}", f"random_aopc_{r}", f"prior_aopc_{r}"]
    return tuple(cols)


COLUMNS: tuple[str, ...] = ("case", "method", *MEASURES)
"""The first columns of ``assess.csv``, in this order (the measures:
:data:`strokelrp.trust_measures.MEASURES`)."""

EXTRA_COLUMNS: tuple[str, ...] = (
    *extra_columns(),
    "mass_accuracy",
    "rank_accuracy",
    "pointing_game",
    "context_share",
    "positive_adc",
    "positive_rcbf",
    "prior_rho",
    "randomisation_rho_min",
    "randomisation_rho_max",
    "randomisation_seeds",
    "randomisation_signed",
    "randomisation_shell",
    "randomisation_ssim",
    "emprt",
    "smprt",
    "contrast_gradient",
    "contrast_gap",
    "cascade_skipped",
    "target_voxels",
    "target_score",
    "seconds",
    "map_seconds",
)
"""Further columns: voxel-level AOPC and the AOPCs under the other removal kinds, the
localisation measures (:mod:`strokelrp.analysis.localisation`; against the label), the
positive share of ADC's and rCBF's relevance in the lesion, Spearman
with the locality prior, the spread of randomisation over seeds and how many seeds gave a
defined correlation, the read-outs of randomisation that see the model (signed, shell-wise,
SSIM, eMPRT, sMPRT; :mod:`strokelrp.analysis.randomisation`), the gradient's class contrast
on the same case and the method's difference from it, the cascade steps skipped because
their blocks barely change the logits (``order:block``, space-separated; empty without a
cascade), the target's size and value, timings."""


# ---------------------------------------------------------------------------- the measures


def _np(t: Tensor | np.ndarray) -> np.ndarray:
    return t.detach().double().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t, float)


def brain_share(r: Tensor | np.ndarray, x: Tensor | np.ndarray) -> float:
    """Share of sum |R| on brain voxels (:func:`strokelrp.core.masks.brain_mask` of x:
    a perfusion channel is non-zero); NaN for an all-zero map. r, x (C, D, H, W)."""
    a = np.abs(_np(r))
    total = a.sum()
    if total == 0:
        return math.nan
    return float(a[:, brain_mask(_np(x))].sum() / total)


def dilate(mask: np.ndarray, voxels: int = 1) -> np.ndarray:
    """``mask`` (D, H, W) grown by ``voxels`` (6-connected steps)."""
    return binary_dilation(mask, iterations=voxels) if voxels > 0 and mask.any() else mask


def lesion_share(r: Tensor | np.ndarray, target: np.ndarray, grow: int = 1) -> float:
    """Share of the positive relevance on the target voxels dilated by ``grow`` voxels;
    NaN when the map has no positive relevance. r (C, D, H, W), target (D, H, W) bool."""
    pos = np.clip(_np(r), 0, None)
    total = pos.sum()
    if total == 0:
        return math.nan
    return float(pos[:, dilate(np.asarray(target, bool), grow)].sum() / total)


def ordering(r: Tensor, most_first: bool = True, voxel: bool = False, seed: int = 0) -> Tensor:
    """Indices into the flattened elements (C*D*H*W,) or voxels (D*H*W,) of r (C, D, H, W),
    most (or least) relevant first; ties are broken by a fixed random permutation."""
    score_ = r.sum(0) if voxel else r
    flat = score_.reshape(-1).double().cpu()
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(flat.numel(), generator=gen)
    order = torch.argsort(flat[perm], descending=most_first, stable=True)
    return perm[order]


def random_ordering(n: int, seed: int) -> Tensor:
    """A random ordering of ``n`` indices (seeded)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def aopc(drops: np.ndarray) -> float:
    """Area over the perturbation curve: the mean relative drop over the fractions."""
    return float(np.mean(drops))


CURVE_COLUMNS: tuple[str, ...] = (
    "case",
    "method",
    "order",
    "level",
    "baseline",
    "seed",
    "fraction",
    "drop",
)
"""The columns of ``assess_curves.csv``: one row per point of a perturbation curve."""


def curve_points(
    method: str,
    order: str,
    variant: str,
    fractions: Sequence[float],
    drops: np.ndarray,
    seed: int | None = None,
    removal: str = REMOVAL,
) -> list[dict[str, Any]]:
    """The rows of one curve for ``assess_curves.csv`` (without ``case``): ``order`` is
    ``morf``, ``lerf`` or ``random`` (with its ``seed``), ``variant`` a key of
    :func:`variants` (``removal``: the main removal kind); ``drops`` (F,) as
    :func:`strokelrp.trust.perturbation.perturbation_curve` returns them. The ``baseline``
    column holds the removal kind."""
    level, baseline = variant_of(variant, removal)
    head = {"method": method, "order": order, "level": level, "baseline": baseline, "seed": seed}
    return [head | {"fraction": f, "drop": float(d)} for f, d in zip(fractions, drops, strict=True)]


def within(mask: np.ndarray, r: Tensor | np.ndarray, absolute: bool = True) -> np.ndarray:
    """The map's values (|R| by default) at the mask's voxels, every channel: (C * n,)."""
    a = _np(r)
    return (np.abs(a) if absolute else a)[:, mask].ravel()


# ------------------------------------------------------------------------------ verdicts

PRIOR_GAP_BOUND = 0.0
"""The faithfulness check's bound: the 95 % interval of the mean prior_gap (the map's MoRF
AOPC minus the model-free locality prior's on the same case) must lie above it
(docs/assess.md, "The faithfulness check": the measurement behind the choice)."""

RANDOMISATION_BOUND = 0.5
"""The randomisation check's bound: the 95 % interval of the mean ``randomisation_shell``
(Spearman of the signed maps of the trained and a fully re-initialised model within
distance-to-target shells) must lie below it (docs/assess.md, "Randomisation": the
measurement behind the choice)."""

CONTRAST_BOUND = 0.5
"""The contrast check's bound: the 95 % interval of the mean ``contrast_gap`` (the method's
contrast_rho minus the gradient's on the same case) must lie inside [-bound, bound]
(docs/assess.md, "Class contrast")."""

CHECKS: dict[str, str] = {
    "brain_share": "95 % interval of mean brain_share above 0.9",
    "lesion_share": "95 % interval of mean lesion_share above 0.5",
    "faithful": f"95 % interval of mean prior_gap above {PRIOR_GAP_BOUND:g} "
    "(MoRF AOPC beats the locality prior's)",
    "beats_random": "95 % interval of mean random_gap above 0 (MoRF AOPC beats random orders)",
    "randomisation": f"95 % interval of mean randomisation_shell below {RANDOMISATION_BOUND:g} "
    "(the map changes when the weights are re-initialised, distance to the target held fixed)",
    "contrast": f"95 % interval of mean contrast_gap inside [-{CONTRAST_BOUND:g}, "
    f"{CONTRAST_BOUND:g}] (lesion-vs-background correlation within {CONTRAST_BOUND:g} of the "
    "gradient's on the same case)",
    "ablation": "95 % interval of mean ablation_rho above 0.4",
}
"""The checks a default configuration must pass on held-out cases; each rests on the
bootstrap interval of its mean over cases
(:func:`strokelrp.analysis.statistics.bootstrap_interval`)."""

CHECK_MEASURES: dict[str, str] = {
    "brain_share": "brain_share",
    "lesion_share": "lesion_share",
    "faithful": "prior_gap",
    "beats_random": "random_gap",
    "randomisation": "randomisation_shell",
    "contrast": "contrast_gap",
    "ablation": "ablation_rho",
}
"""The measure each check of :data:`CHECKS` reads."""

CHECK_EXTRAS: tuple[str, ...] = (
    "prior_rho",
    "randomisation_signed",
    "randomisation_shell",
    "randomisation_ssim",
    "emprt",
    "smprt",
    "contrast_gradient",
    "contrast_gap",
)
"""Columns beyond :data:`strokelrp.trust_measures.MEASURES` that the summaries give a mean and
interval (the checks' and the randomisation read-outs')."""


def _floats(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    out = []
    for row in rows:
        value = row.get(key)
        if value in (None, ""):
            continue
        v = float(value)  # type: ignore[arg-type]
        if not math.isnan(v):
            out.append(v)
    return out


def summarize_methods(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method (first-seen order): per measure its mean over cases and the 95 % bootstrap
    interval (``<measure>_low``, ``<measure>_high``), the median MoRF / random ratio, each of
    :data:`CHECKS` passed or not (``<check>_ok``, on the interval; an undefined interval
    fails) and ``passes`` (all of them).

    ``rows`` as :func:`strokelrp.trust.assess.assess` returns them or as read back from
    ``assess.csv`` (strings).
    """
    from strokelrp.analysis.statistics import bootstrap_interval

    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_method.setdefault(str(row["method"]), []).append(row)
    out = []
    for method, group in by_method.items():
        s: dict[str, Any] = {"method": method, "cases": len(group)}
        for key in (*MEASURES, *CHECK_EXTRAS):
            s[key], s[f"{key}_low"], s[f"{key}_high"] = bootstrap_interval(_floats(group, key))
        ratios = [
            float(r["morf_aopc"]) / float(r["random_aopc"])
            for r in group
            if r.get("morf_aopc") not in (None, "")
            and r.get("random_aopc") not in (None, "")
            and float(r["random_aopc"]) > 0
        ]
        s["morf_over_random"] = float(np.median(ratios)) if ratios else math.nan
        s["brain_share_ok"] = s["brain_share_low"] >= 0.9
        s["lesion_share_ok"] = s["lesion_share_low"] >= 0.5
        s["faithful_ok"] = s["prior_gap_low"] > PRIOR_GAP_BOUND
        s["beats_random_ok"] = s["random_gap_low"] > 0
        s["randomisation_ok"] = s["randomisation_shell_high"] < RANDOMISATION_BOUND
        s["contrast_ok"] = (
            s["contrast_gap_low"] >= -CONTRAST_BOUND and s["contrast_gap_high"] <= CONTRAST_BOUND
        )
        s["ablation_ok"] = s["ablation_rho_low"] >= 0.4
        s["passes"] = all(s[f"{k}_ok"] for k in CHECKS)
        out.append(s)
    return out
