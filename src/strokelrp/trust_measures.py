"""The names of the trust measures: one definition for ``assess.csv`` and ``assess_log.csv``.

A module of its own (no imports) so that ``train/`` (the log written during training) and
``analysis/`` (``strokelrp assess``) share the names without ``train/`` importing ``analysis/``
when it is loaded. docs/assess.md defines each measure.
"""

from __future__ import annotations

MEASURES: tuple[str, ...] = (
    "brain_share",
    "lesion_share",
    "morf_aopc",
    "lerf_aopc",
    "random_aopc",
    "prior_aopc",
    "prior_gap",
    "random_gap",
    "randomisation_rho",
    "contrast_rho",
    "ablation_rho",
)
"""The main trust measures, in table order (the columns of ``assess.csv`` after case and
method, and of ``assess_log.csv`` after epoch, split, case and method)."""
