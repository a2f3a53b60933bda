"""Layer-wise Relevance Propagation: rules, composites, graph capture, the relevance steps'
registry, the engine, filters, presets.

Names are loaded lazily (``strokelrp.lrp.PRESETS`` does not import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "explain": "strokelrp.lrp.engine",
    "Explanation": "strokelrp.lrp.engine",
    "Conservation": "strokelrp.lrp.engine",
    "PassFilter": "strokelrp.lrp.filters",
    "ClampFilter": "strokelrp.lrp.filters",
    "PAPER_GRID": "strokelrp.lrp.filters",
    "apply_filters": "strokelrp.lrp.filters",
    "filter_label": "strokelrp.lrp.filters",
    "parse_filter": "strokelrp.lrp.filters",
    "Preset": "strokelrp.lrp.presets",
    "PRESETS": "strokelrp.lrp.presets",
    "preset": "strokelrp.lrp.presets",
    "Composite": "strokelrp.lrp.composites",
    "Step": "strokelrp.lrp.steps",
    "PASS": "strokelrp.lrp.steps",
    "Adjoint": "strokelrp.lrp.steps",
    "ZRule": "strokelrp.lrp.steps",
    "register_module_step": "strokelrp.lrp.steps",
    "register_function_step": "strokelrp.lrp.steps",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strokelrp.lrp' has no attribute {name!r}")
