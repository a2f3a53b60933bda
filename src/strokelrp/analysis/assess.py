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
from torch import Tensor, nn

from strokelrp.analysis.shares import ablation_rho, abs_modality_shares, spearman
from strokelrp.attribution import (
    METHODS,
    attribution_input,
    gradient,
    layer_of,
    locality_prior,
    lrp,
    occlusion_maps,
    parse_method,
    reinitialised,
    score,
)
from strokelrp.core.masks import brain_mask
from strokelrp.device import batched_layout
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.engine import BACKGROUND, LESION
from strokelrp.lrp.presets import DEFAULT_PRESET, PRESETS
from strokelrp.trust.ablation import modality_ablation
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
    "randomisation_seeds",
    "target_voxels",
    "target_score",
    "seconds",
    "map_seconds",
)
"""Further columns: voxel-level and mean-baseline AOPC, Spearman with the locality prior,
the spread of randomisation over seeds and how many seeds gave a defined correlation, the
target's size and value, timings."""

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

BASELINES: tuple[str, ...] = (
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "occlusion",
    "gradcam",
    "locality_prior",
)
"""The non-LRP methods, in the order of the tables."""

DEFAULT_METHODS: tuple[str, ...] = (f"lrp:{DEFAULT_PRESET}", *BASELINES)
"""``strokelrp assess``'s default: one map per method family (the default LRP preset and every
baseline); :data:`ALL_METHODS` adds every other preset."""

ALL_METHODS: tuple[str, ...] = (
    *(f"lrp:{p}" for p in PRESETS),
    *BASELINES,
)
"""Every preset and every baseline (the survey of docs/method.md)."""


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


@dataclass(frozen=True)
class Curve:
    """One perturbation curve: an ``order`` of elements (or, with ``voxel``, of voxels) and the
    ``baseline`` (``zero`` or ``mean``) the perturbed entries take."""

    order: Tensor
    voxel: bool = False
    baseline: str = "zero"


