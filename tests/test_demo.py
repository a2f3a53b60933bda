"""`strokelrp demo --quick`: every stage runs on a fresh folder and leaves what it promises."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from strokelrp.cli import main
from strokelrp.lrp.filters import PAPER_GRID
from strokelrp.pipeline.demo import MARKER, QUICK, run_demo


@pytest.fixture
def restore_threads():
    """The demo command sets torch's thread count (--threads, default 1): undo it afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_quick_demo_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, restore_threads
) -> None:
    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    try:
        main(["demo", "--out", str(out), "--quick"])
    except SystemExit as exit_:
        assert not exit_.code, capsys.readouterr().err
    assert torch.get_num_threads() == 1
    printed = capsys.readouterr().out
    for stage in range(1, 9):
        assert f"[{stage}/8]" in printed
    report = out / "report.html"
    assert printed.strip().splitlines()[-1] == f"report: {report.resolve()}"
    assert "input inclusivity" in printed and "ablation rho" in printed
    assert "control MTT: mean Dice drop when mean-filled" in printed

    # docs/outputs.md's listing of the demo's folder names everything the demo writes there
    docs = (Path(__file__).parents[1] / "docs" / "outputs.md").read_text()
    listing = docs.split("## The demo's folder", 1)[1].split("```")[1]
    for entry in out.iterdir():
        name = entry.name + ("/" if entry.is_dir() else "")
        assert f"DIR/{name}" in listing, f"docs/outputs.md does not list DIR/{name}"

    # the synthetic manifest says which modality is the noise control
    manifest = json.loads((out / "data" / "synth_manifest.json").read_text())
    assert manifest["control_modalities"] == ["MTT"]

    run = out / "runs" / "A"
    with (run / "metrics.csv").open() as fh:
        metrics = list(csv.DictReader(fh))
    assert len(metrics) == QUICK.n_cases

    with (run / "sweep" / "sweep.csv").open() as fh:
        sweep = list(csv.DictReader(fh))
    assert len(sweep) == QUICK.n_cases * len(PAPER_GRID) * 6
    assert len({r["setting"] for r in sweep}) == len(PAPER_GRID)

    explained = sorted(p for p in (run / "explanations").iterdir() if p.is_dir())
    assert len(explained) == QUICK.explain_cases
    for case_dir in explained:
        assert (case_dir / "figure1.png").stat().st_size > 10_000
        relevance = nib.load(case_dir / "relevance_raw.nii.gz")
        source = nib.load(next((out / "data").glob(f"training_{case_dir.name}/*MR_ADC*/*.nii")))
        assert relevance.shape == (*source.shape, 6)
        np.testing.assert_allclose(relevance.affine, source.affine, atol=1e-5)

    html = report.read_text()
    assert "figure1" in html and "sweep" in html.lower()
    # the report's tables carry the CSVs' numbers: the metrics' mean Dice, table 1's Dice
    mean_row = re.search(r'<tr class="mean">(.*?)</tr>', html).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", mean_row)
    dice = [float(r["dice"]) for r in metrics]
    assert cells[list(metrics[0]).index("dice")] == f"{np.nanmean(dice):.4g}"
    with (run / "table1.csv").open() as fh:
        (table1,) = list(csv.DictReader(fh))
    assert f"<td>{float(table1['mean_dice']):.4g}</td>" in html
    assert float(table1["mean_dice"]) == pytest.approx(np.nanmean(dice), rel=1e-9)
    # explain's Dice of a case is evaluate's (one native-grid prediction, one Dice)
    by_case = {r["case_id"]: float(r["dice"]) for r in metrics}
    for case_dir in explained:
        summary = json.loads((case_dir / "explanation.json").read_text())
        assert summary["dice"] == pytest.approx(by_case[case_dir.name], abs=1e-9)
    assert (out / MARKER).exists()

    # the quick trust assessment: its table, curves and cascade, and the report's trust
    # section carries its numbers (means over its cases; MoRF / random: median of the ratios)
    with (run / "assess" / "assess.csv").open() as fh:
        assessed = list(csv.DictReader(fh))
    methods = list(dict.fromkeys(r["method"] for r in assessed))
    assert methods[:4] == ["lrp:epsilon", "lrp:paper", "gradient_x_input", "locality_prior"]
    assert len({r["case"] for r in assessed}) == 2
    assert (run / "assess" / "assess_curves.csv").is_file()
    assert (run / "assess" / "cascade.csv").is_file()
    assert f"trust of the maps of A ({run / 'assess' / 'assess.csv'}" in printed
    trust = html.split(">Can the maps be trusted?</h2>")[1].split("</section>")[0]
    table = trust.split("<tbody>")[1].split("</tbody>")[0]
    shown = {
        cells[0]: cells
        for cells in (re.findall(r"<td[^>]*>(.*?)</td>", r) for r in table.split("</tr>")[:-1])
    }
    assert list(shown) == methods

    def expected(values: list[float]) -> str:
        finite = [v for v in values if np.isfinite(v)]
        return f"{np.mean(finite):.4g}" if finite else "–"

    def column(method: str, name: str) -> list[float]:
        return [float(r[name] or "nan") for r in assessed if r["method"] == method]

    for method in methods:
        cells = shown[method]
        measured = (
            (1, "brain_share"),
            (3, "morf_aopc"),
            (6, "prior_gap"),
            (12, "contrast_gap"),
            (14, "randomisation_rho"),
            (16, "randomisation_shell"),
        )
        for i, name in measured:
            assert cells[i] == expected(column(method, name)), (method, name)
        ratios = [
            m / r
            for m, r in zip(column(method, "morf_aopc"), column(method, "random_aopc"), strict=True)
            if r > 0
        ]
        if ratios and all(np.isfinite(ratios)):
            assert cells[9] == f"{np.median(ratios):.4g}"
    assert "Region perturbation curves (assess_curves.csv)" in trust
    assert "Cascading model randomisation" in trust

    # a rerun replaces an earlier demo; a foreign non-empty folder is refused
    other = tmp_path / "foreign"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="not an earlier demo"):
        run_demo(other, quick=True, progress=False, echo=lambda _: None)
    assert (other / "keep.txt").read_text() == "mine"
    _demo_report_in_chromium(report, explained, out / "data")


