"""The sweep on a tiny random network and two tiny synthetic cases: rows, values, resume."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from strokelrp.analysis.sweep import case_rows, describe, done_pairs, merge_rows
from strokelrp.analysis.table import COLUMNS, read_table
from strokelrp.config import TrainConfig
from strokelrp.data.layouts.isles2017 import CHANNELS as MODALITIES
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import DEFAULT_PRESET
from strokelrp.model import UNet3D
from strokelrp.pipeline.sweep import read_grid, run_sweep
from strokelrp.run_files import RunDir
from strokelrp.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "isles"
    return synthesize_isles2017(root, n_cases=2, shape=(24, 24, 6), seed=3, uninformative=("MTT",))


def make_run(root: Path, data: Path, name: str = "A1") -> Path:
    """A run folder with a random width-2 network (no training needed to sweep it)."""
    run = root / name
    run.mkdir(parents=True)
    config = TrainConfig(data=str(data), series="A", width=2, epochs=0, seed=0)
    config.to_toml(run / "config.toml")
    torch.manual_seed(0)
    save_checkpoint(RunDir(run).checkpoints, epoch=0, config=config, model=UNet3D(width=2))
    return run


@pytest.mark.slow
def test_sweep_writes_cases_x_16_settings_x_6_modalities_and_resumes(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    run = make_run(tmp_path, data)
    [table] = run_sweep([run], data, cases=["1"], target="ground_truth", progress=False)
    assert table == run / "sweep" / "sweep.csv"
    rows = read_table(table)
    assert len(rows) == 1 * 16 * 6
    with table.open() as fh:
        assert next(csv.reader(fh)) == list(COLUMNS)

    # resume: case 1 is skipped (its rows are kept as they are), case 2 is added
    before = table.read_text()
    [table] = run_sweep([run], data, target="ground_truth", progress=False)
    rows = read_table(table)
    assert len(rows) == 2 * 16 * 6
    # rows are ordered by case, so case 1's lines come first, unchanged
    assert table.read_text().splitlines()[: 16 * 6 + 1] == before.splitlines()
    assert sorted({r["case"] for r in rows}) == ["1", "2"]
    assert {r["setting"] for r in rows} == {describe(f).label for f in _paper()}
    assert {r["modality"] for r in rows} == set(MODALITIES)
    for r in rows:
        assert r["run"] == r["network"] == "A1" and r["series"] == "A"
        assert r["target"] == "ground_truth" and r["rules"] == DEFAULT_PRESET
        assert r["informative"] is (r["modality"] != "MTT")  # from the synthetic manifest
        assert 0.0 <= r["input_inclusivity"] <= 1.0 and 0.0 <= r["gt_inclusivity"] <= 1.0
        assert 0.0 <= r["case_dice"] <= 1.0
        assert -1.0 <= r["ablation_drop"] <= 1.0
    # the ablation drop is one per (case, modality), the same under every setting
    drops = {(r["case"], r["modality"], r["ablation_drop"]) for r in rows}
    assert len(drops) == 2 * 6
    raw = [r for r in rows if r["setting"] == "raw"]
    assert all(math.isfinite(r["mean_signal"]) for r in raw)  # relevance starts on the lesion
    for case in ("1", "2"):
        shares = [r["relevance_share"] for r in raw if r["case"] == case]
        assert sum(shares) == pytest.approx(1.0)

    # a third call has nothing left to do and leaves the table as it was
    text = table.read_text()
    run_sweep([run], data, target="ground_truth", progress=False)
    assert table.read_text() == text


def _paper() -> list:
    from strokelrp.lrp.filters import PAPER_GRID

    return PAPER_GRID


def test_sweep_refuses_to_mix_rules_in_one_table(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    grid = tmp_path / "grid.txt"
    grid.write_text("# two settings\nraw\npass:0,0.4\n")
    run = make_run(tmp_path, data)
    run_sweep([run], data, grid=grid, cases=["2"], target="ground_truth", progress=False)
    assert len(read_table(run / "sweep" / "sweep.csv")) == 2 * 6
    with pytest.raises(StrokeLRPError, match="--restart"):
        run_sweep([run], data, grid=grid, cases=["2"], target="prediction", progress=False)


def test_case_rows_match_the_measures_on_a_hand_made_map() -> None:
    settings = [describe(None), describe(_paper()[3])]  # raw, pass(0,0.2)
    r = np.zeros((2, 6, 1, 2, 2))
    r[0, 0, 0, 0, 0] = 1.0  # raw: ADC voxel (0,0)
    r[0, 1, 0, 1, 1] = 3.0  # raw: MTT voxel (1,1)
    x = np.zeros((6, 1, 2, 2))
    x[:, 0, 0, 0] = 1.0  # every modality bright at (0,0) only
    label = np.zeros((1, 2, 2), dtype=np.uint8)
    label[0, 1, 1] = 1
    meta = {
        "run": "r",
        "series": "A",
        "network": "r",
        "case": "7",
        "case_dice": 0.5,
        "target": "prediction",
        "rules": "paper",
    }
    drop = [0.3, 0.0, 0.1, 0.2, 0.5, 0.05]
    rows = case_rows(
        r, x, label, settings, meta, informative=["ADC"], ablation_drop=drop, channels=MODALITIES
    )
    assert len(rows) == 12
    adc, mtt = rows[0], rows[1]
    assert adc["input_inclusivity"] == pytest.approx(1.0, rel=1e-5)  # covers the bright voxel
    assert mtt["input_inclusivity"] == 0.0
    assert adc["gt_inclusivity"] == 0.0 and mtt["gt_inclusivity"] == pytest.approx(1.0, rel=1e-5)
    assert adc["relevance_share"] == 0.25 and mtt["relevance_share"] == 0.75  # 1 vs 3
    assert adc["lesion_share"] == 0.0 and mtt["lesion_share"] == 1.0
    assert adc["mean_signal"] == 0.25 and mtt["mean_signal"] == 0.25  # one 1 in four voxels
    assert adc["informative"] is True and mtt["informative"] is False
    assert [row["ablation_drop"] for row in rows] == drop * 2
    assert math.isnan(rows[2]["mean_signal"])  # rCBF has no relevance
    assert rows[6]["setting"] == "pass(0,0.2)" and rows[6]["a2"] == 0.2
    assert all(row["input_inclusivity"] == 0.0 for row in rows[6:])  # second map is all zero


def test_one_setting_names_tables_and_files() -> None:
    """describe() gives the sweep's labels and explain's file stems (one Setting class); the
    labels are the filters' own."""
    from strokelrp.lrp.filters import parse_filter
    from strokelrp.report.explain_case import parse_settings

    raw = describe(None)
    assert (raw.kind, raw.a1, raw.a2, raw.label, raw.stem) == (
        "raw",
        None,
        None,
        "raw",
        "relevance_raw",
    )
    for spec, label, stem in [
        ("pass:0,0.4", "pass(0,0.4)", "relevance_pass_0-0.4"),
        ("clamp:0,0.2:channel", "clamp(0,0.2)/channel", "relevance_clamp_0-0.2_channel"),
        ("pass:0.25,1", "pass(0.25,1)", "relevance_pass_0.25-1"),
    ]:
        f = parse_filter(spec)
        s = describe(f)
        assert (s.label, s.stem, s.filter) == (label, stem, f)
        assert s.label == f.label
    assert [s.stem for s in parse_settings(["pass:0,0.4", "pass:0,0.40"])] == [
        "relevance_raw",
        "relevance_pass_0-0.4",
    ]


