"""Whole-volume prediction of an nnU-Net model folder, as ``nnUNetv2_predict`` computes it.

nnU-Net's preprocessing (:mod:`.preprocess`), the stitched logits of the project's sliding
window (:func:`strokelrp.sliding_window.window_logits`: the plan's patch size, step 0.5,
Gaussian weights, the checkpoint's mirror axes, averaged over the folds) and nnU-Net's export
of the logits to the native grid (softmax or sigmoid, un-resample, un-crop, un-transpose).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from strokelrp.families.nnunet.model_folder import NnUNetModel
from strokelrp.families.nnunet.preprocess import PreprocessedCase, native_labels, preprocess_case

if TYPE_CHECKING:
    import torch

    from strokelrp.sliding_window import Window


def nnunet_window(model: NnUNetModel, mirror: bool = True, step: float = 0.5) -> Window:
    """The :class:`strokelrp.sliding_window.Window` nnU-Net predicts ``model`` with."""
    from strokelrp.sliding_window import Window

    return Window(model.patch_size, step=step, mirror_axes=model.mirror_axes if mirror else ())


@dataclass
class WindowedCase:
    """One case ready for the window: ``case`` preprocessed by nnU-Net, ``window`` nnU-Net's,
    ``x`` (C, *S) its tensor and ``predicted`` (K, *S) float32 the stitched logits as
    ``nnUNetv2_predict`` computes them (float16 stitching), from which targets are taken."""

    case: PreprocessedCase
    window: Window
    x: torch.Tensor
    predicted: torch.Tensor


def windowed_case(
    model: NnUNetModel,
    files: Sequence[str | Path],
    case_id: str,
    *,
    label: str | Path | None = None,
    mirror: bool = True,
    log: Callable[[str], None] | None = None,
    detail: str = "",
) -> WindowedCase:
    """Preprocess one case (``label``: its label file or None), build nnU-Net's window and
    predict it; ``log`` gets one line: patches x mirrorings x folds (and ``detail``)."""
    import torch

    from strokelrp.sliding_window import window_logits

    case = preprocess_case(model, files, case_id, label)
    window = nnunet_window(model, mirror)
    x = torch.from_numpy(case.data)
    if log is not None:
        log(
            f"{case_id}: {len(window.tiles(x.shape[1:]))} patch(es) x {len(window.mirrorings)} "
            f"mirroring(s) x {len(model.networks)} fold(s){detail}"
        )
    predicted = window_logits(model.networks, x, window, stitch_dtype=torch.float16).float()
    return WindowedCase(case, window, x, predicted)


@dataclass
class Prediction:
    """``logits`` (K, *S) on the network's grid; ``segmentation`` (*native) and
    ``probabilities`` (K, *native) in the reader's array order (see :mod:`.preprocess`)."""

    case: PreprocessedCase
    logits: np.ndarray
    segmentation: np.ndarray
    probabilities: np.ndarray


def predict_case(
    model: NnUNetModel,
    files: Sequence[str | Path],
    case_id: str,
    *,
    mirror: bool = True,
    step: float = 0.5,
    nnunet_arithmetic: bool = True,
) -> Prediction:
    """nnU-Net's prediction of one case (its channel files in ``dataset.json`` order).

    ``nnunet_arithmetic``: stitch in float16 as nnU-Net 2.x does, so the result equals
    ``nnUNetv2_predict``'s; False stitches exactly (float32), the logits explanations explain."""
    import torch

    from strokelrp.sliding_window import window_logits

    case = preprocess_case(model, files, case_id)
    logits = window_logits(
        model.networks,
        torch.from_numpy(case.data),
        nnunet_window(model, mirror, step),
        stitch_dtype=torch.float16 if nnunet_arithmetic else None,
    )
    seg, prob = native_labels(model, logits.detach().cpu(), case.properties)
    return Prediction(case, logits.detach().cpu().float().numpy(), seg, prob)
