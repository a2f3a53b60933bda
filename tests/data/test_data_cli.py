"""``strokelrp synth`` and ``strokelrp inspect``: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli
from data_helpers import BREAKERS, Breaker, modality_file


def test_synth_then_inspect_lists_valid_cases(tmp_path: Path, capsys) -> None:
    out = tmp_path / "d"
    code, text, _ = run_cli(
        ["synth", str(out), "--cases", "6", "--shape", "32", "32", "8", "--seed", "3"], capsys
    )
    assert code == 0 and "wrote 6 synthetic cases" in text
    code, text, err = run_cli(["inspect", str(out)], capsys)
    assert code == 0, err
    lines = text.splitlines()
    assert lines.pop(0) == "layout: isles2017 (6 cases; channels ADC, MTT, rCBF, rCBV, Tmax, TTP)"
    assert lines[0].split() == [
        "case",
        "grid",
        "(x",
        "y",
        "z)",
        "spacing",
        "lesion",
        "mL",
        "status",
    ]
    rows = lines[1:7]
    assert [r.split()[0] for r in rows] == ["1", "2", "4", "5", "6", "7"]
    assert all(r.split()[1] == "32x32x8" and r.endswith("ok") for r in rows)
    assert lines[7] == "6 cases, 6 valid, 0 invalid"


def test_inspect_json(tiny: Path, capsys) -> None:
    code, text, _ = run_cli(["inspect", str(tiny), "--json"], capsys)
    doc = json.loads(text)
    assert code == 0 and doc["n_cases"] == 4 and doc["n_invalid"] == 0
    first = doc["cases"][0]
    assert first["case_id"] == "1" and first["grid"] == [32, 32, 8] and first["status"] == "ok"
    assert first["lesion_ml"] > 0 and first["problems"] == []


def test_synth_options_reach_the_manifest(tmp_path: Path, capsys) -> None:
    out = tmp_path / "u"
    args = ["synth", str(out), "--cases", "2", "--shape", "24", "20", "6"]
    args += ["--uninformative", "tmax", "--uninformative", "ADC", "--varied-grids"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    manifest = json.loads((out / "synth_manifest.json").read_text())
    assert manifest["uninformative_modalities"] == ["Tmax", "ADC"]
    assert manifest["shape_hwd"] == [24, 20, 6] and manifest["varied_grids"]


@pytest.mark.parametrize(
    "args",
    [
        ["synth", "x"],  # --cases missing
        ["synth", "x", "--cases", "0"],
        ["synth", "x", "--cases", "2", "--uninformative", "T2"],
        ["synth", "x", "--cases", "2", "--shape", "3", "3"],
    ],
)
def test_synth_usage_errors_exit_2(tmp_path: Path, args: list[str], capsys) -> None:
    code, _, err = run_cli([args[0], str(tmp_path / args[1]), *args[2:]], capsys)
    assert code == 2 and "Traceback" not in err


def test_synth_into_a_foreign_folder_is_exit_1(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run_cli(["synth", str(tmp_path), "--cases", "1"], capsys)
    assert code == 1 and err.startswith("error: ") and "not empty" in err


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda b: b.__name__)
def test_inspect_exit_1_and_one_line_per_problem(tiny: Path, breaker: Breaker, capsys) -> None:
    rel, words = breaker(tiny)
    code, text, err = run_cli(["inspect", str(tiny)], capsys)
    assert code == 1
    assert "Traceback" not in text + err
    row = next(line for line in text.splitlines() if line.startswith("2 "))
    assert row.endswith("invalid")
    assert "4 cases, 3 valid, 1 invalid" in text
    problems = err.strip().splitlines()
    assert len(problems) == 1
    assert problems[0].startswith(f"error: case 2: {rel}: ") and words in problems[0]


def test_case_without_ot_is_valid_in_inspect(tiny: Path, capsys) -> None:
    shutil.rmtree(modality_file(tiny, "1", "OT").parent)
    code, text, _ = run_cli(["inspect", str(tiny)], capsys)
    assert code == 0
    row = next(line for line in text.splitlines() if line.startswith("1 "))
    assert "no OT" in row and row.endswith("ok")


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_inspect_bad_data_folder_is_exit_1(tmp_path: Path, make: str, capsys) -> None:
    target = tmp_path / "data"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("x")
    code, _, err = run_cli(["inspect", str(target)], capsys)
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err
    assert {
        "missing": "no such folder",
        "empty": "no known data layout found",
        "file": "not a folder",
    }[make] in err


def test_inspect_as_a_subprocess_has_no_traceback(tiny: Path) -> None:
    modality_file(tiny, "4", "OT").write_bytes(b"\x00" * 10)
    proc = subprocess.run(
        [sys.executable, "-m", "strokelrp", "inspect", str(tiny)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: case 4: training_4/")
