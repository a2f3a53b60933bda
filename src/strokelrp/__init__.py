"""strokelrp: Layer-wise Relevance Propagation with amplitude filters for 3-D stroke-lesion
segmentation networks (a faithful, fast reimplementation of Tjoa et al. 2020).

The public API is re-exported here lazily, so that ``strokelrp --help`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "synthesize_isles2017": "strokelrp.data.synth",
    "load_isles2017": "strokelrp.data.isles2017",
    "Case": "strokelrp.data.isles2017",
    "UNet3D": "strokelrp.model.unet3d",
    "load_run": "strokelrp.train.checkpoint",
    "RunDir": "strokelrp.run_files",
    "prepare_case": "strokelrp.data.preprocess",
    "load_case": "strokelrp.data.isles2017",
    "explain": "strokelrp.lrp.engine",
    "attribute": "strokelrp.attribution",
    "method_names": "strokelrp.attribution",
    "assess": "strokelrp.analysis.assess",
    "Explanation": "strokelrp.lrp.engine",
    "PassFilter": "strokelrp.lrp.filters",
    "ClampFilter": "strokelrp.lrp.filters",
    "preset": "strokelrp.lrp.presets",
    "inclusivity": "strokelrp.analysis.inclusivity",
    "MODALITIES": "strokelrp.config",
    "SERIES": "strokelrp.config",
    "load_nnunet": "strokelrp.families.nnunet",
    "StrokeLRPError": "strokelrp.errors",
    "DataError": "strokelrp.errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strokelrp' has no attribute {name!r}")
