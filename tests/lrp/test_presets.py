"""Presets are data: the registry, overrides, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import PRESETS, RULE_NAMES, Preset, preset, resolve
from strokelrp.lrp.rules import RULES, Epsilon, Gamma, WPlus, ZBox, ZPlus


def test_registry_and_rule_names() -> None:
    assert list(PRESETS) == [
        "paper", "epsilon", "wplus", "zplus", "recommended", "gamma", "composite"
    ]  # fmt: skip
    assert tuple(RULES) == RULE_NAMES


def test_paper_preset_is_the_papers_choice() -> None:
    p = preset("paper")
    assert (p.first, p.body, p.head, p.batchnorm, p.epsilon) == ("zB", "w+", "w+", "pass", 1e-9)
    first = p.rule("first")
    assert isinstance(first, ZBox) and (first.low, first.high) == (0.0, 1.0)
    assert isinstance(p.rule("body"), WPlus) and isinstance(p.rule("head"), WPlus)


def test_recommended_preset() -> None:
    p = preset("recommended")
    assert p.batchnorm == "fold"
    assert isinstance(p.rule("first"), ZBox)
    assert isinstance(p.rule("body"), ZPlus)
    assert isinstance(p.rule("head"), Epsilon)


def test_composite_preset_puts_epsilon_up_gamma_middle_zb_first() -> None:
    p = preset("composite")
    assert p.batchnorm == "fold"
    assert isinstance(p.rule("first"), ZBox)
    assert isinstance(p.rule("body"), Gamma) and p.rule("body").gamma == 0.25
    assert isinstance(p.rule("upper"), Epsilon) and isinstance(p.rule("head"), Epsilon)
    assert isinstance(preset("gamma").rule("upper"), Gamma)  # no upper rule: the body's
    assert "upper=epsilon" in p.summary() and "gamma=0.25" in p.summary()


def test_overrides_make_a_new_preset() -> None:
    p = preset("epsilon", epsilon=0.01)
    assert p.epsilon == 0.01 and p.rule("body").epsilon == 0.01
    assert PRESETS["epsilon"].epsilon == 0.25  # the registry is untouched
    q = preset("paper", low=[0.0] * 6, high=[2.0] * 6, batchnorm="fold")
    assert q.rule("first").high == [2.0] * 6 and q.batchnorm == "fold"
    assert resolve(q) is q and resolve("zplus") is PRESETS["zplus"]
    assert preset("paper").summary() == "paper: first=zB body=w+ head=w+ bn=pass eps=1e-09"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: preset("papr"), "did you mean 'paper'"),
        (lambda: preset("paper", epsilom=0.1), "did you mean 'epsilon'"),
        (lambda: preset("paper", epsilon=0.0), "epsilon must be > 0"),
        (lambda: preset("paper", batchnorm="merge"), "'pass' or 'fold'"),
        (lambda: preset("paper", body="zplus"), "known: epsilon, w\\+, z\\+, zB, gamma"),
        (lambda: Preset("mine", "zB", "gama", "epsilon"), "unknown body rule"),
        (lambda: preset("paper", gamma=-1), "gamma must be >= 0"),
        (lambda: resolve(3), "preset name, a Preset or a Composite"),
    ],
)
def test_bad_presets_raise_clear_errors(make, message: str) -> None:
    with pytest.raises(StrokeLRPError, match=message):
        make()


def test_preset_names_load_without_torch() -> None:
    code = (
        "import sys; from strokelrp.lrp.presets import PRESETS; "
        "assert 'torch' not in sys.modules, 'torch imported'; print(','.join(PRESETS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "paper,epsilon,wplus,zplus,recommended,gamma,composite"
