"""Figures are written as non-empty PNG + SVG of the expected pixel size."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from synthetic_sweep_rows import make_rows

from strokelrp.analysis.calculus import mu_matrix, sweet_spot
from strokelrp.errors import StrokeLRPError
from strokelrp.report import figures


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def check_pair(paths: list[Path], name: str, width_in: float, height_in: float) -> None:
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.svg"]
    for p in paths:
        assert p.stat().st_size > 1000
    assert png_size(paths[0]) == (round(width_in * 150), round(height_in * 150))
    assert paths[1].read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert not list(paths[0].parent.glob(".*.tmp"))  # no temporary files left


def test_figure4_has_pass_and_clamp_panels(tmp_path: Path) -> None:
    paths = figures.figure4_inclusivity(make_rows(), tmp_path)
    check_pair(paths, "figure4_inclusivity", 12.0, 8.6)
    svg = paths[1].read_text(encoding="utf-8")
    for text in ("pass filters", "clamp filters", "series A", "series B", "mean A", "raw"):
        assert text in svg


def test_figure4_rejects_an_empty_table(tmp_path: Path) -> None:
    with pytest.raises(StrokeLRPError, match="empty"):
        figures.figure4_inclusivity([], tmp_path)


def test_figure5_pass_and_annex2_clamp(tmp_path: Path) -> None:
    rows = make_rows()
    p5 = figures.figure5_signal(rows, tmp_path, kind="pass")
    check_pair(p5, "figure5_signal_pass", 0.55 * 11 + 2.5, 7.2)  # 11 settings: raw + 10 pass
    svg = p5[1].read_text(encoding="utf-8")
    assert "(D1)" in svg and "(D2)" in svg
    a2 = figures.figure5_signal(rows, tmp_path, kind="clamp")
    check_pair(a2, "annex2_signal_clamp", 6.0, 7.2)  # raw + 5 clamp: the minimum width
    assert "1 invalid value(s)" in a2[1].read_text(encoding="utf-8")  # the NaN row is counted


def test_sweet_spot_figure_marks_alpha0(tmp_path: Path) -> None:
    mu, alphas, _ = mu_matrix(make_rows(), kind="pass")
    spot = sweet_spot(mu, alphas)
    paths = figures.sweet_spot_figure({"pass": spot}, tmp_path)
    check_pair(paths, "sweet_spot", 5.5, 3.6)
    assert f"α₀ = {spot.alpha0:g}" in paths[1].read_text(encoding="utf-8")


def test_training_curves_read_the_log_the_loop_writes(tmp_path: Path) -> None:
    """Logs written and read back by the training loop's own functions; panel B draws the
    training-step Dice of both runs and the held-out Dice only where there is one."""
    from strokelrp.run_files import RunDir

    logs = {}
    for run, held_out in (("A1", True), ("B1", False)):
        rows = [
            {
                "epoch": e,
                "loss": 1 / (e + 1),
                "train_dice_trainmode": 1 - 1 / (e + 1),
                "val_dice": 0.5 if held_out else None,
                "seconds": 1.0,
            }
            for e in range(1, 6)
        ]
        (tmp_path / run).mkdir()
        RunDir(tmp_path / run).write_train_log(rows)
        logs[run] = RunDir(tmp_path / run).read_train_log()
    paths = figures.training_curves(logs, tmp_path)
    check_pair(paths, "training_curves", 8.0, 3.2)
    svg = paths[1].read_text(encoding="utf-8")
    for label in ("A1 (training)", "A1 (held-out)", "B1 (training)"):
        assert label in svg
    assert "B1 (held-out)" not in svg
    with pytest.raises(
        StrokeLRPError, match=r"A1: training log without column.*train_dice_trainmode"
    ):
        figures.training_curves({"A1": [{"epoch": 1, "loss": 0.5, "train_dice": 0.2}]}, tmp_path)


def test_series_colours_are_fixed_and_distinct() -> None:
    order = ["A", "B", "19x64x64", "19x32x32"]
    colours = [figures.series_colour(s, order) for s in order]
    assert len(set(colours)) == 4
    assert colours[0] == "#0072B2"
    assert np.all([c.startswith("#") for c in colours])


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    mask = os.umask(0o022)
    try:
        row = {"epoch": 1, "loss": 0.5, "train_dice_trainmode": 0.2, "val_dice": None}
        logs = {"A1": [row]}
        paths = figures.training_curves(logs, tmp_path)
    finally:
        os.umask(mask)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths)  # not mkstemp's 0600