def _demo_report_in_chromium(report: Path, explained: list[Path], data: Path) -> None:
    """The demo's report in headless Chromium: each case's viewer frame loads without a
    console error, reads the relevance file's value at the crosshair and draws the overlay."""
    from browser import (
        browser_page,
        canvas_pixels,
        chromium,
        chromium_browser,
        overlay,
        readout,
        select,
        wait_ready,
    )

    if chromium() is None:
        pytest.skip("the demo passed; its report was not opened: no chromium on PATH")
    with chromium_browser() as browser, browser_page(browser) as (page, errors):
        page.goto(report.as_uri())
        assert len(page.frames) == 1 + len(explained)
        for frame, case_dir in zip(page.frames[1:], explained, strict=True):
            assert frame.url.endswith(f"/viewer/A-{case_dir.name}.html")
            wait_ready(frame)
            summary = json.loads((case_dir / "explanation.json").read_text())
            channel = summary["modalities"].index(summary["figure_modality"])
            raw = nib.load(case_dir / "relevance_raw.nii.gz").get_fdata(dtype=np.float32)
            voxel, value, _ = readout(frame)
            assert value == float(raw[(*voxel, channel)])
            select(frame, layout="axial", threshold=0, channel="ADC")
            assert overlay(canvas_pixels(frame)).sum() > 100
            # the ADC channel over the case's own ADC file
            adc = nib.load(next(data.glob(f"training_{case_dir.name}/*MR_ADC*/*.nii")))
            voxel, value, intensity = readout(frame)
            assert value == float(raw[(*voxel, 0)])
            assert intensity == float(adc.get_fdata(dtype=np.float32)[voxel])
        assert not errors, errors