def perturbation_curves(
    model: nn.Module,
    x: Tensor,
    weights: Tensor,
    curves: Sequence[Curve],
    fractions: Sequence[float] = FRACTIONS,
    batch: int = 11,
    s0: float | None = None,
) -> np.ndarray:
    """Relative drops (S(x) - S(x_k)) / |S(x)| of several curves: (len(curves), len(fractions)).

    x_k = x with the first round(f * n) entries of the curve's order set to its baseline. The
    perturbed inputs of all curves go through the model together, ``batch`` at a time (in
    :func:`strokelrp.device.batched_layout`); an input that the perturbation leaves unchanged
    (every entry already at the baseline) has drop 0 and costs no forward. ``s0``: S(x) when
    known (saves a forward). NaN rows when S(x) = 0.
    """
    c = x.shape[1]
    if batch < 1:
        raise StrokeLRPError(f"perturbation batch must be >= 1, got {batch}")
    bases: dict[str, Tensor] = {}
    for curve in curves:
        if curve.baseline == "zero":
            bases.setdefault("zero", torch.zeros_like(x[0]))
        elif curve.baseline == "mean":
            spatial = tuple(range(1, x.dim() - 1))
            bases.setdefault("mean", x[0].mean(dim=spatial, keepdim=True).expand_as(x[0]))
        else:
            raise StrokeLRPError(f"baseline must be 'zero' or 'mean', got {curve.baseline!r}")
    out = np.zeros((len(curves), len(fractions)))
    with torch.no_grad():
        if s0 is None:
            s0 = float(score(model, batched_layout(x), weights)[0])
        if s0 == 0:
            return np.full(out.shape, math.nan)
        jobs = []  # (curve index, fraction index, flat view of x's entries to set, values)
        for i, curve in enumerate(curves):
            order = curve.order.to(x.device)
            n = order.numel()
            base = bases[curve.baseline]
            src = x[0].reshape(c, -1) if curve.voxel else x[0].reshape(1, -1)
            dst = base.reshape(c, -1) if curve.voxel else base.reshape(1, -1)
            for j, f in enumerate(fractions):
                idx = order[: round(f * n)]
                if bool((src[:, idx] == dst[:, idx]).all()):
                    continue  # x_k == x: drop 0, no forward
                jobs.append((i, j, idx, curve.voxel, base))
        for start in range(0, len(jobs), batch):
            part = jobs[start : start + batch]
            xb = x.repeat(len(part), *([1] * (x.dim() - 1)))
            for n, (_i, _j, idx, voxel, base) in enumerate(part):
                if voxel:
                    xb[n].view(c, -1)[:, idx] = base.reshape(c, -1)[:, idx]
                else:
                    xb[n].view(-1)[idx] = base.reshape(-1)[idx]
            s = score(model, batched_layout(xb), weights.expand(len(part), *weights.shape[1:]))
            for n, (i, j, *_rest) in enumerate(part):
                out[i, j] = (s0 - float(s[n])) / abs(s0)
    return out


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
    (D*H*W, every channel of a voxel at once). One curve of :func:`perturbation_curves`.
    """
    return perturbation_curves(
        model, x, weights, [Curve(order, voxel, baseline)], fractions, batch
    )[0]


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

VARIANTS: dict[str, tuple[str, str]] = {
    "element": ("element", "zero"),
    "voxel": ("voxel", "zero"),
    "mean": ("element", "mean"),
}
"""The curve variants: name -> (level, baseline)."""


def curve_points(
    method: str,
    order: str,
    variant: str,
    fractions: Sequence[float],
    drops: np.ndarray,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """The rows of one curve for ``assess_curves.csv`` (without ``case``): ``order`` is
    ``morf``, ``lerf`` or ``random`` (with its ``seed``), ``variant`` a key of
    :data:`VARIANTS`; ``drops`` (F,) as :func:`perturbation_curve` returns them."""
    level, baseline = VARIANTS[variant]
    head = {"method": method, "order": order, "level": level, "baseline": baseline, "seed": seed}
    return [head | {"fraction": f, "drop": float(d)} for f, d in zip(fractions, drops, strict=True)]


def within(mask: np.ndarray, r: Tensor | np.ndarray, absolute: bool = True) -> np.ndarray:
    """The map's values (|R| by default) at the mask's voxels, every channel: (C * n,)."""
    a = _np(r)
    return (np.abs(a) if absolute else a)[:, mask].ravel()


def cascade_groups(model: nn.Module) -> list[str]:
    """Top-level children that hold parameters, output side first (the cascade's steps)."""
    names = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
    return names[::-1]


# -------------------------------------------------------------------------- one case


ASSESS_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 16},
    "occlusion": {"patch": (4, 16, 16)},
}
"""Method options ``assess`` uses unless the method's spec gives its own (docs/assess.md,
"Cost"): an assessment computes each map 5 times (trained model, 3 re-initialisations,
background target), so the two multi-forward baselines get cheaper settings than
:func:`strokelrp.attribution.attribute`'s defaults (32 steps, patch 4 x 8 x 8)."""

MAX_BATCH = {"cpu": 8, "other": 16}
"""At most this many perturbed inputs per forward: on this project's CPU the time per input
is lowest from 4 to 8 and rises beyond (docs/benchmarks.md, "Assessing a method"); other
devices keep the earlier cap of 16 (not measured on a GPU yet; the memory budget limits it
too)."""


