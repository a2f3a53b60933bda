"""The trust assessment through a sliding window: networks that predict a volume patch by patch.

:class:`WindowedModel` wraps the networks (folds) and the :class:`strokelrp.sliding_window.Window`
of a whole-volume predictor such as nnU-Net as one ``nn.Module`` whose forward is the exactly
stitched logits (B, C, *S) -> (B, K, *S), patch position by patch position with the B volumes'
patches in one batch (memory bounded by B patches). Everything :mod:`strokelrp.trust.assess`
scores by a forward therefore goes through the window unchanged: S(x), every perturbed input,
the modality ablation, and the re-initialised copies
(:func:`strokelrp.attribution.reinitialised` re-initialises every fold's network).

The maps cannot come from autograd through that forward (it would hold every patch's
activations), so the model's class carries its own map maker, :class:`WindowMaps`: every map
is :func:`strokelrp.sliding_window.window_attribute` of the same scalar S = sum(W * stitched
logits) (LRP with its filter inside each patch walk, gradient, integrated gradients,
occlusion, Grad-CAM), the same interface (:class:`strokelrp.trust.assess.MapMaker`) as the
plain networks' :class:`strokelrp.trust.assess.PlainMaps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from strokelrp.errors import StrokeLRPError
from strokelrp.sliding_window import Window, window_attribute, window_logits_batch


def _method(name: str, filt: str | None = None) -> str:
    return name if filt is None else f"{name}+{filt}"


class WindowMaps:
    """The :class:`strokelrp.trust.assess.MapMaker` of a :class:`WindowedModel`: maps of
    S = sum(W * stitched logits) through its window (x (1, C, *S), W (1, K, *S), maps
    (C, *S))."""

    @staticmethod
    def _call(model: WindowedModel, x: Tensor, method: str, weights: Tensor, **opts: Any) -> Tensor:
        if "reference" in opts:
            raise StrokeLRPError(
                f"method {method!r}: a reference is not available through the sliding window "
                "yet; assess without --reference"
            )
        nets = list(model.networks)
        return window_attribute(nets, x[0], model.window, method, weights[0], **opts).detach()

    def lrp(
        self,
        model: WindowedModel,
        x: Tensor,
        weights: Tensor,
        rules: str,
        filter: str | None,
        memory_budget: str | int | float | None,
        **opts: Any,
    ) -> Tensor:
        method = _method(f"lrp:{rules}", filter)
        return self._call(model, x, method, weights, memory_budget=memory_budget, **opts)

    def gradient(self, model: WindowedModel, x: Tensor, weights: Tensor) -> Tensor:
        return self._call(model, x, "gradient", weights)

    def occlusion(
        self, model: WindowedModel, x: Tensor, weights: Sequence[Tensor], **opts: Any
    ) -> list[Tensor]:
        return [self._call(model, x, "occlusion", w, **opts) for w in weights]

    def method(
        self, name: str, model: WindowedModel, x: Tensor, weights: Tensor, **opts: Any
    ) -> Tensor:
        return self._call(model, x, name, weights, **opts)


class WindowedModel(nn.Module):
    """The stitched whole-volume logits of ``networks`` (the folds, averaged) through
    ``window``: forward (B, C, *S) -> (B, K, *S), exactly stitched (the logits that
    explanations explain), patch by patch under ``torch.no_grad``. ``assess_maps``: its
    map maker for :mod:`strokelrp.trust.assess`."""

    assess_maps = WindowMaps()

    def __init__(self, networks: Sequence[nn.Module], window: Window) -> None:
        super().__init__()
        if not networks:
            raise StrokeLRPError("a windowed model needs at least one network (fold)")
        self.networks = nn.ModuleList(networks)
        self.window = window

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != len(self.window.patch_size) + 2:
            raise StrokeLRPError(
                f"x must be (B, C, *S) with {len(self.window.patch_size)} spatial axes, "
                f"got {tuple(x.shape)}"
            )
        return window_logits_batch(list(self.networks), x, self.window)
