"""The CLI boundary: library errors become one `error:` line and exit 1, bugs keep a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

import strokelrp.pipeline.report as report_pipeline
from strokelrp.cli import main


def _raising(error: Exception):
    def build_report(*args, **kwargs):
        raise error

    return build_report


def test_a_value_error_from_the_library_is_one_error_line(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STROKELRP_DEBUG", raising=False)
    monkeypatch.setattr(
        report_pipeline, "build_report", _raising(ValueError("w2 should be positive"))
    )
    code, out, err = run_cli(["report", str(tmp_path)], capsys)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "error: w2 should be positive (ValueError; STROKELRP_DEBUG=1 shows the traceback)"
    ]


def test_debug_keeps_the_traceback_and_other_errors_are_not_swallowed(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        report_pipeline, "build_report", _raising(ValueError("w2 should be positive"))
    )
    monkeypatch.setenv("STROKELRP_DEBUG", "1")
    with pytest.raises(ValueError, match="w2"):
        main(["report", str(tmp_path)])
    monkeypatch.delenv("STROKELRP_DEBUG")
    monkeypatch.setattr(report_pipeline, "build_report", _raising(TypeError("a bug")))
    with pytest.raises(TypeError, match="a bug"):
        main(["report", str(tmp_path)])


def test_folds_take_nnunets_space_separated_form() -> None:
    """``--folds 0 1 2`` becomes ``--folds 0,1,2`` before click parses; the arguments after the
    fold values (DATA, options) and anything after ``--`` are left alone."""
    from strokelrp.cli import FOLD_VALUE, join_option_values

    def join(*args: str) -> list[str]:
        return join_option_values(list(args), "--folds", FOLD_VALUE)

    assert join("explain", "--folds", "0", "1", "2", "DATA", "--case", "4") == [
        "explain", "--folds", "0,1,2", "DATA", "--case", "4",
    ]  # fmt: skip
    assert join("--folds", "all", "DATA") == ["--folds", "all", "DATA"]
    assert join("--folds", "0,1", "3", "--out", "o") == ["--folds", "0,1,3", "--out", "o"]
    assert join("--folds", "0,", "1") == ["--folds", "0,1"]
    assert join("--", "--folds", "0", "1") == ["--", "--folds", "0", "1"]
    assert join("--folds", "x") == ["--folds", "x"]  # left for the option's check
