"""Verdicts per method from assess rows: statistics and pass marks computed by hand."""

from __future__ import annotations

import math

import pytest

from strokelrp.analysis.verdict import CHECKS, method_summary


def row(method: str, case: str, **values: float) -> dict:
    base = {
        "brain_share": 0.95,
        "lesion_share": 0.6,
        "morf_aopc": 2.0,
        "lerf_aopc": -1.0,
        "random_aopc": 0.1,
        "randomisation_rho": 0.8,
        "contrast_rho": 0.5,
        "ablation_rho": 0.5,
        "prior_rho": 0.9,
    }
    return {"case": case, "method": method, **{k: str(v) for k, v in (base | values).items()}}


def test_a_method_that_passes_and_one_that_fails_named_checks() -> None:
    rows = [
        row("good", "4"),
        row("good", "5", morf_aopc=1.0, random_aopc=0.05),  # ratios 20 and 20
        row("bad", "4", brain_share=0.5, morf_aopc=0.3, contrast_rho=-0.99),
        row("bad", "5", brain_share=0.6, morf_aopc=0.5, contrast_rho=-0.97, ablation_rho=""),
        row("bad", "12", brain_share=0.7, morf_aopc=5.0),
    ]
    good, bad = method_summary(rows)
    assert good["method"] == "good" and good["n_cases"] == 2
    assert good["morf_ratio"] == pytest.approx(20.0)
    assert good["failed"] == [] and good["passed"] == [c.label for c in CHECKS]
    assert good["verdict"].startswith("good: passes all 5 checks")
    assert "Randomisation ρ 0.80, locality-prior ρ 0.90" in good["verdict"]

    assert bad["brain_share"] == pytest.approx(0.6)  # (0.5 + 0.6 + 0.7) / 3
    assert bad["morf_ratio"] == pytest.approx(5.0)  # median of 3, 5 and 50
    assert bad["abs_contrast_rho"] == pytest.approx((0.99 + 0.97 - 0.5) / 3)  # |mean|, not mean|.|
    assert bad["ablation_rho"] == pytest.approx(0.5)  # the empty cell is left out
    assert bad["failed"] == ["in the brain", "faithful"]
    assert "fails in the brain: brain_share 0.6 (needs >= 0.9)" in bad["verdict"]
    assert "faithful: morf_ratio 5 (needs >= 10)" in bad["verdict"]


def test_undefined_statistics_fail() -> None:
    [s] = method_summary([row("blank", "1", brain_share=float("nan"), random_aopc=0.0)])
    assert math.isnan(s["brain_share"]) and math.isnan(s["morf_ratio"])
    assert s["failed"] == ["in the brain", "faithful"]
