"""strokelrp: Layer-wise Relevance Propagation with amplitude filters for 3-D stroke-lesion
segmentation networks (a faithful, fast reimplementation of Tjoa et al. 2020).

The public API is re-exported here lazily, so that ``strokelrp --help`` does not import torch.
It includes the parsers and formatters the command line uses (``parse_filter``,
``parse_bytes``, ``parse_method``, ``inspect_data``, ``format_grid`` ...): the CLI
imports from here and from :mod:`strokelrp.pipeline` only.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "synthesize_isles2017": "strokelrp.data.synth",
    "synthesize_layout": "strokelrp.data.synth_layouts",
    "inspect_data": "strokelrp.data.layouts",
    "LAYOUTS": "strokelrp.data.layouts",
    "load_cases": "strokelrp.data.layouts",
    "Case": "strokelrp.data.layouts",
    "UNet3D": "strokelrp.model.unet3d",
    "load_run": "strokelrp.train.checkpoint",
    "RunDir": "strokelrp.run_files",
    "prepare_case": "strokelrp.data.preprocess",
    "load_case": "strokelrp.data.layouts",
    "explain": "strokelrp.lrp.engine",
    "attribute": "strokelrp.attribution",
    "method_names": "strokelrp.attribution",
    "assess": "strokelrp.trust.assess",
    "Explanation": "strokelrp.lrp.engine",
    "PassFilter": "strokelrp.lrp.filters",
    "ClampFilter": "strokelrp.lrp.filters",
    "preset": "strokelrp.lrp.presets",
    "inclusivity": "strokelrp.analysis.inclusivity",
    "show": "strokelrp.pipeline.view",
    "SERIES": "strokelrp.config",
    "load_nnunet": "strokelrp.families.nnunet",
    "assess_nnunet": "strokelrp.pipeline.assess_nnunet",
    "sweep_nnunet": "strokelrp.pipeline.sweep_nnunet",
    "WindowedModel": "strokelrp.trust.windowed",
    "StrokeLRPError": "strokelrp.errors",
    "DataError": "strokelrp.errors",
    "TrainConfig": "strokelrp.config",
    "PRESETS": "strokelrp.lrp.presets",
    "DEFAULT_PRESET": "strokelrp.lrp.presets",
    "TARGETS": "strokelrp.lrp.presets",
    "parse_filter": "strokelrp.lrp.filters",
    "parse_bytes": "strokelrp.lrp.budget",
    "parse_method": "strokelrp.attribution",
    "discover_cases": "strokelrp.data.layouts",
    "format_grid": "strokelrp.data.layouts",
    "format_spacing": "strokelrp.data.layouts",
    "is_main_process": "strokelrp.device",
    "read_csv": "strokelrp.run_files",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strokelrp' has no attribute {name!r}")
