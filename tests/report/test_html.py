"""The HTML report: every section, embedded images, relative NIfTI links, no external URLs."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from synthetic_sweep_rows import make_rows

from strokelrp.analysis.table import write_table
from strokelrp.cli import main
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.errors import StrokeLRPError
from strokelrp.report.html import build_report


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


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_trust_section_from_assess_csv(tmp_path: Path) -> None:
    from strokelrp.analysis.assess import COLUMNS

    run = tmp_path / "judged"
    (run / "assess").mkdir(parents=True)
    (run / "config.toml").write_text('series = "A"\n')
    good = [0.95, 0.6, 2.0, -1.0, 0.1, 0.8, 0.5, 0.5]
    bad = [0.5, 0.1, 0.3, 0.2, 0.1, 0.95, -0.99, 0.1]
    lines = [",".join([*COLUMNS, "prior_rho"])]
    for case in ("4", "5"):
        lines.append(",".join([case, "lrp:epsilon", *map(str, good), "0.9"]))
        lines.append(",".join([case, "lrp:paper", *map(str, bad), "0.7"]))
    (run / "assess" / "assess.csv").write_text("\n".join(lines) + "\n")
    cascade = ["case,method,step,layer,rho"]
    for case in ("4", "5"):
        for step, layer in enumerate(("head", "dec1", "dec2"), start=1):
            cascade.append(f"{case},lrp:epsilon,{step},{layer},{1 - 0.3 * step}")
            cascade.append(f"{case},lrp:paper,{step},{layer},0.97")
    (run / "assess" / "cascade.csv").write_text("\n".join(cascade) + "\n")
    text = build_report([run]).read_text(encoding="utf-8")
    assert ">Can the maps be trusted?</h" in text
    assert "lrp:epsilon: passes all 5 checks" in text
    assert "lrp:paper: passes 0 of 5 checks; fails mean brain_share &gt;= 0.9 (got 0.5)" in text
    assert "Cascading model randomisation" in text
    assert (run / "figures" / "cascade_judged.png").stat().st_size > 10_000
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
            writer.writerow(["training_1", method, 0.9, 0.5, morf, 0, 0.1, 0.7, 0.5, 0.5])
    text = build_report([run]).read_text(encoding="utf-8")
    assert "Filters: inclusivity against faithfulness" in text
    table = text.split("Filters: inclusivity against faithfulness")[1].split("</table>")[0]
    rows = read_table(run / "sweep" / "sweep.csv")
    for setting, ratio in (("raw", "20"), ("pass(0,0.2)", "-0.5")):
        values = [r["input_inclusivity"] for r in rows if r["setting"] == setting]
        mean = sum(values) / len(values)
        assert f'<td class="text">{setting}</td><td>{mean:.4g}</td>' in table
        assert f"<td>{ratio}</td>" in table
    assert "gradient" not in table  # not a filter setting
