"""strokelrp: Layer-wise Relevance Propagation with amplitude filters for 3-D stroke-lesion
segmentation networks (a faithful, fast reimplementation of Tjoa et al. 2020).

The public API is re-exported here lazily, so that ``strokelrp --help`` does not import torch.
It includes the parsers and formatters the command line uses (``parse_filter``,
``parse_bytes``, ``parse_method``, ``inspect_isles2017``, ``format_grid`` ...): the CLI
imports from here and from :mod:`strokelrp.pipeline` only.
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
    "StrokeLRPError": "strokelrp.errors",
    "DataError": "strokelrp.errors",
    "TrainConfig": "strokelrp.config",
    "PRESETS": "strokelrp.lrp.presets",
    "DEFAULT_PRESET": "strokelrp.lrp.presets",
    "TARGETS": "strokelrp.lrp.presets",
    "parse_filter": "strokelrp.lrp.filters",
    "parse_bytes": "strokelrp.lrp.budget",
    "parse_method": "strokelrp.attribution",
    "inspect_isles2017": "strokelrp.data.isles2017",
    "format_grid": "strokelrp.data.isles2017",
    "format_spacing": "strokelrp.data.isles2017",
    "is_main_process": "strokelrp.device",
    "read_csv": "strokelrp.run_files",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strokelrp' has no attribute {name!r}")
