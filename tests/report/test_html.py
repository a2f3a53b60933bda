"""The HTML report: every section, embedded images, relative NIfTI links, no external URLs."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from cli_helpers import run_cli
from synthetic_sweep_rows import alpha0_by_hand, make_rows

from strokelrp.analysis.table import write_table
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.errors import StrokeLRPError
from strokelrp.pipeline.report import build_report


def write_png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, dpi=50)
    plt.close(fig)


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


METRICS_ROWS = [  # what evaluate writes per case (columns from its METRIC_COLUMNS)
    {"case_id": "1", "split": "train", "dice": 0.5, "hd95_mm": 4.0, "assd_mm": 1.0,
     "precision": 0.6, "recall": 0.4, "pred_ml": 2.0, "true_ml": 3.0},
    {"case_id": "2", "split": "validation", "dice": 0.3, "hd95_mm": float("nan"),
     "assd_mm": 2.0, "precision": 0.2, "recall": 0.5, "pred_ml": 1.0, "true_ml": 1.0},
]  # fmt: skip


def full_run(root: Path, name: str, series: str) -> Path:
    """A run folder whose files are written with their producers' own column names."""
    from strokelrp.run_files import RunDir
    from strokelrp.train.evaluate import METRIC_COLUMNS, TABLE1_COLUMNS

    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text(f'series = "{series}"\nwidth = 2\nepochs = 3\n')
    table1 = {c: "" for c in TABLE1_COLUMNS}
    table1.update(network=name, series=series, width=2, epochs=3, training_minutes=1.5)
    table1.update(mean_dice=0.4321, sd_dice=0.1, n_cases=2, collapsed=False)
    write_csv(run / "table1.csv", TABLE1_COLUMNS, [table1])
    log = [
        {"epoch": e, "loss": loss, "train_dice_trainmode": dice, "val_dice": 0.25, "seconds": 2.0}
        for e, loss, dice in ((1, 0.9, 0.1), (2, 0.5, 0.3), (3, 0.3, 0.5))
    ]
    RunDir(run).write_train_log(log)
    write_csv(run / "metrics.csv", METRIC_COLUMNS, [{"network": name, **r} for r in METRICS_ROWS])
    write_table(run / "sweep" / "sweep.csv", [r for r in make_rows() if r["series"] == series])
    case = run / "explanations" / "training_1"
    write_png(case / "figure1.png")
    (case / "relevance_raw.nii.gz").write_bytes(b"\x1f\x8b not really a NIfTI")
    return run


def test_report_has_every_section_embedded_and_offline(tmp_path: Path) -> None:
    a = full_run(tmp_path, "A1", "A")
    b = full_run(tmp_path, "B1", "B")
    out = build_report([a, b])
    assert out == a / "report.html"
    text = out.read_text(encoding="utf-8")
    assert "<p class='meta'>Runs: A1, B1." in text
    for heading in (
        "Run configuration",
        "Training: table 1 and curves",
        "Segmentation metrics per case",
        "Inclusivity and signal distribution",
        "Where relevance goes",
        "Explanations per case",
    ):
        assert f">{heading}</h" in text
    for caption in ("Figure 4:", "Figure 5 (D1, D2)", "Annex figure 2", "Sweet spot", "Table 1"):
        assert caption in text
    # training curves, fig. 4, fig. 5, annex 2, sweet spot, and the two explanation PNGs
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', text)) == 7
    assert not re.search(r"https?://", text)
    assert "<script" not in text and "<link" not in text
    assert 'href="../A1/explanations/training_1/relevance_raw.nii.gz"' not in text
    assert 'href="explanations/training_1/relevance_raw.nii.gz"' in text
    assert 'href="../B1/explanations/training_1/relevance_raw.nii.gz"' in text
    assert "ablation_rho" in text and "ignored_share" in text and "ignored_uniform" in text
    assert (a / "figures" / "figure4_inclusivity.svg").stat().st_size > 0
    assert "width = 2" in text  # the configuration is shown
    # the tables' numbers are the CSVs': table 1's Dice, and the metrics' mean rows
    assert text.count("<td>0.4321</td>") == 2  # one table-1 row per run
    means = re.findall(r'<tr class="mean">(.*?)</tr>', text)
    assert len(means) == 2
    cells = re.findall(r"<td[^>]*>(.*?)</td>", means[0])
    dice = sum(r["dice"] for r in METRICS_ROWS) / len(METRICS_ROWS)
    assert cells[3] == f"{dice:.4g}" and cells[4] == "4"  # HD95: the one defined value


