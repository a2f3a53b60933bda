"""Run the ``strokelrp`` command line in-process, as the CLI tests do."""

from __future__ import annotations

import pytest

from strokelrp.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``strokelrp ARGV`` -> (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:  # sys.exit("message") exits with 1
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
