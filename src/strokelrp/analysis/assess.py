"""Can a relevance map be trusted? Sanity, faithfulness, localisation and modality measures.

Pure functions of a model, an input x (C, D, H, W), its label y (D, H, W) and maps
R (C, D, H, W); definitions and references in docs/assess.md. :func:`assess` runs them all
for one case and a list of methods (:mod:`strokelrp.attribution`) and returns one row per
method with :data:`COLUMNS` first.

Every map explains the same scalar S = sum(W * logits) with W fixed from the trained model's
prediction (so a re-initialised model or a perturbed input is scored on the same voxels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_dilation
from scipy.stats import spearmanr
from torch import Tensor, nn

from strokelrp.attribution import (
    attribute,
    locality_prior,
    parse_method,
    reinitialised,
    score,
)
from strokelrp.data.preprocess import brain_mask
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.engine import BACKGROUND, LESION
from strokelrp.train.metrics import dice_score
from strokelrp.trust_measures import MEASURES

COLUMNS: tuple[str, ...] = ("case", "method", *MEASURES)
"""The first columns of ``assess.csv``, in this order (the measures:
:data:`strokelrp.trust_measures.MEASURES`)."""

EXTRA_COLUMNS: tuple[str, ...] = (
    "morf_aopc_voxel",
    "random_aopc_voxel",
    "morf_aopc_mean",
    "random_aopc_mean",
    "prior_rho",
    "randomisation_rho_min",
    "randomisation_rho_max",
    "target_voxels",
    "target_score",
    "seconds",
    "map_seconds",
)
"""Further columns: voxel-level and mean-baseline AOPC, Spearman with the locality prior,
the spread of randomisation over seeds, the target's size and value, timings."""

FRACTIONS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.004,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
)
"""Shares of the elements perturbed: a fine grid 0.05-0.5 % and k = 1, 2, 5, 10, 20 %."""

DEFAULT_METHODS: tuple[str, ...] = (
    "lrp:paper",
    "lrp:epsilon",
    "lrp:zplus",
    "lrp:recommended",
    "lrp:gamma",
    "lrp:composite",
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "occlusion",
    "gradcam",
    "locality_prior",
)


# ---------------------------------------------------------------------------- the measures


def _np(t: Tensor | np.ndarray) -> np.ndarray:
    return t.detach().double().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t, float)