def test_report_skips_missing_parts_with_notes(tmp_path: Path) -> None:
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.toml").write_text('series = "A"\n')  # a run that has done nothing yet
    (tmp_path / "elsewhere").mkdir()
    out = build_report([run], out=tmp_path / "elsewhere" / "r.html")
    text = out.read_text(encoding="utf-8")
    assert out == tmp_path / "elsewhere" / "r.html"
    assert "No sweep yet" in text
    assert "No explanations yet" in text
    assert "No table1.csv in any run: `strokelrp evaluate RUN DATA` writes it." in text
    assert "base64" not in text


def test_the_mean_row_averages_measures_not_ids(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('series = "A"\n')
    (run / "metrics.csv").write_text(
        "network,case_id,split,dice,hd95_mm\nA-1,4,train,0.5,3.0\nA-1,27,validation,0.25,nan\n"
    )
    text = build_report([run]).read_text(encoding="utf-8")
    mean = re.search(r'<tr class="mean">(.*?)</tr>', text).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", mean)
    assert cells == ["mean", "", "", "0.375", "3"]  # case ids 4 and 27 are not averaged


def test_report_refuses_a_data_folder(tmp_path: Path, capsys) -> None:
    data = synthesize_isles2017(tmp_path / "data", 1, shape=(8, 8, 4))
    with pytest.raises(StrokeLRPError, match=r"not a training run .*looks like a data folder"):
        build_report([data])
    assert not (data / "report.html").exists()
    code, _, err = run_cli(["report", str(data)], capsys)
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_report_out_is_a_file_or_an_existing_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('series = "A"\n')
    assert build_report([run], out=tmp_path) == tmp_path / "report.html"
    assert build_report([run], out=tmp_path / "mine.html") == tmp_path / "mine.html"
    once = build_report([run]).read_text().count("<h3>run</h3>")  # config and metrics
    twice = build_report([run, tmp_path / "." / "run"]).read_text().count("<h3>run</h3>")
    assert once == twice == 2  # a run named twice is shown once
    with pytest.raises(StrokeLRPError, match="deep/er does not exist"):
        build_report([run], out=tmp_path / "deep" / "er" / "r.html")
    with pytest.raises(StrokeLRPError, match="neither an existing folder nor a file name"):
        build_report([run], out=tmp_path / "newfolder")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StrokeLRPError, match=r"not an \.html file or a folder"):
        build_report([run], out=tmp_path / "notes.txt")
    assert not (tmp_path / "deep").exists() and not (tmp_path / "newfolder").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_report_rejects_missing_runs(tmp_path: Path) -> None:
    with pytest.raises(StrokeLRPError, match="nowhere: run directory not found"):
        build_report([tmp_path / "nowhere"])


def test_report_plots_the_assessment_log(tmp_path: Path) -> None:
    from strokelrp.run_files import RunDir
    from strokelrp.trust_measures import MEASURES

    run = tmp_path / "watched"
    run.mkdir()
    (run / "config.toml").write_text('series = "A"\n')
    rows = [
        {"epoch": e, "split": "held-out", "case": c, "method": "lrp:epsilon", "seconds": 1.0}
        | {m: 0.1 * e + 0.01 * k for k, m in enumerate(MEASURES)}
        for e in (2, 4, 6)
        for c in ("4", "5")
    ]
    rows[0]["ablation_rho"] = float("nan")  # an undefined value is left out of the mean
    RunDir(run).write_assess_log(rows)
    text = build_report([run]).read_text(encoding="utf-8")
    assert "Interpretability during training" in text and "held-out cases" in text
    assert (run / "figures" / "assess_curves.png").stat().st_size > 10_000
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.toml").write_text('series = "A"\n')
    assert "Interpretability during training" not in build_report([bare]).read_text()


