"""The demo's quick assessment: which cases and which sweet-spot settings it assesses."""

from __future__ import annotations

import json
from pathlib import Path

from synthetic_sweep_rows import alpha0_by_hand, make_rows

from strokelrp.analysis.table import write_table
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.pipeline.quick_assess import METHODS, quick_cases, sweet_spot_methods


def test_the_sweet_spots_of_the_runs_own_sweep(tmp_path: Path) -> None:
    run = tmp_path / "A1"
    assert sweet_spot_methods(run, "paper") == []  # no sweep yet
    rows = [r for r in make_rows() if r["series"] == "A"]
    write_table(run / "sweep" / "sweep.csv", rows)
    expected = [
        f"lrp:paper+{kind}:0,{alpha0:g}"
        for kind in ("pass", "clamp")
        if (alpha0 := alpha0_by_hand(rows, kind)) < 1.0
    ]
    assert expected and sweet_spot_methods(run, "paper") == expected
    assert sweet_spot_methods(run, "epsilon") == []  # the sweep used other rules
    assert METHODS[0] == "lrp:epsilon" and "locality_prior" in METHODS


def test_held_out_cases_first_else_the_first_cases(tmp_path: Path) -> None:
    data = synthesize_isles2017(tmp_path / "data", 3, shape=(8, 8, 4))
    run = tmp_path / "run"
    run.mkdir()
    assert quick_cases(run, data) == (["1", "2"], "training")
    (run / "split.json").write_text(json.dumps({"train": ["1"], "validation": ["3", "2"]}))
    assert quick_cases(run, data) == (["3", "2"], "held-out")
    assert quick_cases(run, data, n=1) == (["3"], "held-out")
