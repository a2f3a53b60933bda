"""Orchestration: what the command line and the demo call.

Each function here loads (a trained run, the cases), computes (explain, attribute, assess),
and writes through the pure functions of :mod:`strokelrp.analysis` and :mod:`strokelrp.report`
(which take arrays and tables, never a run folder): :mod:`.explain` (one case) and
:mod:`.sweep` (every case x setting, resumable, ``torchrun``); :mod:`.report` reads a
run's files for the HTML report; :mod:`.demo` runs every stage on synthetic data.

The command line imports from this package and the public API (:mod:`strokelrp`) only.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train_run": "strokelrp.train.loop:train",
    "evaluate_run": "strokelrp.train.evaluate:evaluate",
    "read_sweep_tables": "strokelrp.analysis.table:read_tables",
    "sweep_summary_lines": "strokelrp.analysis.sweep:summary_lines",
    "sweep_summary_records": "strokelrp.analysis.sweep:summary_records",
    "assess_summary_lines": "strokelrp.report.assess_run:summary_lines",
    "assess_method_summaries": "strokelrp.analysis.assess:summarize_methods",
    "parse_folds": "strokelrp.families.nnunet.model_folder:parse_folds",
    "set_command_line": "strokelrp.provenance:set_command_line",
}
"""The stages and printouts the command line runs that live below this package (training and
evaluation in ``train/``, the summaries of ``analysis/`` and ``report/``), under the names
the CLI calls them by; loaded lazily."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'strokelrp.pipeline' has no attribute {name!r}")