def brain_share(r: Tensor | np.ndarray, x: Tensor | np.ndarray) -> float:
    """Share of sum |R| on brain voxels (:func:`strokelrp.data.preprocess.brain_mask` of x:
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


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long vectors; NaN when one is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(spearmanr(a, b).statistic)


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


def perturbation_curve(
    model: nn.Module,
    x: Tensor,
    weights: Tensor,
    order: Tensor,
    fractions: Sequence[float] = FRACTIONS,
    baseline: str = "zero",
    voxel: bool = False,
    batch: int = 11,
) -> np.ndarray:
    """Relative drop (S(x) - S(x_k)) / |S(x)| per fraction, x_k = x with the first
    round(f * n) entries of ``order`` set to the baseline (``zero`` or the channel's mean).

    x (1, C, D, H, W); ``order`` indexes elements (C*D*H*W) or, with ``voxel``, voxels
    (D*H*W, every channel of a voxel at once). The perturbed inputs go through the model in
    batches of ``batch``. NaN when S(x) = 0.
    """
    c = x.shape[1]
    n = order.numel()
    if baseline == "zero":
        base = torch.zeros_like(x[0])
    elif baseline == "mean":
        base = x[0].mean(dim=(1, 2, 3), keepdim=True).expand_as(x[0])
    else:
        raise StrokeLRPError(f"baseline must be 'zero' or 'mean', got {baseline!r}")
    counts = [round(f * n) for f in fractions]
    order = order.to(x.device)
    drops: list[float] = []
    with torch.no_grad():
        s0 = float(score(model, x, weights)[0])
        if s0 == 0:
            return np.full(len(fractions), math.nan)
        for start in range(0, len(counts), batch):
            part = counts[start : start + batch]
            xb = x.repeat(len(part), 1, 1, 1, 1)
            for i, k in enumerate(part):
                idx = order[:k]
                if voxel:
                    flat = xb[i].reshape(c, -1)
                    flat[:, idx] = base.reshape(c, -1)[:, idx]
                else:
                    xb[i].view(-1)[idx] = base.reshape(-1)[idx]
            s = score(model, xb, weights.expand(len(part), *weights.shape[1:]))
            drops += [(s0 - float(v)) / abs(s0) for v in s]
    return np.asarray(drops)


def aopc(drops: np.ndarray) -> float:
    """Area over the perturbation curve: the mean relative drop over the fractions."""
    return float(np.mean(drops))


def abs_modality_shares(r: Tensor | np.ndarray) -> np.ndarray:
    """sum |R_c| / sum |R| per channel (C,); NaN for an all-zero map (cf.
    :func:`strokelrp.analysis.shares.modality_shares`, which counts positive R only)."""
    a = np.abs(_np(r)).reshape(_np(r).shape[0], -1).sum(1)
    return a / a.sum() if a.sum() > 0 else np.full(a.shape, math.nan)


def ablation_drops(
    model: nn.Module, x: Tensor, y: np.ndarray | None
) -> tuple[np.ndarray, float | None]:
    """Dice drop per modality when its channel is filled with its mean: (C,) and Dice(x).

    Dice against the label y (D, H, W); without one (or an empty one) against the unperturbed
    prediction. The C perturbed inputs go through the model in one batch.
    """
    with torch.no_grad():
        pred = (model(x).argmax(1) == LESION)[0].cpu().numpy()
        c = x.shape[1]
        xb = x.repeat(c, 1, 1, 1, 1)
        for i in range(c):
            xb[i, i] = x[0, i].mean()
        preds = (model(xb).argmax(1) == LESION).cpu().numpy()
    ref = pred if y is None or not np.asarray(y).any() else np.asarray(y).astype(bool)
    d0 = dice_score(pred, ref)
    base = 1.0 if d0 is None else d0
    drops = []
    for i in range(c):
        d = dice_score(preds[i], ref)
        drops.append(base - (1.0 if d is None else d))
    return np.asarray(drops), d0


def ablation_rho(r: Tensor | np.ndarray, drops: np.ndarray) -> float:
    """Spearman between the modalities' shares of |R| and their ablation Dice drops."""
    return spearman(abs_modality_shares(r), drops)


def within(mask: np.ndarray, r: Tensor | np.ndarray, absolute: bool = True) -> np.ndarray:
    """The map's values (|R| by default) at the mask's voxels, every channel: (C * n,)."""
    a = _np(r)
    return (np.abs(a) if absolute else a)[:, mask].ravel()


def cascade_groups(model: nn.Module) -> list[str]:
    """Top-level children that hold parameters, output side first (the cascade's steps)."""
    names = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
    return names[::-1]


# -------------------------------------------------------------------------- one case


@dataclass
class CaseContext:
    """What every method's assessment of one case shares (computed once per case)."""

    x: Tensor  # (1, C, D, H, W)
    y: np.ndarray | None
    weights: Tensor  # (1, K, D, H, W) of the prediction target
    target: np.ndarray  # (D, H, W) bool: voxels where the target weights are non-zero
    brain: np.ndarray  # (D, H, W) bool
    drops: np.ndarray  # (C,) Dice drop per mean-filled modality
    random: dict[tuple[str, str], float] = field(default_factory=dict)  # (target, variant)
    prior: np.ndarray | None = None  # |locality prior| within the brain
    random_seeds: int = 5
    fractions: Sequence[float] = FRACTIONS

    def random_aopc(self, model: nn.Module, weights: Tensor, target: str, variant: str) -> float:
        """Mean AOPC of ``random_seeds`` random orderings for the scalar of ``weights``
        (``variant``: ``element``, ``voxel`` or ``mean`` baseline); computed once, cached."""
        key = (target, variant)
        if key not in self.random:
            n = self.x[0, 0].numel() if variant == "voxel" else self.x[0].numel()
            kwargs: dict[str, Any] = {
                "element": {},
                "voxel": {"voxel": True},
                "mean": {"baseline": "mean"},
            }[variant]
            values = [
                aopc(
                    perturbation_curve(
                        model, self.x, weights, random_ordering(n, s), self.fractions, **kwargs
                    )
                )
                for s in range(self.random_seeds)
            ]
            self.random[key] = float(np.mean(values))
        return self.random[key]


def prepare_context(
    model: nn.Module,
    x: Tensor,
    y: np.ndarray | None,
    random_seeds: int = 5,
    fractions: Sequence[float] = FRACTIONS,
) -> CaseContext:
    """Target, brain, ablation drops and the locality prior of one case (the random-ordering
    AOPCs are computed on first use, once per target)."""
    from strokelrp.attribution import weights_for

    weights = weights_for(model, x, "prediction")
    target = (weights[0] != 0).any(0).cpu().numpy()
    xn = _np(x[0])
    ctx = CaseContext(x, y, weights, target, brain_mask(xn), ablation_drops(model, x, y)[0])
    ctx.random_seeds, ctx.fractions = random_seeds, fractions
    ctx.prior = within(ctx.brain, locality_prior(None, x, weights))
    return ctx


def assess_method(
    model: nn.Module,
    ctx: CaseContext,
    method: str,
    seeds: Sequence[int] = (1, 2, 3),
    fractions: Sequence[float] = FRACTIONS,
    cascade: bool = False,
    extras: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The measures of one method on one case: (row without ``case``, cascade rows).

    ``extras=False`` skips the voxel-level and mean-baseline curves (half the forwards).

    The method's own target (``prediction`` or, for a ``target=contrastive`` option, the
    log-odds) is read from the method's options; perturbations, randomisation and ablation
    score the method's own scalar.
    """
    t0 = time.perf_counter()
    name, opts, filt = parse_method(method)
    target_name = opts.pop("target", "prediction")
    spec = name if filt is None else f"{name}+{filt}"
    x, brain = ctx.x, ctx.brain
    if target_name == "prediction":
        weights = ctx.weights
    elif target_name == "contrastive":
        weights = ctx.weights.clone()
        weights[:, BACKGROUND] = -weights[:, LESION]
    else:
        raise StrokeLRPError(f"method {method!r}: target must be prediction or contrastive")

    def run(m: nn.Module, w: Tensor) -> Tensor:
        return attribute(m, x, spec, target=w, **opts)

    t_map = time.perf_counter()
    r = run(model, weights)
    map_seconds = time.perf_counter() - t_map
    row: dict[str, Any] = {
        "method": method,
        "brain_share": brain_share(r, x[0]),
        "lesion_share": lesion_share(r, ctx.target),
    }
    curve = lambda order, **kw: aopc(  # noqa: E731
        perturbation_curve(model, x, weights, order, fractions, **kw)
    )
    row["morf_aopc"] = curve(ordering(r, True))
    row["lerf_aopc"] = curve(ordering(r, False))
    row["random_aopc"] = ctx.random_aopc(model, weights, target_name, "element")
    rhos = []
    ref = within(brain, r)
    for seed in seeds:
        rhos.append(spearman(ref, within(brain, run(reinitialised(model, seed), weights))))
    row["randomisation_rho"] = float(np.mean(rhos))
    lesion_w = torch.zeros_like(ctx.weights)
    lesion_w[:, LESION] = ctx.weights[:, LESION]
    background_w = torch.zeros_like(ctx.weights)
    background_w[:, BACKGROUND] = ctx.weights[:, LESION]
    r_les = r if target_name == "prediction" else run(model, lesion_w)
    r_bg = run(model, background_w)
    row["contrast_rho"] = spearman(within(brain, r_les, False), within(brain, r_bg, False))
    row["ablation_rho"] = ablation_rho(r, ctx.drops)
    if extras:
        row["morf_aopc_voxel"] = curve(ordering(r, True, voxel=True), voxel=True)
        row["random_aopc_voxel"] = ctx.random_aopc(model, weights, target_name, "voxel")
        row["morf_aopc_mean"] = curve(ordering(r, True), baseline="mean")
        row["random_aopc_mean"] = ctx.random_aopc(model, weights, target_name, "mean")
    row["prior_rho"] = spearman(ref, ctx.prior) if name != "locality_prior" else 1.0
    row["randomisation_rho_min"] = float(np.min(rhos))
    row["randomisation_rho_max"] = float(np.max(rhos))
    row["target_voxels"] = int(ctx.target.sum())
    with torch.no_grad():
        row["target_score"] = float(score(model, x, weights)[0])
    steps: list[dict[str, Any]] = []
    if cascade:
        groups = cascade_groups(model)
        for k in range(1, len(groups) + 1):
            broken = reinitialised(model, seeds[0], _modules_under(model, groups[:k]))
            rho = spearman(ref, within(brain, run(broken, weights)))
            steps.append({"method": method, "step": k, "layer": groups[k - 1], "rho": rho})
    row["map_seconds"] = map_seconds
    row["seconds"] = time.perf_counter() - t0
    return row, steps


def _modules_under(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    return [
        n
        for n, _ in model.named_modules()
        if any(n == p or n.startswith(p + ".") for p in prefixes)
    ]


def assess(
    model: nn.Module,
    x: Tensor | np.ndarray,
    y: np.ndarray | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    case: str = "",
    seeds: Sequence[int] = (1, 2, 3),
    random_seeds: int = 5,
    fractions: Sequence[float] = FRACTIONS,
    cascade: bool = False,
    extras: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Assess every method on one case: (rows with :data:`COLUMNS` + :data:`EXTRA_COLUMNS`,
    cascade rows (case, method, step, layer, rho) when ``cascade``).

    x (C, D, H, W) preprocessed as the model saw it (:func:`strokelrp.prepare_case`), y its
    label (D, H, W) or None. ``seeds``: the independent re-initialisations (>= 3 advised);
    ``random_seeds``: the random orderings (>= 5); ``extras``: the voxel-level and
    mean-baseline AOPC columns.
    """
    if len(seeds) < 1 or random_seeds < 1:
        raise StrokeLRPError("assess needs at least one re-initialisation and one random order")
    for method in methods:
        parse_method(method)  # every name checked before any work
    param = next(model.parameters())
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    xt = (xt[None] if xt.dim() == 4 else xt).to(param)
    was = model.training
    model.eval()
    try:
        ctx = prepare_context(model, xt, y, random_seeds, fractions)
        rows, curves = [], []
        for method in methods:
            if progress is not None:
                progress(f"case {case}: {method}")
            row, steps = assess_method(model, ctx, method, seeds, fractions, cascade, extras)
            rows.append({"case": case, **row})
            curves += [{"case": case, **s} for s in steps]
        return rows, curves
    finally:
        model.train(was)


# ------------------------------------------------------------------------------ verdicts

CHECKS: dict[str, str] = {
    "brain_share": "mean brain_share >= 0.9",
    "lesion_share": "mean lesion_share >= 0.5",
    "faithful": "median over cases of morf_aopc / random_aopc >= 10",
    "contrast": "|mean contrast_rho| <= 0.95",
    "ablation": "mean ablation_rho >= 0.4",
}
"""The checks a default configuration must pass on held-out cases (issue 8, point 5)."""


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
    """Per method (first-seen order): the means over cases of the measures, the median
    MoRF / random ratio, each of :data:`CHECKS` passed or not and ``passes`` (all of them).

    ``rows`` as :func:`assess` returns them or as read back from ``assess.csv`` (strings).
    """
    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_method.setdefault(str(row["method"]), []).append(row)
    out = []
    for method, group in by_method.items():
        s: dict[str, Any] = {"method": method, "cases": len(group)}
        for key in (*MEASURES, "prior_rho"):
            vals = _floats(group, key)
            s[key] = float(np.mean(vals)) if vals else math.nan
        ratios = [
            float(r["morf_aopc"]) / float(r["random_aopc"])
            for r in group
            if r.get("morf_aopc") not in (None, "")
            and r.get("random_aopc") not in (None, "")
            and float(r["random_aopc"]) > 0
        ]
        s["morf_over_random"] = float(np.median(ratios)) if ratios else math.nan
        s["brain_share_ok"] = s["brain_share"] >= 0.9
        s["lesion_share_ok"] = s["lesion_share"] >= 0.5
        s["faithful_ok"] = s["morf_over_random"] >= 10
        s["contrast_ok"] = abs(s["contrast_rho"]) <= 0.95
        s["ablation_ok"] = s["ablation_rho"] >= 0.4
        keys = ("brain_share", "lesion_share", "faithful", "contrast", "ablation")
        s["passes"] = all(s[f"{k}_ok"] for k in keys)
        out.append(s)
    return out