def test_read_grid_from_toml_and_errors(tmp_path: Path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text('settings = ["raw", "clamp:0,0.2", "pass:0.1,1"]\n')
    assert [s.label for s in read_grid(toml)] == ["raw", "clamp(0,0.2)", "pass(0.1,1)"]
    assert len(read_grid("paper")) == 16
    bad = tmp_path / "bad.txt"
    bad.write_text("pass:0,0.4\npass:0,0.4\nwobble:1\n")
    with pytest.raises(StrokeLRPError) as err:
        read_grid(bad)
    assert "wobble" in str(err.value) and "appears twice" in str(err.value)
    with pytest.raises(StrokeLRPError, match="not 'paper'"):
        read_grid(tmp_path / "missing.toml")


def test_cli_sweep_then_report(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from strokelrp.cli import main

    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    grid = tmp_path / "grid.txt"
    grid.write_text("raw\nclamp:0,0.2\n")
    run = make_run(tmp_path, data, name="B7")
    with pytest.raises(SystemExit) as done:
        main(
            [
                "sweep",
                str(run),
                str(data),
                "--cases",
                "1",
                "--grid",
                str(grid),
                "--target",
                "ground_truth",
            ]
        )
    assert done.value.code in (None, 0)
    out = capsys.readouterr().out
    assert "series A           raw: input inclusivity" in out
    assert "clamp(0,0.2)" in out and "ablation rho" in out
    assert f"wrote {run / 'sweep' / 'sweep.csv'}" in out
    with pytest.raises(SystemExit) as done:  # the same sweep again: complete, read back
        main(["sweep", str(run), str(data), "--cases", "1", "--grid", str(grid), "--target",
              "ground_truth", "--json"])  # fmt: skip
    assert done.value.code in (None, 0)
    doc = json.loads(capsys.readouterr().out)
    assert doc["tables"] == [str(run / "sweep" / "sweep.csv")]
    table = read_table(run / "sweep" / "sweep.csv")
    for record in doc["summary"]:
        values = [r["input_inclusivity"] for r in table if r["setting"] == record["setting"]]
        assert record["input_inclusivity"] == pytest.approx(sum(values) / len(values))
    assert [r["setting"] for r in doc["summary"]] == ["raw", "clamp(0,0.2)"]
    with pytest.raises(SystemExit) as done:
        main(["report", str(run)])
    assert done.value.code in (None, 0)
    report = Path(capsys.readouterr().out.strip())
    assert report == run / "report.html"
    assert "Figure 4:" in report.read_text(encoding="utf-8")


def test_cli_sweep_errors(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture) -> None:
    from strokelrp.cli import main

    with pytest.raises(SystemExit) as done:
        main(["sweep", str(tmp_path / "nowhere"), str(data)])
    assert done.value.code == 1
    assert "error: " in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["sweep", str(data)])  # no RUN
    assert done.value.code == 2
    with pytest.raises(SystemExit) as done:
        main(["sweep", str(tmp_path), str(data), "--rules", "nonsense"])
    assert done.value.code == 2
    with pytest.raises(SystemExit) as done:
        main(["sweep", str(tmp_path), str(data), "--methods", "gradiant"])
    assert done.value.code == 2 and "did you mean 'gradient'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["sweep", str(tmp_path), str(data), "--methods", "lrp:zplus"])
    assert done.value.code == 1 and "--methods takes the other methods" in capsys.readouterr().err


def test_a_table_from_before_ablation_drops_and_abs_shares_still_reads(tmp_path: Path) -> None:
    from strokelrp.analysis.table import write_table

    row = {c: "" for c in COLUMNS} | {"run": "r", "kind": "raw", "setting": "raw", "case": "1"}
    path = write_table(tmp_path / "new.csv", [row | {"ablation_drop": 0.25}])
    assert read_table(path)[0]["ablation_drop"] == 0.25
    lines = [",".join(line.split(",")[:-2]) for line in path.read_text().splitlines()]
    old = tmp_path / "old.csv"
    old.write_text("\n".join(lines) + "\n")
    assert "ablation_drop" not in old.read_text() and "abs_share" not in old.read_text()
    assert math.isnan(read_table(old)[0]["ablation_drop"])
    assert math.isnan(read_table(old)[0]["abs_share"])
    old.write_text("\n".join(",".join(x.split(",")[:-2]) for x in lines) + "\n")
    with pytest.raises(StrokeLRPError, match="informative"):
        read_table(old)


def test_cli_sweep_of_one_run_named_twice_counts_it_once(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from strokelrp.cli import main

    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    grid = tmp_path / "grid.txt"
    grid.write_text("raw\n")
    run = make_run(tmp_path, data, name="A2")

    def sweep(*runs: Path) -> tuple[str, str]:
        args = ["--cases", "1", "--grid", str(grid), "--target", "ground_truth"]
        with pytest.raises(SystemExit) as done:
            main(["sweep", *map(str, runs), str(data), *args])
        assert done.value.code in (None, 0)
        captured = capsys.readouterr()
        return captured.out, captured.err

    twice, err = sweep(run, tmp_path / "." / "A2")
    assert "the same run as" in err and "used once" in err
    assert twice.count("wrote ") == 1
    share = float(re.search(r"lesion share ([0-9.]+)", twice).group(1))
    assert 0.0 <= share <= 1.0
    once, _ = sweep(run)  # resumes: nothing left to do, the same table
    assert once == twice
    assert len(read_table(run / "sweep" / "sweep.csv")) == 1 * 6  # one case, raw, 6 modalities


def test_cli_sweep_ctrl_c_prints_the_command_that_resumes(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import shlex

    import strokelrp.lrp.engine as engine
    from strokelrp.cli import main

    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    grid = tmp_path / "grid.txt"
    grid.write_text("raw\n")
    run = make_run(tmp_path, data, name="A3")
    real_explain, calls = engine.explain, []

    def interrupted_on_case_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C while the second case is explained
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(engine, "explain", interrupted_on_case_2)
    with pytest.raises(SystemExit) as done:
        main(["sweep", str(run), str(data), "--grid", str(grid), "--target", "ground_truth"])
    assert done.value.code == 130
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    assert hint.startswith("interrupted; resume with: strokelrp sweep ")
    assert {r["case"] for r in read_table(run / "sweep" / "sweep.csv")} == {"1"}
    monkeypatch.setattr(engine, "explain", real_explain)
    with pytest.raises(SystemExit) as done:
        main(shlex.split(hint.removeprefix("interrupted; resume with: strokelrp ")))
    assert done.value.code in (None, 0)
    assert "1 case(s) to explain, 1 already in" in capsys.readouterr().err
    assert {r["case"] for r in read_table(run / "sweep" / "sweep.csv")} == {"1", "2"}


def _row(network: str, case: str, setting: str, modality: str, value: float) -> dict:
    kind = "raw" if setting == "raw" else "pass"
    a2 = None if kind == "raw" else 0.4
    return {"run": network, "network": network, "case": case, "kind": kind, "a1": 0.0,
            "a2": a2, "setting": setting, "modality": modality, "mean_signal": value}  # fmt: skip


def test_done_pairs_and_merge_rows_work_on_rows_alone() -> None:
    """Resume bookkeeping is a function of rows: complete pairs, replacement of fresh pairs."""
    settings = [describe(None), describe(_paper()[4])]  # raw, pass(0,0.4)
    full = [_row("n", "1", s.label, m, 1.0) for s in settings for m in MODALITIES]
    half = [_row("n", "2", "raw", m, 2.0) for m in MODALITIES]
    assert done_pairs(full + half, settings, MODALITIES) == {("n", "1")}
    assert done_pairs(full + half, settings[:1], MODALITIES) == {("n", "1"), ("n", "2")}
    # case 2's raw rows are replaced; rows of a setting not recomputed are kept
    other = [_row("n", "2", "pass(0,0.4)", m, 3.0) for m in MODALITIES]
    new = [_row("n", "2", "raw", m, 5.0) for m in MODALITIES]
    merged = merge_rows(full + half + other, new, ["raw"], MODALITIES)
    assert len(merged) == 24
    case2 = {(r["setting"], r["mean_signal"]) for r in merged if r["case"] == "2"}
    assert case2 == {("raw", 5.0), ("pass(0,0.4)", 3.0)}
    # sorted by case, then setting (raw first), then modality (channel order)
    assert [(r["case"], r["setting"], r["modality"]) for r in merged[:7]] == [
        ("1", "raw", m) for m in MODALITIES
    ] + [("1", "pass(0,0.4)", MODALITIES[0])]


def test_sweep_baseline_rows_are_the_measures_of_attributes_map(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--methods gradient_x_input: one row per case x modality (kind baseline, no rules, no
    filter) whose numbers are the measures written out here with numpy on
    strokelrp.attribute's map of the same case."""
    import strokelrp

    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    grid = tmp_path / "grid.txt"
    grid.write_text("raw\n")
    run = make_run(tmp_path, data, name="G1")
    [table] = run_sweep(
        [run], data, grid=grid, cases=["1"], target="ground_truth", progress=False,
        methods=["gradient_x_input"],
    )  # fmt: skip
    rows = read_table(table)
    assert [(r["setting"], r["modality"]) for r in rows] == [("raw", m) for m in MODALITIES] + [
        ("gradient_x_input", m) for m in MODALITIES
    ]
    mine = rows[6:]
    assert all(r["kind"] == "baseline" and r["rules"] == "" for r in mine)
    assert all(math.isnan(r["a1"]) and math.isnan(r["a2"]) for r in mine)
    assert all(r["rules"] == DEFAULT_PRESET for r in rows[:6])

    model, config = strokelrp.load_run(run)
    x, y = strokelrp.prepare_case(strokelrp.load_case(data, "1"), config)
    r = strokelrp.attribute(model, x, "gradient_x_input", target="ground_truth", label=y)
    r = r.double().numpy()
    lesion = y.astype(bool)
    positive = np.clip(r, 0, None)
    for c, row in enumerate(mine):
        rc, xc = r[c], np.abs(x[c].astype(np.float64))
        peak = np.abs(rc).max()
        assert peak > 0
        hot = np.abs(rc) / peak > 0.5
        bright = xc / xc.max() > 0.1
        expect = {
            "input_inclusivity": (hot & bright).sum() / (bright.sum() + 1e-6),
            "gt_inclusivity": (hot & lesion).sum() / (lesion.sum() + 1e-6),
            "mean_signal": (rc / peak).mean(),
            "relevance_share": positive[c].sum() / positive.sum(),
            "lesion_share": positive[c][lesion].sum() / positive[c].sum(),
        }
        for column, value in expect.items():
            assert row[column] == pytest.approx(value, rel=1e-5, abs=1e-9), (column, c)
    drops = [(r["modality"], r["ablation_drop"]) for r in rows]
    assert drops[:6] == drops[6:]  # one ablation per case, on every map's rows

    with pytest.raises(StrokeLRPError, match="--methods takes the other methods"):
        run_sweep([run], data, grid=grid, methods=["lrp:zplus"], progress=False)


def test_sweep_reference_reaches_the_lrp_walk_and_the_methods(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--reference FILE: the gradient_x_input rows are the measures of (x - b) * dS/dx, with
    b the file's array and the gradient taken here by plain autograd; the LRP rows are those
    of strokelrp.attribute's map relative to b (the walk of x - b, tested against explicit
    matrices in tests/test_reference.py) and differ from the plain map's; the table records
    the reference and refuses to resume with another."""
    import strokelrp

    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    grid = tmp_path / "grid.txt"
    grid.write_text("raw\n")
    run = make_run(tmp_path, data, name="R1")
    model, config = strokelrp.load_run(run)
    x, y = strokelrp.prepare_case(strokelrp.load_case(data, "1"), config)
    b = np.random.default_rng(5).random(x.shape).astype(np.float32)
    ref = tmp_path / "reference.npy"
    np.save(ref, b)
    [table] = run_sweep(
        [run], data, grid=grid, cases=["1"], target="ground_truth", progress=False,
        methods=["gradient_x_input"], reference=str(ref),
    )  # fmt: skip
    rows = read_table(table)
    record = json.loads(table.with_name("sweep.provenance.json").read_text())
    assert record["reference"] == str(ref.resolve())

    xt = torch.from_numpy(x)[None].requires_grad_(True)
    logits = model.eval()(xt)
    (logits[0, 1] * torch.from_numpy(y.astype(np.float32))).sum().backward()
    by_hand = ((xt - torch.from_numpy(b)[None]) * xt.grad).detach()[0].double().numpy()
    lrp_map = strokelrp.attribute(
        model, x, f"lrp:{DEFAULT_PRESET}", target="ground_truth", label=y, reference=str(ref)
    )
    plain = strokelrp.attribute(model, x, f"lrp:{DEFAULT_PRESET}", target="ground_truth", label=y)
    assert not np.allclose(lrp_map.numpy(), plain.numpy(), rtol=1e-3, atol=0)
    lesion = y.astype(bool)
    for r, mine in ((lrp_map.double().numpy(), rows[:6]), (by_hand, rows[6:])):
        positive = np.clip(r, 0, None)
        for c, row in enumerate(mine):
            peak = np.abs(r[c]).max()
            assert peak > 0
            expect = {
                "gt_inclusivity": ((np.abs(r[c]) / peak > 0.5) & lesion).sum()
                / (lesion.sum() + 1e-6),
                "mean_signal": (r[c] / peak).mean(),
                "relevance_share": positive[c].sum() / positive.sum(),
            }
            for column, value in expect.items():
                assert row[column] == pytest.approx(value, rel=1e-4, abs=1e-7), (column, c)

    with pytest.raises(StrokeLRPError, match=r"relative to the .* reference"):
        run_sweep([run], data, grid=grid, cases=["2"], target="ground_truth", progress=False,
                  methods=["gradient_x_input"], reference="healthy")  # fmt: skip
    with pytest.raises(StrokeLRPError, match="reference must be one of"):
        run_sweep([run], data, grid=grid, reference="nonsense", progress=False)
