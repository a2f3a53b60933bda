"""The documentation says what the code does (issue 21, point 5: defects a new user hit)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import run_cli as cli

ROOT = Path(__file__).parents[1]


def test_shell_completion_is_documented_and_works(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"_STROKELRP_COMPLETE=(\w+)_source strokelrp", readme)
    assert sorted(commands) == ["bash", "fish", "zsh"]
    monkeypatch.setenv("_STROKELRP_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "strokelrp exp")
    monkeypatch.setenv("COMP_CWORD", "1")
    code, out, _ = cli([], capsys)
    assert code == 0 and out.split() == ["plain,explain"]


def test_sweep_doc_does_not_say_the_drawn_curves_are_not_drawn() -> None:
    """report/html.py draws the MoRF/LeRF/random curves (perturbation_figure); sweep.md said not."""
    from strokelrp.report import html

    assert "perturbation_figure" in Path(html.__file__).read_text()
    text = " ".join((ROOT / "docs" / "sweep.md").read_text().split())
    assert "curves per fraction are not drawn" not in text
    assert "MoRF, LeRF and random-order curves per method" in text


@pytest.mark.parametrize("command", ["inspect", "evaluate", "assess", "sweep"])
def test_every_table_command_has_json(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli([command, "--help"], capsys)
    assert code == 0 and "--json" in out