def test_trust_section_from_assess_csv(tmp_path: Path) -> None:
    from strokelrp.analysis.assess import COLUMNS

    run = tmp_path / "judged"
    (run / "assess").mkdir(parents=True)
    (run / "config.toml").write_text('series = "A"\n')
    # brain, lesion, morf, lerf, random, prior, prior_gap, random_gap, randomisation, contrast,
    # ablation (COLUMNS after case and method)
    good = [0.95, 0.6, 2.0, -1.0, 0.1, 1.0, 1.0, 1.9, 0.8, 0.5, 0.5]
    bad = [0.5, 0.1, 0.3, 0.2, 0.1, 0.4, -0.1, 0.2, 0.95, -0.99, 0.1]
    # then prior_rho, randomisation_shell, contrast_gap (the last two: checks of their own)
    lines = [",".join([*COLUMNS, "prior_rho", "randomisation_shell", "contrast_gap"])]
    for case in ("4", "5"):
        lines.append(",".join([case, "lrp:epsilon", *map(str, good), "0.9", "0.05", "-0.1"]))
        lines.append(",".join([case, "lrp:paper", *map(str, bad), "0.7", "0.9", "1.5"]))
    (run / "assess" / "assess.csv").write_text("\n".join(lines) + "\n")
    cascade = ["case,method,order,step,layer,skipped,rho"]
    for case in ("4", "5"):
        for step, layer in enumerate(("head", "dec1", "dec2"), start=1):
            skip = int(layer == "dec2" and case == "5")  # one case skipped dec2: it is named
            rho = "" if skip else 1 - 0.3 * step
            cascade.append(f"{case},lrp:epsilon,top_down,{step},{layer},{skip},{rho}")
            cascade.append(f"{case},lrp:paper,top_down,{step},{layer},{skip},0.97")
        cascade.append(f"{case},lrp:paper,independent,1,head,0,-0.9")  # not drawn
    (run / "assess" / "cascade.csv").write_text("\n".join(cascade) + "\n")
    text = build_report([run]).read_text(encoding="utf-8")
    assert ">Can the maps be trusted?</h" in text
    assert (
        "lrp:epsilon (2 case(s)): passes brain_share, lesion_share, faithful, beats_random, "
        "randomisation, contrast, ablation. Randomisation" in text
    )
    assert (
        "lrp:paper (2 case(s)): passes beats_random; fails brain_share: 95 % interval of mean "
        "brain_share above 0.9 (got 0.5 [0.5, 0.5]); lesion_share:" in text
    )
    assert "faithful: 95 % interval of mean prior_gap above 0 (MoRF AOPC beats the locality "
    assert "prior&#x27;s) (got -0.1 [-0.1, -0.1])" in text
    assert "randomisation: 95 % interval of mean randomisation_shell below 0.5 (the map " in text
    assert "distance to the target held fixed) (got 0.9 [0.9, 0.9])" in text
    assert "Cascading model randomisation" in text
    assert "by less than 2% (order: block (cases)): top_down: dec2 (1)." in text
    assert (run / "figures" / "cascade_judged.png").stat().st_size > 10_000
    # the assessment removed: the next report drops its figures too, keeps unrelated files
    (run / "figures" / "mine.txt").write_text("not a figure of the report")
    shutil.rmtree(run / "assess")
    text = build_report([run]).read_text(encoding="utf-8")
    assert "Cascading model randomisation" not in text
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["mine.txt"]
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.toml").write_text('series = "A"\n')
    assert "No assess.csv in any run" in build_report([bare]).read_text(encoding="utf-8")