def forward_bytes(model: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """The logits of x (1, C, D, H, W) and the bytes of every module output of that forward
    (an upper bound of what one sample's forward holds at once)."""
    total = [x.numel() * x.element_size()]

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            total[0] += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, total[0]


def batch_for(per_sample: int, memory_budget: str | int | float | None, device: Any) -> int:
    """Perturbed inputs per forward: as many as half the budget holds, 1 to the device's
    :data:`MAX_BATCH` (budget as for :func:`strokelrp.lrp.engine.explain`; None = the
    engine's default)."""
    from strokelrp.lrp.budget import resolve_budget

    cap = MAX_BATCH["cpu" if torch.device(device).type == "cpu" else "other"]
    budget = resolve_budget(memory_budget, device)
    if math.isinf(budget):
        return cap
    return int(min(cap, max(1, budget // (2 * max(1, per_sample)))))


@dataclass
class CaseContext:
    """What every method's assessment of one case shares (computed once per case): the target,
    S(x), the ablation drops, the locality prior, the re-initialised models, the random-ordering
    AOPCs (per target) and the gradients (per model and target)."""

    x: Tensor  # (1, C, D, H, W)
    y: np.ndarray | None
    weights: Tensor  # (1, K, D, H, W) of the prediction target
    target: np.ndarray  # (D, H, W) bool: voxels where the target weights are non-zero
    brain: np.ndarray  # (D, H, W) bool
    drops: np.ndarray  # (C,) Dice drop per mean-filled modality
    random: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    """(target, variant) -> the random-order curves, one (F,) per seed 0, 1, ..."""
    prior: np.ndarray | None = None  # |locality prior| within the brain
    random_seeds: int = 5
    fractions: Sequence[float] = FRACTIONS
    batch: int = 11  # perturbed inputs per forward
    memory_budget: str | int | float | None = None  # of every LRP walk
    options: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(ASSESS_OPTIONS))
    scores: dict[str, float] = field(default_factory=dict)  # S(x) per target name
    models: dict[int, nn.Module] = field(default_factory=dict)  # re-initialised, per seed
    gradients: dict[tuple[Any, str], Tensor] = field(default_factory=dict)
    model_free: dict[tuple[str, str], Tensor] = field(default_factory=dict)

    def score(self, model: nn.Module, weights: Tensor, target: str) -> float:
        """S(x) of the trained ``model`` for ``target`` (its weights), computed once in the
        layout of the perturbed inputs' batches (the same rounding)."""
        if target not in self.scores:
            with torch.no_grad():
                self.scores[target] = float(score(model, batched_layout(self.x), weights)[0])
        return self.scores[target]

    def reinitialised(self, model: nn.Module, seed: int) -> nn.Module:
        """The trained model re-initialised under ``seed`` (built once per case)."""
        if seed not in self.models:
            self.models[seed] = reinitialised(model, seed).eval()
        return self.models[seed]

    def random_aopc(self, model: nn.Module, weights: Tensor, target: str, variant: str) -> float:
        """Mean AOPC of ``random_seeds`` random orderings for the scalar of ``weights``
        (``variant``: ``element``, ``voxel`` or ``mean`` baseline); computed once, cached."""
        key = (target, variant)
        if key not in self.random:
            voxel = variant == "voxel"
            n = self.x[0, 0].numel() if voxel else self.x[0].numel()
            baseline = "mean" if variant == "mean" else "zero"
            curves = [
                Curve(random_ordering(n, s), voxel, baseline) for s in range(self.random_seeds)
            ]
            drops = perturbation_curves(
                model,
                self.x,
                weights,
                curves,
                self.fractions,
                self.batch,
                self.score(model, weights, target),
            )
            self.random[key] = list(drops)
        return float(np.mean([aopc(d) for d in self.random[key]]))


def prepare_context(
    model: nn.Module,
    x: Tensor,
    y: np.ndarray | None,
    random_seeds: int = 5,
    fractions: Sequence[float] = FRACTIONS,
    memory_budget: str | int | float | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> CaseContext:
    """Target, brain, ablation drops and the locality prior of one case, and the perturbation
    batch sized to ``memory_budget`` (the random-ordering AOPCs, re-initialised models and
    gradients are computed on first use, once per case)."""
    from strokelrp.lrp.engine import target_weights

    logits, per_sample = forward_bytes(model, x)
    weights = target_weights("prediction", logits)[0]
    target = (weights[0] != 0).any(0).cpu().numpy()
    xn = _np(x[0])
    drops = modality_ablation(model, x[0], y).drop
    ctx = CaseContext(x, y, weights, target, brain_mask(xn), drops)
    ctx.random_seeds, ctx.fractions = random_seeds, fractions
    ctx.memory_budget = memory_budget
    ctx.batch = batch_for(per_sample, memory_budget, x.device)
    if options is not None:
        ctx.options = {k: dict(v) for k, v in options.items()}
    ctx.prior = within(ctx.brain, locality_prior(None, x, weights))
    return ctx


def _maps(
    ctx: CaseContext,
    model: nn.Module,
    key: Any,
    name: str,
    filt: str | None,
    opts: dict[str, Any],
    targets: dict[str, Tensor],
) -> dict[str, Tensor]:
    """The maps of one method for several targets of one model (``key``: ``trained`` or the
    re-initialisation's seed), sharing what the targets share: occlusion's forwards, the
    gradient behind ``gradient`` and ``gradient_x_input``, the model-free prior."""
    x = ctx.x
    if not targets:
        return {}
    if name.startswith("lrp:"):
        return {
            t: lrp(
                model, x, w, rules=name[4:], filter=filt, memory_budget=ctx.memory_budget, **opts
            )
            for t, w in targets.items()
        }
    if name == "occlusion":
        opts = {"batch": ctx.batch, **opts}
        maps = occlusion_maps(model, x, list(targets.values()), **opts)
        return dict(zip(targets, maps, strict=True))
    out = {}
    for t, w in targets.items():
        if name in ("gradient", "gradient_x_input") and not opts:
            if (key, t) not in ctx.gradients:
                ctx.gradients[(key, t)] = gradient(model, x, w).detach()
            g = ctx.gradients[(key, t)]
            out[t] = g if name == "gradient" else x[0] * g
        elif name == "locality_prior":  # model-free: the same map for every model
            if (t, repr(opts)) not in ctx.model_free:
                ctx.model_free[(t, repr(opts))] = locality_prior(None, x, w, **opts)
            out[t] = ctx.model_free[(t, repr(opts))]
        else:
            try:
                out[t] = METHODS[name](model, x, w, **opts).detach()
            except TypeError as err:
                raise StrokeLRPError(
                    f"method {name!r}: bad options {sorted(opts)} ({err})"
                ) from err
    return out


def assess_method(
    model: nn.Module,
    ctx: CaseContext,
    method: str,
    seeds: Sequence[int] = (1, 2, 3),
    fractions: Sequence[float] = FRACTIONS,
    cascade: bool = False,
    extras: bool = True,
    points: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The measures of one method on one case: (row without ``case``, cascade rows).

    ``extras=False`` skips the voxel-level and mean-baseline curves (half the forwards).
    ``points``, when given, receives every perturbation curve's points (:func:`curve_points`)
    that the AOPC columns are the means of.

    The method's own target (``prediction`` or, for a ``target=contrastive`` option, the
    log-odds) is read from the method's options; perturbations, randomisation and ablation
    score the method's own scalar. Options missing from the spec come from ``ctx.options``
    (:data:`ASSESS_OPTIONS`).
    """
    t0 = time.perf_counter()
    name, opts, filt = parse_method(method)
    target_name = opts.pop("target", "prediction")
    opts = {**ctx.options.get(name, {}), **opts}
    x, brain = ctx.x, ctx.brain
    if target_name == "prediction":
        weights = ctx.weights
    elif target_name == "contrastive":
        weights = ctx.weights.clone()
        weights[:, BACKGROUND] = -weights[:, LESION]
    else:
        raise StrokeLRPError(f"method {method!r}: target must be prediction or contrastive")
    lesion_w = torch.zeros_like(ctx.weights)
    lesion_w[:, LESION] = ctx.weights[:, LESION]
    background_w = torch.zeros_like(ctx.weights)
    background_w[:, BACKGROUND] = ctx.weights[:, LESION]
    targets = {target_name: weights, "background": background_w}
    if target_name != "prediction":
        targets["lesion"] = lesion_w

    def run(m: nn.Module, key: Any, wanted: dict[str, Tensor]) -> dict[str, Tensor]:
        return _maps(ctx, m, key, name, filt, opts, wanted)

    t_map = time.perf_counter()  # occlusion: its contrast maps come from the same forwards
    trained = run(model, "trained", targets if name == "occlusion" else {target_name: weights})
    map_seconds = time.perf_counter() - t_map
    r = trained[target_name]
    trained.update(run(model, "trained", {k: v for k, v in targets.items() if k not in trained}))
    row: dict[str, Any] = {
        "method": method,
        "brain_share": brain_share(r, x[0]),
        "lesion_share": lesion_share(r, ctx.target),
    }
    s0 = ctx.score(model, weights, target_name)
    curves = [Curve(ordering(r, True)), Curve(ordering(r, False))]
    if extras:
        curves += [
            Curve(ordering(r, True, voxel=True), voxel=True),
            Curve(curves[0].order, False, "mean"),
        ]
    drops = perturbation_curves(model, x, weights, curves, fractions, ctx.batch, s0)

    def random_curve(variant: str) -> float:
        value = ctx.random_aopc(model, weights, target_name, variant)
        if points is not None:
            for seed, d in enumerate(ctx.random[(target_name, variant)]):
                points.extend(curve_points(method, "random", variant, ctx.fractions, d, seed))
        return value

    if points is not None:
        kinds = [("morf", "element"), ("lerf", "element"), ("morf", "voxel"), ("morf", "mean")]
        for (which, variant), d in zip(kinds, drops, strict=False):
            points.extend(curve_points(method, which, variant, fractions, d))
    row["morf_aopc"] = aopc(drops[0])
    row["lerf_aopc"] = aopc(drops[1])
    row["random_aopc"] = random_curve("element")
    rhos = []
    ref = within(brain, r)
    for seed in seeds:
        other = run(ctx.reinitialised(model, seed), seed, {target_name: weights})[target_name]
        rhos.append(spearman(ref, within(brain, other)))
    randomisation = _randomisation_summary(rhos)
    row["randomisation_rho"] = randomisation.pop("randomisation_rho")
    r_les = trained.get("lesion", r)
    r_bg = trained["background"]
    row["contrast_rho"] = spearman(within(brain, r_les, False), within(brain, r_bg, False))
    # the channel shares of |R| for any number of spatial axes: (C, N, 1, 1) is a (C, D, H, W)
    row["ablation_rho"] = ablation_rho(
        abs_modality_shares(r.reshape(r.shape[0], -1, 1, 1)), ctx.drops
    )
    if extras:
        row["morf_aopc_voxel"] = aopc(drops[2])
        row["random_aopc_voxel"] = random_curve("voxel")
        row["morf_aopc_mean"] = aopc(drops[3])
        row["random_aopc_mean"] = random_curve("mean")
    row["prior_rho"] = spearman(ref, ctx.prior) if name != "locality_prior" else 1.0
    row.update(randomisation)
    row["target_voxels"] = int(ctx.target.sum())
    row["target_score"] = s0
    steps: list[dict[str, Any]] = []
    if cascade:
        groups = cascade_groups(model)
        for k in range(1, len(groups) + 1):
            broken = reinitialised(model, seeds[0], _modules_under(model, groups[:k])).eval()
            other = run(broken, ("cascade", k), {target_name: weights})[target_name]
            rho = spearman(ref, within(brain, other))
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


def check_methods(model: nn.Module, methods: Sequence[str]) -> None:
    """One error for the first method spec that cannot run on ``model``: an unknown name or
    option syntax, or a Grad-CAM ``layer`` the model does not have (checked before any work)."""
    for method in methods:
        name, opts, _ = parse_method(method)
        if name == "gradcam" and "layer" in opts:
            layer_of(model, str(opts["layer"]))


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
    memory_budget: str | int | float | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    points: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Assess every method on one case: (rows with :data:`COLUMNS` + :data:`EXTRA_COLUMNS`,
    cascade rows (case, method, step, layer, rho) when ``cascade``).

    ``points``, when given, receives the perturbation curves behind the AOPC columns, one
    dict per point with :data:`CURVE_COLUMNS` (``seed`` None except for random orders).

    x (C, D, H, W) preprocessed as the model saw it (:func:`strokelrp.prepare_case`), y its
    label (D, H, W) or None (a 2-D network: x (C, H, W), y (H, W)). ``seeds``: the
    independent re-initialisations (>= 3 advised);
    ``random_seeds``: the random orderings (>= 5); ``extras``: the voxel-level and
    mean-baseline AOPC columns; ``memory_budget``: bytes of every LRP walk and of the batches
    of perturbed inputs (as for :func:`strokelrp.lrp.engine.explain`); ``options``: method
    options used when a spec gives none (default :data:`ASSESS_OPTIONS`).
    """
    if len(seeds) < 1 or random_seeds < 1:
        raise StrokeLRPError("assess needs at least one re-initialisation and one random order")
    check_methods(model, methods)
    if memory_budget is not None:
        from strokelrp.lrp.budget import parse_bytes

        parse_bytes(memory_budget)
    xt = attribution_input(model, x if isinstance(x, Tensor) else np.asarray(x))
    was = model.training
    model.eval()
    try:
        ctx = prepare_context(model, xt, y, random_seeds, fractions, memory_budget, options)
        rows, curves = [], []
        for method in methods:
            if progress is not None:
                progress(f"case {case}: {method}")
            mine: list[dict[str, Any]] | None = None if points is None else []
            row, steps = assess_method(
                model, ctx, method, seeds, fractions, cascade, extras, points=mine
            )
            rows.append({"case": case, **row})
            if points is not None and mine is not None:
                points += [{"case": case, **p} for p in mine]
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
