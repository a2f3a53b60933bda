"""One verdict per attribution method from an ``assess.csv``: the checks of issue 8, point 5.

Per method, over its cases (held-out cases in ``strokelrp assess``'s default):

=====================  ================================================  ==========
check                  statistic                                          passes if
=====================  ================================================  ==========
in the brain           mean ``brain_share``                               >= 0.9
on the target          mean ``lesion_share``                              >= 0.5
faithful               median over cases of ``morf_aopc / random_aopc``   >= 10
contrastive            abs(mean ``contrast_rho``)                         <= 0.95
follows the model      mean ``ablation_rho``                              >= 0.4
=====================  ================================================  ==========

Model randomisation has no pass mark (no method, baselines included, reached one in the first
survey: segmentation maps share a locality prior); it is reported beside ``prior_rho``, the
Spearman of the map with the model-free locality prior, so a reader sees how much of a map is
locality. A check whose statistic is undefined (NaN) counts as failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """One pass mark: ``label``, the statistic's name, its threshold, and the direction."""

    label: str
    statistic: str
    threshold: float
    at_least: bool

    def passes(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value >= self.threshold if self.at_least else value <= self.threshold

    def describe(self, value: float) -> str:
        sign = ">=" if self.at_least else "<="
        return f"{self.statistic} {value:.3g} (needs {sign} {self.threshold:g})"


CHECKS: tuple[Check, ...] = (
    Check("in the brain", "brain_share", 0.9, True),
    Check("on the target", "lesion_share", 0.5, True),
    Check("faithful", "morf_ratio", 10.0, True),
    Check("contrastive", "abs_contrast_rho", 0.95, False),
    Check("follows the model", "ablation_rho", 0.4, True),
)


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def _mean(values: Iterable[Any]) -> float:
    vals = _finite(values)
    return sum(vals) / len(vals) if vals else math.nan


def _median(values: Iterable[Any]) -> float:
    vals = sorted(_finite(values))
    if not vals:
        return math.nan
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def method_summary(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per method (in first-seen order) the statistics of :data:`CHECKS` and a verdict.

    ``rows``: ``assess.csv`` rows (strings or numbers). Each summary has ``method``,
    ``n_cases``, the mean of every measure, ``morf_ratio`` (median over cases of
    ``morf_aopc / random_aopc``), ``abs_contrast_rho``, ``passed`` (labels of the checks
    passed), ``failed`` and ``verdict`` (one line).
    """
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_method.setdefault(str(row["method"]), []).append(row)
    out = []
    for method, group in by_method.items():
        s: dict[str, Any] = {"method": method, "n_cases": len(group)}
        for column in (
            "brain_share",
            "lesion_share",
            "morf_aopc",
            "lerf_aopc",
            "random_aopc",
            "randomisation_rho",
            "contrast_rho",
            "ablation_rho",
            "prior_rho",
        ):
            s[column] = _mean(r.get(column) for r in group)
        ratios = []
        for r in group:
            morf, rand = _finite([r.get("morf_aopc")]), _finite([r.get("random_aopc")])
            if morf and rand and rand[0] > 0:
                ratios.append(morf[0] / rand[0])
        s["morf_ratio"] = _median(ratios)
        s["abs_contrast_rho"] = abs(s["contrast_rho"])
        s["passed"] = [c.label for c in CHECKS if c.passes(s[c.statistic])]
        s["failed"] = [c.label for c in CHECKS if not c.passes(s[c.statistic])]
        s["verdict"] = verdict_line(s)
        out.append(s)
    return out


def verdict_line(summary: Mapping[str, Any]) -> str:
    """``lrp:epsilon: passes 4 of 5 checks; fails on the target: lesion_share 0.42 (...)``."""
    failed = [c for c in CHECKS if not c.passes(summary[c.statistic])]
    head = f"{summary['method']}: "
    if not failed:
        head += f"passes all {len(CHECKS)} checks"
    else:
        head += f"passes {len(CHECKS) - len(failed)} of {len(CHECKS)} checks; fails "
        head += "; ".join(f"{c.label}: {c.describe(summary[c.statistic])}" for c in failed)
    rho, prior = summary.get("randomisation_rho", math.nan), summary.get("prior_rho", math.nan)
    return head + f". Randomisation ρ {rho:.2f}, locality-prior ρ {prior:.2f}"
