"""Run the ``strokelrp`` command line in-process, as the CLI tests do."""

from __future__ import annotations

import pytest

from strokelrp.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``strokelrp ARGV`` -> (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