def test_filters_table_puts_inclusivity_next_to_faithfulness(tmp_path: Path) -> None:
    from strokelrp.analysis.assess import COLUMNS
    from strokelrp.analysis.table import read_table

    run = full_run(tmp_path, "A1", "A")
    import csv

    (run / "assess").mkdir()
    with (run / "assess" / "assess.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)  # quotes the comma of pass:0,0.2 as strokelrp assess does
        writer.writerow(COLUMNS)
        for method, morf in (("lrp:paper", 2.0), ("lrp:paper+pass:0,0.2", -0.05), ("gradient", 1)):
            gaps = [round(morf - 0.3, 6), round(morf - 0.1, 6)]  # prior_gap, random_gap
            writer.writerow(["training_1", method, 0.9, 0.5, morf, 0, 0.1, 0.3, *gaps, 0.7, 0.5,
                             0.5])  # fmt: skip
    text = build_report([run]).read_text(encoding="utf-8")
    assert "Filters: inclusivity against faithfulness" in text
    table = text.split("Filters: inclusivity against faithfulness")[1].split("</table>")[0]
    rows = read_table(run / "sweep" / "sweep.csv")
    for setting, gap in (("raw", "1.7"), ("pass(0,0.2)", "-0.35")):  # the prior gaps
        values = [r["input_inclusivity"] for r in rows if r["setting"] == setting]
        mean = sum(values) / len(values)
        assert f'<td class="text">{setting}</td><td>{mean:.4g}</td>' in table
        assert f"<td>{gap}</td>" in table
    assert "gradient" not in table  # not a filter setting


def _rows_of(table: str) -> list[list[str]]:
    """The cells of each body row of an HTML table (markup removed)."""
    body = table.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


def test_trust_section_draws_the_curves_and_judges_the_sweet_spot(tmp_path: Path) -> None:
    import html as html_module
    import math

    import numpy as np

    from strokelrp.analysis.assess import COLUMNS, CURVE_COLUMNS, FRACTIONS
    from strokelrp.analysis.table import read_table

    run = full_run(tmp_path, "A1", "A")
    (run / "assess").mkdir()
    methods = ["lrp:paper", "lrp:paper+pass:0,0.05", "lrp:paper+pass:0,0.2",
               "lrp:paper+clamp:0,0.1", "gradient"]  # fmt: skip
    cases = ["training_1", "training_2"]
    rng = np.random.default_rng(3)
    points, rows = [], []
    for case in cases:
        random = [rng.normal(0.05, 0.02, len(FRACTIONS)) for _ in range(2)]
        for i, method in enumerate(methods):
            morf = rng.uniform(0.2, 1.5, len(FRACTIONS)) * (0.1 + i / 4)
            lerf = rng.normal(-0.2, 0.1, len(FRACTIONS))
            curves = [("morf", "", morf), ("lerf", "", lerf)]
            curves += [("random", str(s), random[s]) for s in range(2)]
            for order, seed, drops in curves:
                for f, d in zip(FRACTIONS, drops, strict=True):
                    points.append([case, method, order, "element", "zero", seed, f, d])
            # a voxel-level MoRF curve the report must not mix into the element-level one
            for f in FRACTIONS:
                points.append([case, method, "morf", "voxel", "zero", "", f, 99.0])
            gaps = [morf.mean() - 0.3, morf.mean() - np.mean(random)]
            values = [0.95, 0.6, morf.mean(), lerf.mean(), np.mean(random), 0.3, *gaps]
            values += [0.8, 0.5, 0.5]
            rows.append([case, method, *values])
    for name, columns, table in (
        ("assess.csv", COLUMNS, rows),
        ("assess_curves.csv", CURVE_COLUMNS, points),
    ):
        with (run / "assess" / name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(
                [[f"{v:.6g}" if isinstance(v, float) else v for v in r] for r in table]
            )
    text = build_report([run]).read_text(encoding="utf-8")
    # the expectations come from the files as written (6 significant digits)
    rows = [
        [r[0], r[1], *map(float, r[2:])]
        for r in list(csv.reader((run / "assess" / "assess.csv").open()))[1:]
    ]
    points = list(csv.reader((run / "assess" / "assess_curves.csv").open()))[1:]
    assert (run / "figures" / "perturbation_A1.png").stat().st_size > 10_000
    assert "not recorded by assess" not in text

    # the curve table: each point is the mean over cases (and seeds) of the written drops
    # (the caption is also the image's alt text: the table follows its last occurrence)
    table = text.split("Region perturbation curves (assess_curves.csv)")[-1].split("</table>")[0]
    shown = {(r[0], r[1]): r[2:] for r in _rows_of(table)}
    assert set(shown) == {(m, o) for m in methods for o in ("morf", "lerf", "random")}
    for (method, order), cells in shown.items():
        drops = np.array(
            [[float(p[7]) for p in points if p[:5] == [c, method, order, "element", "zero"]]
             for c in cases]
        ).reshape(-1, len(FRACTIONS))  # fmt: skip
        expected = drops.mean(axis=0)
        assert cells[:-1] == [f"{v:.4g}" for v in expected]
        assert cells[-1] == f"{expected.mean():.4g}"
        if order == "morf":  # the AOPC column equals assess.csv's mean MoRF AOPC
            aopcs = [r[4] for r in rows if r[1] == method]
            assert cells[-1] == f"{np.mean(aopcs):.4g}"

    # the sweet spot: alpha_0 computed here by hand from the sweep's mean signals
    sweep = [r for r in read_table(run / "sweep" / "sweep.csv") if r["run"] == "A1"]
    spot_table = text.split("The sweet spot α₀: is it faithful?")[1].split("</table>")[0]
    spot_rows = {html_module.unescape(r[1]): r for r in _rows_of(spot_table)}
    assessed = {"pass": {1.0: "lrp:paper", 0.05: methods[1], 0.2: methods[2]},
                "clamp": {1.0: "lrp:paper", 0.1: methods[3]}}  # fmt: skip
    seen = set()
    for kind in ("pass", "clamp"):
        alpha0 = alpha0_by_hand(sweep, kind)
        cells = spot_rows[f"{kind} (0, α)"]
        assert cells[0] == "A1" and cells[2] == f"{alpha0:.4g}"
        hit = [a for a in assessed[kind] if math.isclose(a, alpha0, rel_tol=1e-6)]
        if not hit:  # a neighbouring setting's score is never shown as alpha_0's
            seen.add("not assessed")
            assert cells[3] == "not assessed" and cells[10] == "not assessed"
            assert cells[6] == cells[7] == ""
            command = f"strokelrp assess RUN DATA --methods lrp:paper+{kind}:0,{alpha0:g}"
            assert html_module.unescape(cells[11]).startswith(f"not assessed: {command}")
            continue
        seen.add("assessed")
        method = assessed[kind][hit[0]]
        label = "raw" if hit[0] == 1.0 else f"{kind}(0,{hit[0]:g})"
        assert cells[3] == label
        inc = [r["input_inclusivity"] for r in sweep if r["setting"] == label]
        assert cells[4] == f"{np.mean(inc):.4g}"
        morf = [r[4] for r in rows if r[1] == method]
        gap = [r[8] for r in rows if r[1] == method]
        assert cells[6] == f"{np.mean(morf):.4g}"
        assert cells[7] == f"{np.mean(gap):.4g}"
    assert "not assessed" in seen


def test_verdict_says_an_undefined_randomisation_in_words() -> None:
    from strokelrp.analysis.assess import summarize_methods
    from strokelrp.report.assess_run import verdict_line

    row = {"case": "4", "method": "lrp:epsilon+pass:0,0.1", "brain_share": "1",
           "lesion_share": "0.2", "morf_aopc": "0.12", "lerf_aopc": "0", "random_aopc": "0.04",
           "randomisation_rho": "", "contrast_rho": "-0.5", "ablation_rho": "0.1",
           "prior_rho": "0.55", "contrast_gap": "0.2"}  # fmt: skip
    line = verdict_line(summarize_methods([row])[0])
    assert line.endswith("Randomisation ρ undefined (signed undefined), locality-prior ρ 0.55")
    assert line.startswith("lrp:epsilon+pass:0,0.1 (1 case(s)): passes brain_share, contrast;")
    # no prior_gap in the row: the faithfulness check reads an undefined value and fails
    assert "faithful: 95 % interval of mean prior_gap above 0" in line
    assert "(MoRF AOPC beats the locality prior's) (got undefined)" in line
    # no randomisation read-out: the randomisation check fails in words, "got undefined"
    assert "randomisation: 95 % interval of mean randomisation_shell below 0.5" in line
    assert "distance to the target held fixed) (got undefined)" in line


# ------------------------------------------------------------- sections from rows alone


def test_sections_render_from_rows_alone_without_a_run_folder(tmp_path: Path) -> None:
    from strokelrp.report.html import RunTables, metrics_section, training_section

    rows = [{k: str(v) for k, v in r.items()} for r in METRICS_ROWS]  # as read from a CSV
    table1 = [{"network": "A-1", "series": "A", "mean_dice": "0.4321", "n_cases": "2"}]
    runs = [RunTables("nowhere", table1=table1, metrics=rows), RunTables("empty", metrics=[])]
    fig_dir = tmp_path / "figures"  # no logs: nothing is drawn, nothing written
    training = training_section(runs, fig_dir).body
    assert _rows_of(training.split("<table>")[1]) == [["nowhere", "A-1", "A", "0.4321", "2"]]
    assert "No train_log.csv" in training
    body = metrics_section(runs).body
    means = re.findall(r'<tr class="mean">(.*?)</tr>', body)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", means[0])
    by_hand = [sum(r[c] for r in METRICS_ROWS) / 2 for c in ("dice", "precision", "true_ml")]
    assert [cells[2], cells[5], cells[8]] == [f"{v:.4g}" for v in by_hand]
    assert cells[3] == "4"  # HD95: the one finite value
    assert "metrics.csv has no rows" in body  # the second run's table is empty
    assert not fig_dir.exists()


def test_trust_and_explanations_render_from_rows_and_a_png(tmp_path: Path) -> None:
    from strokelrp.analysis.assess import COLUMNS
    from strokelrp.report.html import CaseFigures, RunTables, explanations_section, trust_section

    values = {"4": [1.0, 0.5, 0.3, 0.0, 0.01, 0.1, 0.2, 0.29, 0.2, 0.4, 0.6],
              "5": [0.9, 0.3, 0.2, 0.0, 0.04, 0.1, 0.1, 0.16]}  # fmt: skip
    values["5"] += [0.4, 0.4, 0.6]
    assess = [dict(zip(COLUMNS, [c, "lrp:epsilon", *map(str, v)], strict=True))
              | {"randomisation_shell": "0.1", "contrast_gap": "-0.1"}
              for c, v in values.items()]  # fmt: skip
    run = RunTables("J", assess_path=Path("J/assess/assess.csv"), assess=assess)
    body = trust_section([run], tmp_path / "figures").body
    table = _rows_of(body.split("<table>")[1])[0]
    brain = (1.0 + 0.9) / 2
    ratio = (0.3 / 0.01 + 0.2 / 0.04) / 2  # the median of two per-case ratios
    assert table[0] == "lrp:epsilon" and table[1] == f"{brain:.4g}" and table[9] == f"{ratio:.4g}"
    assert "No perturbation curves (assess_curves.csv)" in body  # no curves given
    assert "2 case(s) (4, 5)" in body
    lesion = (0.5 + 0.3) / 2
    assert (
        "passes brain_share, faithful, beats_random, randomisation, contrast, ablation; fails "
        "lesion_share: " in body
    )
    assert f"(got {lesion:.3g} [0.3, 0.5])" in body

    png = tmp_path / "J" / "explanations" / "c1" / "figure1.png"
    write_png(png)
    nifti = png.parent / "relevance_raw.nii.gz"  # a link only: never opened
    run.explained = [CaseFigures("c1", pngs=(png,), niftis=(nifti,))]
    text = explanations_section([run], report_dir=tmp_path / "J").body
    assert "<h3>J / c1</h3>" in text and 'href="explanations/c1/relevance_raw.nii.gz"' in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 1
