"""What `strokelrp assess` prints: whole column names, the MoRF / random ratio, verdict lines,
and warnings for a degenerate target (issue 21, point 5)."""

from __future__ import annotations

import pytest
from cli_helpers import run_cli as cli

from strokelrp.pipeline.assess import target_warnings
from strokelrp.report.assess_run import summary_lines
from strokelrp.trust_measures import MEASURES


def _row(case: str, morf: float, rnd: float, **extra: float) -> dict[str, object]:
    row: dict[str, object] = {m: 0.5 for m in MEASURES}
    row.update(case=case, method="gradient", morf_aopc=morf, random_aopc=rnd, prior_rho="")
    row.update(extra)
    return row


def test_summary_has_whole_names_the_ratio_and_a_verdict() -> None:
    rows = [_row("1", 4.0, 0.5), _row("2", 3.0, 1.0), _row("3", 1.0, 1.0)]
    lines = summary_lines(rows)
    header = lines[0].split()
    assert header == ["method", *MEASURES, "morf/random"]
    values = lines[1].split()
    assert values[0] == "gradient"
    assert values[1 + MEASURES.index("morf_aopc")] == "2.667"  # (4 + 3 + 1) / 3
    assert float(values[-1]) == 3.0  # median of 8, 3 and 1, by hand
    (verdict,) = [line for line in lines if line.startswith("verdict ")]
    assert verdict.startswith("verdict gradient (3 case(s)): passes ")
    # every measure of _row is 0.5 on all three cases: brain_share's interval is [0.5, 0.5]
    assert (
        "fails brain_share: 95 % interval of mean brain_share above 0.9 (got 0.5 [0.5, 0.5])"
        in (verdict)
    )


def test_degenerate_targets_are_warned() -> None:
    voxels = 1000
    rows = [
        {"method": "gradient", "target_voxels": 1000, "target_score": 20.8},
        {"method": "occlusion", "target_voxels": 1000, "target_score": 20.8},
        {"method": "lrp:paper", "target_voxels": 40, "target_score": -3.0},
        {"method": "gradcam", "target_voxels": 40, "target_score": 2.0},
    ]
    lines = target_warnings("4", rows, voxels)
    assert len(lines) == 2  # once per finding, not per method
    assert lines[0].startswith("case 4: the target covers 1000 of 1000 voxels (100 %)")
    assert "negative (-3)" in lines[1]
    empty = target_warnings("5", [{"method": "m", "target_voxels": 0, "target_score": 0}], voxels)
    assert len(empty) == 1 and "empty" in empty[0]
    assert target_warnings("6", rows[3:], voxels) == []


def test_assess_device_defaults_to_auto_as_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, stdout, _ = cli(["assess", "--help"], capsys)
    assert code == 0
    text = " ".join(stdout.split())
    assert "--device [auto|cpu|cuda]" in text
    assert "[default: auto]" in text.split("--device", 1)[1]


def test_mean_curves_read_the_main_removal_by_default() -> None:
    """assess writes the main removal's curves first (impute by default); the report's curves
    are those, not the zero-fill extras, unless a removal is named."""
    from strokelrp.report.assess_run import main_removal, mean_curves

    def point(case: str, baseline: str, fraction: float, drop: float) -> dict[str, object]:
        return dict(case=case, method="gradient", order="morf", level="element",
                    baseline=baseline, seed="", fraction=fraction, drop=drop)  # fmt: skip

    points = [point("1", "impute", 0.1, 0.2), point("2", "impute", 0.1, 0.4),
              point("1", "zero", 0.1, 0.9), point("2", "zero", 0.1, 0.7)]  # fmt: skip
    assert main_removal(points) == "impute" and main_removal([]) is None
    fractions, drops = mean_curves(points)["gradient"]["morf"]
    assert fractions == [0.1] and drops == [pytest.approx(0.3)]  # (0.2 + 0.4) / 2
    assert mean_curves(points, baseline="zero")["gradient"]["morf"][1] == [pytest.approx(0.8)]
