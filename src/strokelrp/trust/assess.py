"""Assess relevance maps on one case: run the model, the methods and the perturbations.

The model-running half of the trust assessment (docs/assess.md): :func:`assess` computes, for
one case and a list of methods (:mod:`strokelrp.attribution`), every map it needs (the trained
model's, the re-initialised models', the contrast target's), the perturbation curves
(:mod:`strokelrp.trust.perturbation`) and the modality ablation, and returns one row per
method with :data:`strokelrp.analysis.assess.COLUMNS` first. The measures of the arrays are
pure functions in :mod:`strokelrp.analysis.assess`.

Every map explains the same scalar S = sum(W * logits) with W fixed from the trained model's
prediction (so a re-initialised model or a perturbed input is scored on the same voxels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from strokelrp.analysis.assess import (
    FRACTIONS,
    REMOVAL,
    _np,
    _randomisation_summary,
    aopc,
    brain_share,
    curve_points,
    lesion_share,
    ordering,
    random_ordering,
    variant_of,
    variants,
    within,
)
from strokelrp.analysis.randomisation import (
    LOGIT_CHANGE_MIN,
    emprt,
    logit_change,
    normalise_p99,
    shell_spearman,
    shells,
    ssim,
)
from strokelrp.analysis.removal import REMOVALS
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
from strokelrp.trust.perturbation import Curve, perturbation_curves

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


def cascade_groups(model: nn.Module) -> list[str]:
    """Top-level children that hold parameters, output side first (the cascade's steps)."""
    names = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
    return names[::-1]


CASCADES: tuple[str, ...] = ("top_down", "bottom_up", "independent")
"""The layer-randomisation orders of ``cascade.csv`` (docs/assess.md, "Randomisation"):
cumulative from the output down, cumulative from the input up, one block at a time."""


def cascade_steps(model: nn.Module, order: str) -> list[list[str]]:
    """The blocks (:func:`cascade_groups`) re-initialised at each step of ``order``."""
    groups = cascade_groups(model)
    if order == "top_down":
        return [groups[:k] for k in range(1, len(groups) + 1)]
    if order == "bottom_up":
        up = groups[::-1]
        return [up[:k] for k in range(1, len(up) + 1)]
    if order == "independent":
        return [[g] for g in groups]
    raise StrokeLRPError(f"cascade order must be one of {', '.join(CASCADES)}, got {order!r}")


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
    prior_curves: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    """(target, variant) -> the locality prior's MoRF curve (F,)."""
    removal: str = REMOVAL  # of the main AOPC columns
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
    channels: tuple[str, ...] | None = None  # the data set's channel names, when known
    logits: np.ndarray | None = None  # the trained model's logits (1, K, *S)
    shell: np.ndarray | None = None  # (D, H, W) distance-to-target shell of every voxel
    logit_changes: dict[tuple[str, int], float] = field(default_factory=dict)
    """(cascade order, step) -> relative logit change of that step (:meth:`step_change`)."""
    smprt_samples: int = 0  # noisy inputs per sMPRT map (0: no sMPRT)

    def randomisation(self, r: Tensor, other: Tensor) -> dict[str, float]:
        """The read-outs of one re-initialised map ``other`` against the trained map ``r``
        (C, *S): Spearman of |R| and of signed R in the brain, the shell-wise Spearman, SSIM
        of the 99th-percentile-normalised maps (window centres in the brain)
        (:mod:`strokelrp.analysis.randomisation`)."""
        a, b = _np(r), _np(other)
        if self.shell is None:
            self.shell = shells(self.target)
        return {
            "rho": spearman(within(self.brain, a), within(self.brain, b)),
            "signed_rho": spearman(within(self.brain, a, False), within(self.brain, b, False)),
            "shell_rho": shell_spearman(a, b, self.shell, self.brain),
            "ssim": ssim(normalise_p99(a), normalise_p99(b), mask=self.brain),
        }

    def gradient_contrast(self, model: nn.Module, lesion: Tensor, background: Tensor) -> float:
        """``contrast_rho`` of the plain gradient on this case (the trained ``model``, the
        lesion and background weights): the model's own first-order class contrast, the
        yardstick of every method's ``contrast_rho``; computed once per case."""
        maps = []
        own = "prediction" if torch.equal(lesion, self.weights) else "lesion"  # share _maps'
        for t, w in ((own, lesion), ("background", background)):
            if ("trained", t) not in self.gradients:
                self.gradients[("trained", t)] = maps_of(model).gradient(model, self.x, w)
            maps.append(within(self.brain, self.gradients[("trained", t)], False))
        return spearman(*maps)

    def step_change(self, model: nn.Module, order: str, k: int, seed: int) -> float:
        """Relative change of the logits of step k of ``order`` (blocks re-initialised under
        ``seed``, :func:`_broken`): against the previous step's model for a cumulative order
        (what this block adds), against the trained model for ``independent`` and the first
        step; computed once per case."""
        key = (order, k)
        if key not in self.logit_changes:
            steps = cascade_steps(model, order)
            with torch.no_grad():
                now = _np(_broken(model, steps[k - 1], seed)(self.x))
                if order == "independent" or k == 1:
                    before = self.logits
                else:
                    before = _np(_broken(model, steps[k - 2], seed)(self.x))
            self.logit_changes[key] = logit_change(before, now)
        return self.logit_changes[key]

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

    def curves(
        self, model: nn.Module, weights: Tensor, curves: Sequence[Curve], s0: float
    ) -> np.ndarray:
        """:func:`strokelrp.trust.perturbation.perturbation_curves` with this case's fractions
        (relative to the target's size), batch, brain and target: (len(curves), F)."""
        return perturbation_curves(
            model,
            self.x,
            weights,
            curves,
            self.fractions,
            self.batch,
            s0,
            unit=int(self.target.sum()),
            brain=self.brain,
            target=self.target,
        )

    def random_aopc(self, model: nn.Module, weights: Tensor, target: str, variant: str) -> float:
        """Mean AOPC of ``random_seeds`` random orderings for the scalar of ``weights``
        (``variant``: a name of :func:`strokelrp.analysis.assess.variants`); computed once,
        cached."""
        key = (target, variant)
        if key not in self.random:
            level, removal = variant_of(variant, self.removal)
            voxel = level == "voxel"
            n = self.x[0, 0].numel() if voxel else self.x[0].numel()
            curves = [
                Curve(random_ordering(n, s), voxel, removal) for s in range(self.random_seeds)
            ]
            drops = self.curves(model, weights, curves, self.score(model, weights, target))
            self.random[key] = list(drops)
        return float(np.mean([aopc(d) for d in self.random[key]]))

    def prior_aopc(self, model: nn.Module, weights: Tensor, target: str, variant: str) -> float:
        """MoRF AOPC of the model-free locality prior (the yardstick a map must beat) for the
        scalar of ``weights`` under ``variant``; computed once per target and variant."""
        key = (target, variant)
        if key not in self.prior_curves:
            level, removal = variant_of(variant, self.removal)
            voxel = level == "voxel"
            prior = locality_prior(None, self.x, weights)
            curve = Curve(ordering(prior, True, voxel=voxel), voxel, removal)
            s0 = self.score(model, weights, target)
            self.prior_curves[key] = self.curves(model, weights, [curve], s0)[0]
        return aopc(self.prior_curves[key])


def prepare_context(
    model: nn.Module,
    x: Tensor,
    y: np.ndarray | None,
    random_seeds: int = 5,
    fractions: Sequence[float] = FRACTIONS,
    memory_budget: str | int | float | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    removal: str = REMOVAL,
    channels: Sequence[str] | None = None,
    weights: Tensor | None = None,
) -> CaseContext:
    """Target, brain, ablation drops and the locality prior of one case, and the perturbation
    batch sized to ``memory_budget`` (the random-ordering AOPCs, re-initialised models and
    gradients are computed on first use, once per case). ``weights`` (1, K, *S): the
    prediction target's W when the caller fixes it, else from the model's logits."""
    from strokelrp.lrp.engine import target_weights

    logits, per_sample = forward_bytes(model, x)
    if weights is None:
        weights = target_weights("prediction", logits)[0]
    elif tuple(weights.shape) != tuple(logits.shape):
        raise StrokeLRPError(
            f"target weights must have the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(weights.shape)}"
        )
    weights = weights.to(logits)
    target = (weights[0] != 0).any(0).cpu().numpy()
    xn = _np(x[0])
    drops = modality_ablation(model, x[0], y).drop
    ctx = CaseContext(x, y, weights, target, brain_mask(xn), drops)
    ctx.channels = None if channels is None else tuple(channels)
    ctx.random_seeds, ctx.fractions = random_seeds, fractions
    if removal not in REMOVALS:
        raise StrokeLRPError(f"removal must be one of {', '.join(REMOVALS)}, got {removal!r}")
    ctx.removal = removal
    ctx.memory_budget = memory_budget
    ctx.batch = batch_for(per_sample, memory_budget, x.device)
    if options is not None:
        ctx.options = {k: dict(v) for k, v in options.items()}
    ctx.prior = within(ctx.brain, locality_prior(None, x, weights))
    ctx.logits = _np(logits)
    ctx.shell = shells(target)
    return ctx


class MapMaker(Protocol):
    """How :func:`assess` gets a model's maps (its one seam): x (1, C, *S), W (1, K, *S) ->
    maps (C, *S) of S = sum(W * model(x)); ``occlusion`` gives one map per W from shared
    forwards."""

    def lrp(
        self,
        model: nn.Module,
        x: Tensor,
        weights: Tensor,
        rules: str,
        filter: str | None,
        memory_budget: str | int | float | None,
        **opts: Any,
    ) -> Tensor: ...

    def gradient(self, model: nn.Module, x: Tensor, weights: Tensor) -> Tensor: ...

    def occlusion(
        self, model: nn.Module, x: Tensor, weights: Sequence[Tensor], **opts: Any
    ) -> list[Tensor]: ...

    def method(
        self, name: str, model: nn.Module, x: Tensor, weights: Tensor, **opts: Any
    ) -> Tensor: ...


class PlainMaps:
    """The :class:`MapMaker` of a network that predicts its input in one forward: each map
    from :mod:`strokelrp.attribution` on the network itself. A model that predicts otherwise
    names its own maker as its class's ``assess_maps``
    (:class:`strokelrp.trust.windowed.WindowMaps`: through a sliding window)."""

    def lrp(
        self,
        model: nn.Module,
        x: Tensor,
        weights: Tensor,
        rules: str,
        filter: str | None,
        memory_budget: str | int | float | None,
        **opts: Any,
    ) -> Tensor:
        return lrp(
            model, x, weights, rules=rules, filter=filter, memory_budget=memory_budget, **opts
        )

    def gradient(self, model: nn.Module, x: Tensor, weights: Tensor) -> Tensor:
        return gradient(model, x, weights).detach()

    def occlusion(
        self, model: nn.Module, x: Tensor, weights: Sequence[Tensor], **opts: Any
    ) -> list[Tensor]:
        return list(occlusion_maps(model, x, list(weights), **opts))

    def method(
        self, name: str, model: nn.Module, x: Tensor, weights: Tensor, **opts: Any
    ) -> Tensor:
        return METHODS[name](model, x, weights, **opts).detach()


def maps_of(model: nn.Module) -> MapMaker:
    """The map maker of ``model``: its class's ``assess_maps`` (a windowed model's), else
    :class:`PlainMaps`."""
    return getattr(type(model), "assess_maps", None) or PlainMaps()


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
    maker = maps_of(model)
    if name.startswith("lrp:"):
        return {
            t: maker.lrp(model, x, w, name[4:], filt, ctx.memory_budget, **opts)
            for t, w in targets.items()
        }
    if name == "occlusion":
        opts = {"batch": ctx.batch, **opts}
        maps = maker.occlusion(model, x, list(targets.values()), **opts)
        return dict(zip(targets, maps, strict=True))
    out = {}
    for t, w in targets.items():
        if name in ("gradient", "gradient_x_input") and not opts:
            if (key, t) not in ctx.gradients:
                ctx.gradients[(key, t)] = maker.gradient(model, x, w)
            g = ctx.gradients[(key, t)]
            out[t] = g if name == "gradient" else x[0] * g
        elif name == "locality_prior":  # model-free: the same map for every model
            if (t, repr(opts)) not in ctx.model_free:
                ctx.model_free[(t, repr(opts))] = locality_prior(None, x, w, **opts)
            out[t] = ctx.model_free[(t, repr(opts))]
        else:
            try:
                out[t] = maker.method(name, model, x, w, **opts)
            except TypeError as err:
                raise StrokeLRPError(
                    f"method {name!r}: bad options {sorted(opts)} ({err})"
                ) from err
    return out


def localisation(r: np.ndarray, ctx: CaseContext) -> dict[str, float]:
    """The localisation columns of map r (C, *S): mass and rank accuracy and the pointing
    game against the label (NaN without a non-empty one), the context share outside the
    predicted lesion, and the positive share of ADC's and rCBF's relevance in the lesion (the
    label, else the prediction; NaN where the data set's channels (``ctx.channels``) have
    no ADC, or no rCBF / CBF)."""
    from strokelrp.analysis import localisation as loc

    truth = None if ctx.y is None else np.asarray(ctx.y, bool)
    has_truth = truth is not None and truth.shape == ctx.target.shape and bool(truth.any())
    lesion = truth if has_truth else ctx.target
    out = {
        "mass_accuracy": loc.mass_accuracy(r, truth) if has_truth else math.nan,
        "rank_accuracy": loc.rank_accuracy(r, truth) if has_truth else math.nan,
        "pointing_game": loc.pointing_game(r, truth) if has_truth else math.nan,
        "context_share": loc.context_share(r, ctx.target),
    }
    names = [n.lower() for n in ctx.channels or ()]
    if len(names) != r.shape[0]:
        names = []
    for name, wanted in (("positive_adc", ("adc",)), ("positive_rcbf", ("rcbf", "cbf"))):
        found = [names.index(w) for w in wanted if w in names]
        out[name] = loc.positive_share(r, lesion, found[0]) if found else math.nan
    return out


def assess_method(
    model: nn.Module,
    ctx: CaseContext,
    method: str,
    seeds: Sequence[int] = (1, 2, 3),
    cascade: bool = False,
    extras: bool = True,
    points: list[dict[str, Any]] | None = None,
    cascades: Sequence[str] = CASCADES,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The measures of one method on one case: (row without ``case``, cascade rows of the
    ``cascades`` orders when ``cascade``).

    ``extras=False`` skips the voxel-level curve and the other removal kinds' curves.
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
    names = list(variants(ctx.removal)) if extras else ["element"]
    kinds = [("morf", "element"), ("lerf", "element")]
    kinds += [("morf", v) for v in names if v != "element"]
    curves = []
    for which, variant in kinds:
        level, removal = variant_of(variant, ctx.removal)
        order = ordering(r, which == "morf", voxel=level == "voxel")
        curves.append(Curve(order, level == "voxel", removal))
    drops = dict(zip(kinds, ctx.curves(model, weights, curves, s0), strict=True))

    def random_curve(variant: str) -> float:
        value = ctx.random_aopc(model, weights, target_name, variant)
        if points is not None:
            for seed, d in enumerate(ctx.random[(target_name, variant)]):
                points.extend(
                    curve_points(method, "random", variant, ctx.fractions, d, seed, ctx.removal)
                )
        return value

    def prior_curve(variant: str) -> float:
        if name == "locality_prior" and not opts:  # the prior itself: its own MoRF curve
            return aopc(drops[("morf", variant)])
        return ctx.prior_aopc(model, weights, target_name, variant)

    if points is not None:
        for (which, variant), d in drops.items():
            points.extend(curve_points(method, which, variant, ctx.fractions, d, None, ctx.removal))
    row["morf_aopc"] = aopc(drops[("morf", "element")])
    row["lerf_aopc"] = aopc(drops[("lerf", "element")])
    row["random_aopc"] = random_curve("element")
    row["prior_aopc"] = prior_curve("element")
    row["prior_gap"] = row["morf_aopc"] - row["prior_aopc"]
    row["random_gap"] = row["morf_aopc"] - row["random_aopc"]
    reads: list[dict[str, float]] = []
    for seed in seeds:
        other = run(ctx.reinitialised(model, seed), seed, {target_name: weights})[target_name]
        reads.append(
            ctx.randomisation(r, other)
            | {"emprt": emprt(within(brain, r, False), within(brain, other, False))}
        )
    randomisation = _randomisation_summary([v["rho"] for v in reads])
    row["randomisation_rho"] = randomisation.pop("randomisation_rho")
    r_les = trained.get("lesion", r)
    r_bg = trained["background"]
    row["contrast_rho"] = spearman(within(brain, r_les, False), within(brain, r_bg, False))
    # the channel shares of |R| for any number of spatial axes: (C, N, 1, 1) is a (C, D, H, W)
    row["ablation_rho"] = ablation_rho(
        abs_modality_shares(r.reshape(r.shape[0], -1, 1, 1)), ctx.drops
    )
    later: dict[str, float] = {}
    for key in ("signed_rho", "shell_rho", "ssim"):
        later[f"randomisation_{key.removesuffix('_rho')}"] = _mean([v[key] for v in reads])
    later["emprt"] = _mean([v["emprt"] for v in reads])
    later["smprt"] = (
        smprt(ctx, model, seeds[0], (name, opts, filt), target_name, weights)
        if ctx.smprt_samples
        else math.nan
    )
    for variant in names[1:]:
        suffix = "voxel" if variant == "voxel" else variant
        row[f"morf_aopc_{suffix}"] = aopc(drops[("morf", variant)])
        row[f"random_aopc_{suffix}"] = random_curve(variant)
        if variant != "voxel":
            row[f"prior_aopc_{suffix}"] = prior_curve(variant)
    row.update(localisation(_np(r), ctx))
    row["prior_rho"] = spearman(within(brain, r), ctx.prior) if name != "locality_prior" else 1.0
    row.update(randomisation)
    row.update(later)
    row["contrast_gradient"] = ctx.gradient_contrast(model, lesion_w, background_w)
    row["contrast_gap"] = row["contrast_rho"] - row["contrast_gradient"]
    row["target_voxels"] = int(ctx.target.sum())
    row["target_score"] = s0
    steps: list[dict[str, Any]] = []
    for order in cascades if cascade else ():
        for k, blocks in enumerate(cascade_steps(model, order), start=1):
            change = ctx.step_change(model, order, k, seeds[0])
            step = {"method": method, "order": order, "step": k, "layer": blocks[-1]}
            step |= {"logit_change": change, "skipped": int(change < LOGIT_CHANGE_MIN)}
            if not step["skipped"]:
                broken = _broken(model, blocks, seeds[0])
                other = run(broken, (order, k), {target_name: weights})[target_name]
                step |= ctx.randomisation(r, other)
            steps.append(step)
    row["cascade_skipped"] = " ".join(f"{s['order']}:{s['layer']}" for s in steps if s["skipped"])
    row["map_seconds"] = map_seconds
    row["seconds"] = time.perf_counter() - t0
    return row, steps


def _modules_under(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    return [
        n
        for n, _ in model.named_modules()
        if any(n == p or n.startswith(p + ".") for p in prefixes)
    ]


def _broken(model: nn.Module, blocks: Sequence[str], seed: int = 1) -> nn.Module:
    """``model`` with the top-level ``blocks`` re-initialised (eval mode). Each block draws its
    weights under its own seed (``seed`` and its place in :func:`cascade_groups`), so a block
    gets the same random weights at every step of every order: consecutive steps of a
    cascade differ only by the block added."""
    places = {g: i for i, g in enumerate(cascade_groups(model))}
    out = model
    for block in blocks:
        out = reinitialised(out, 1000 * seed + places[block], _modules_under(model, [block]))
    return out.eval()


def _mean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


SMPRT_NOISE = 0.1
"""sMPRT's noise: standard deviation as a share of the input's range (max - min)."""


def smprt(
    ctx: CaseContext,
    model: nn.Module,
    seed: int,
    method: tuple[str, dict[str, Any], str | None],
    target: str,
    weights: Tensor,
) -> float:
    """sMPRT (Hedström et al. 2023): Spearman of |R| in the brain between the denoised maps
    of the trained and the fully re-initialised model (``seed``); a denoised map is the mean
    of the maps at ``ctx.smprt_samples`` inputs x + noise (Gaussian, standard deviation
    :data:`SMPRT_NOISE` x the input's range; the last sample without noise), the same noisy
    inputs for both models. ``method``: (name, options, filter) as
    :func:`strokelrp.attribution.parse_method` gives them."""
    import dataclasses

    name, options, filt = method
    n = ctx.smprt_samples
    x = ctx.x
    std = SMPRT_NOISE * float(x.max() - x.min())
    gen = torch.Generator().manual_seed(seed)
    sums: list[Tensor | None] = [None, None]
    models = (model, ctx.reinitialised(model, seed))
    for i in range(n):
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device) * std
        noisy = dataclasses.replace(
            ctx, x=x + noise if i < n - 1 else x, gradients={}, model_free={}
        )
        for j, m in enumerate(models):
            got = _maps(noisy, m, ("smprt", j), name, filt, options, {target: weights})[target]
            sums[j] = got if sums[j] is None else sums[j] + got
    a, b = (within(ctx.brain, v / n) for v in sums if v is not None)
    return spearman(a, b)


QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 8},
    "occlusion": {"patch": (10, 24, 24)},
}
"""The method options of ``--profile quick``: the two multi-forward baselines at half
:data:`ASSESS_OPTIONS`' path steps and a patch with about a sixth of its patches (the
profile's cost and its verdicts against ``full``'s: docs/benchmarks.md and docs/assess.md,
"Profiles")."""

PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "quick": {
        "seeds": (1,),
        "random_seeds": 3,
        "extras": False,
        "fractions": (0.02, 0.1, 0.5, 2.0),
        "cascades": ("top_down",),
        "smprt_samples": 0,
        "options": QUICK_OPTIONS,
    },
}
"""``assess --profile``: settings that replace the given ones (``full``: none). ``quick``: one
re-initialisation, 3 random orders, no extras, 4 of the 8 fractions, only the top-down
cascade, no sMPRT and :data:`QUICK_OPTIONS` (its cost in one-map times: docs/benchmarks.md,
"Assessment profiles"). Apply one with :func:`profile_settings`."""

SMPRT_SAMPLES = 8
"""Noisy inputs per sMPRT map in ``assess``'s full profile (:func:`smprt`; 2 x this many
maps per method and case)."""


def profile_settings(profile: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (keyword arguments of :func:`assess`: ``seeds``, ``random_seeds``,
    ``extras``, ``fractions``, ``cascades``, ``smprt_samples``, ``options``) with those of
    :data:`PROFILES` ``[profile]`` replacing them; the profile's method options replace the
    given options (None: :data:`ASSESS_OPTIONS`) of the methods they name and keep the
    others."""
    if profile not in PROFILES:
        raise StrokeLRPError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    chosen = dict(PROFILES[profile])
    own = chosen.pop("options", None)
    out = {**settings, **chosen}
    if own is not None:
        given = settings.get("options")
        base = ASSESS_OPTIONS if given is None else given
        out["options"] = {k: dict(v) for k, v in base.items()} | {
            k: dict(v) for k, v in own.items()
        }
    return out


def with_reference(method: str, reference: str | None) -> str:
    """``method`` with the option ``reference=<reference>`` added when the method takes a
    reference (:data:`strokelrp.attribution.REFERENCE_METHODS`) and names none itself;
    unchanged otherwise (or when ``reference`` is None)."""
    from strokelrp.attribution import REFERENCE_METHODS

    name, opts, filt = parse_method(method)
    takes = name.startswith("lrp:") or name in REFERENCE_METHODS
    if reference is None or not takes or "reference" in opts:
        return method
    head = method.split("+", 1)[0].strip() if filt is not None else method.strip()
    tail = f"+{filt}" if filt is not None else ""
    if head.endswith(")"):
        return f"{head[:-1]},reference={reference}){tail}"
    return f"{head}(reference={reference}){tail}"


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
    removal: str = REMOVAL,
    channels: Sequence[str] | None = None,
    cascades: Sequence[str] = CASCADES,
    smprt_samples: int = 0,
    weights: Tensor | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Assess every method on one case: (rows with ``COLUMNS`` + ``EXTRA_COLUMNS`` of
    :mod:`strokelrp.analysis.assess`, cascade rows (``CASCADE_COLUMNS`` of
    :mod:`strokelrp.report.assess_run`) of the ``cascades`` orders (:data:`CASCADES`) when
    ``cascade``); ``smprt_samples``: noisy inputs per sMPRT map (0: no sMPRT column).

    ``points``, when given, receives the perturbation curves behind the AOPC columns, one
    dict per point with ``CURVE_COLUMNS`` (``seed`` None except for random orders).

    x (C, D, H, W) preprocessed as the model saw it (:func:`strokelrp.prepare_case`), y its
    label (D, H, W) or None (a 2-D network: x (C, H, W), y (H, W)). ``seeds``: the
    independent re-initialisations (>= 3 advised);
    ``random_seeds``: the random orderings (>= 5); ``fractions``: of the target's elements
    (:data:`strokelrp.analysis.assess.FRACTIONS`); ``removal``: the main AOPC columns' removal
    kind (:data:`strokelrp.analysis.removal.REMOVALS`); ``extras``: the voxel-level AOPC and
    the other removal kinds' columns; ``memory_budget``: bytes of every LRP walk and of the batches
    of perturbed inputs (as for :func:`strokelrp.lrp.engine.explain`); ``options``: method
    options used when a spec gives none (default :data:`ASSESS_OPTIONS`); ``channels``: the
    data set's channel names (they pick ADC and rCBF / CBF for the positive-share columns);
    ``weights`` (1, K, *S): the prediction target's W (default: from the model's prediction).

    ``model`` is scored by its forward; its maps come from :func:`maps_of` (a
    :class:`strokelrp.trust.windowed.WindowedModel` scores and explains whole volumes through
    a sliding window).
    """
    if len(seeds) < 1 or random_seeds < 1:
        raise StrokeLRPError("assess needs at least one re-initialisation and one random order")
    for order in cascades:
        if order not in CASCADES:
            raise StrokeLRPError(
                f"cascade order must be one of {', '.join(CASCADES)}, got {order!r}"
            )
    check_methods(model, methods)
    if memory_budget is not None:
        from strokelrp.lrp.budget import parse_bytes

        parse_bytes(memory_budget)
    xt = attribution_input(model, x if isinstance(x, Tensor) else np.asarray(x))
    was = model.training
    model.eval()
    try:
        ctx = prepare_context(
            model,
            xt,
            y,
            random_seeds,
            fractions,
            memory_budget,
            options,
            removal,
            channels,
            weights,
        )
        ctx.smprt_samples = smprt_samples
        rows, curves = [], []
        for method in methods:
            if progress is not None:
                progress(f"case {case}: {method}")
            mine: list[dict[str, Any]] | None = None if points is None else []
            row, steps = assess_method(
                model, ctx, method, seeds, cascade, extras, points=mine, cascades=cascades
            )
            rows.append({"case": case, **row})
            if points is not None and mine is not None:
                points += [{"case": case, **p} for p in mine]
            curves += [{"case": case, **s} for s in steps]
        return rows, curves
    finally:
        model.train(was)
