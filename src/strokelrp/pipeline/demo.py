"""The whole pipeline on synthetic data, on any machine, offline: ``strokelrp demo``.

Stages (each calls the Python API, no subprocesses):

1. synthesise ISLES 2017-format cases (``OUT/data``) on varied native grids. One modality
   (MTT) is a **control**: zero-mean noise inside the brain, no lesion signature and no
   anatomy (the manifest records it). The sweep measures what the trained model uses by
   ablation (mean-fill each modality, Dice drop; the control's drop is below 0.01) and
   compares each map's modality shares with it, so "relevance avoids the control" is a valid
   check: a map blind to the modalities puts 1/6 of its relevance there;
2. inspect them (what ``strokelrp inspect`` shows);
3. train narrow U-Nets at series A (and B in the full demo) into ``OUT/runs/<series>``;
4. evaluate them in the native grids (``metrics.csv``, ``table1.csv``);
5. explain the two best-segmented cases with the paper's figure-1 filters (NIfTI + PNG);
6. sweep the paper's 16 filter settings over every case (``sweep/sweep.csv``);
7. assess the trust of a few methods' maps (:mod:`strokelrp.pipeline.quick_assess`: the
   default preset, the paper's, the default at the sweep's sweet spot, gradient x input, the
   locality prior) on two held-out cases of the first run (``runs/A/assess/``);
8. write the HTML report (``OUT/report.html``) and print its path and the key numbers.

The demo networks are far narrower and shorter-trained than the paper's (width 32, 80
epochs), so that the full demo takes about 3 minutes on a 2-core CPU; they are trained with
cross-entropy + soft Dice and a larger learning rate so that a few epochs already give
non-empty lesion predictions (a network that predicts nothing has nothing to explain with
``target="prediction"``). Everything else is the paper's method.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from strokelrp import run_files
from strokelrp.errors import StrokeLRPError

MARKER = "strokelrp_demo.json"
"""File that marks a folder as a demo output (so a rerun may replace it)."""

CONTROL = ("MTT",)
"""The demo's control modality: noise a trained model ignores (strokelrp.data.synth)."""


@dataclass(frozen=True)
class NetPlan:
    """One network of the demo: series, width, epochs."""

    series: str
    width: int
    epochs: int


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run. ``val_fraction`` of the cases are held out from training (and
    reported apart by ``evaluate``); the sweep covers every case."""

    n_cases: int
    shape_hwd: tuple[int, int, int]
    networks: tuple[NetPlan, ...]
    val_fraction: float = 0.25
    explain_cases: int = 2
    loss: str = "dice_ce"
    lr: float = 2e-3
    seed: int = 0


FULL = DemoPlan(
    n_cases=16,
    shape_hwd=(64, 64, 19),
    networks=(NetPlan("A", width=4, epochs=10), NetPlan("B", width=2, epochs=5)),
)
"""About 3 minutes on a 2-core CPU (docs/benchmarks.md, "The demo")."""

QUICK = DemoPlan(
    n_cases=6,
    shape_hwd=(40, 40, 12),
    networks=(NetPlan("A", width=2, epochs=5),),
    val_fraction=0.0,
)
"""Every stage at tiny sizes, about 1 minute on a 2-core CPU (the CI test runs it)."""


def _prepare(out: Path) -> None:
    """``out`` must be new, empty or an earlier demo (whose outputs are replaced)."""
    if out.exists() and not out.is_dir():
        raise StrokeLRPError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise StrokeLRPError(
                f"{out}: folder is not empty and is not an earlier demo; choose a new folder"
            )
        for name in ("data", "runs", run_files.FIGURES):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (run_files.REPORT, MARKER):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


class _Stages:
    """Numbered stage headers ``[i/total] text`` and their wall and CPU times."""

    def __init__(self, echo: Callable[[str], None], total: int) -> None:
        self.echo, self.total, self.index = echo, total, 0

    @contextmanager
    def __call__(self, text: str, *, same: bool = False) -> Iterator[None]:
        """One stage (``same``: another part of the previous stage, same number)."""
        self.index += 0 if same else 1
        self.echo(f"\n[{self.index}/{self.total}] {text}")
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.echo(f"      done in {wall:.1f} s (CPU time of all threads {cpu:.1f} s)")


def _best_cases(rows: list[dict[str, Any]], n: int) -> list[str]:
    """The ``n`` cases with the highest Dice (ties by id); cases without a Dice come last."""

    def key(row: dict[str, Any]) -> tuple[float, str]:
        try:
            dice = float(row.get("dice"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            dice = float("nan")
        return (-(dice if dice == dice else -1.0), str(row["case_id"]))

    return [str(r["case_id"]) for r in sorted(rows, key=key)[:n]]


def _table1_lines(results: list[Any]) -> list[str]:
    """A compact table 1: per network its size, training time and Dice (all / held-out)."""
    lines = ["network  width  epochs  train min  Dice all (SD)     Dice held-out  HD95 mm"]
    for result in results:
        t, s = result.table1, result.summary
        held = s.get("validation", {}).get("dice", {}).get("mean")
        held_text = "-" if held is None else f"{held:.3f}"
        lines.append(
            f"{t['network']:<8} {t['width']:>5}  {t['epochs']:>6}  {t['training_minutes']:>9.2f}  "
            f"{t['mean_dice']:.3f} ({t['sd_dice']:.3f})    {held_text:>13}  "
            f"{s['all']['hd95_mm']['mean']:>7.2f}" + ("  COLLAPSED" if t["collapsed"] else "")
        )
    return lines


def control_lines(rows: list[dict[str, Any]], control: tuple[str, ...]) -> list[str]:
    """Per series: the control's mean ablation drop (is it ignored?) and its raw-map share."""
    import math

    from strokelrp.analysis.shares import IGNORED_DROP

    lines = []
    for series in sorted({str(r["series"]) for r in rows}):
        for modality in control:
            mine = [r for r in rows if r["series"] == series and r["modality"] == modality]
            drops = {(r["network"], r["case"]): float(r["ablation_drop"]) for r in mine}
            shares = [
                float(r["relevance_share"])
                for r in mine
                if r["setting"] == "raw" and math.isfinite(float(r["relevance_share"]))
            ]
            if not drops or not shares:
                continue
            drop = sum(drops.values()) / len(drops)
            verdict = "ignored" if abs(drop) < IGNORED_DROP else "NOT ignored"
            lines.append(
                f"  series {series} control {modality}: mean Dice drop when mean-filled "
                f"{drop:+.4f} ({verdict} by the model); raw maps put "
                f"{sum(shares) / len(shares):.3f} of their positive relevance on it "
                f"(a map blind to the modalities: {1 / 6:.3f})"
            )
    return lines


def synthesise_stage(out: Path, plan: DemoPlan, progress: bool) -> Path:
    """Synthetic ISLES 2017 cases in ``out/data`` (MTT a noise control); returns the folder."""
    from strokelrp.data.synth import synthesize_isles2017

    return synthesize_isles2017(
        out / "data",
        plan.n_cases,
        shape=plan.shape_hwd,
        seed=plan.seed,
        varied_grids=True,
        control=CONTROL,
        progress=progress,
    )


def inspect_stage(data: Path) -> list[str]:
    """Validate every case (what ``strokelrp inspect`` does); lines describing them."""
    from strokelrp.data.layouts import format_grid, inspect_data

    reports = list(inspect_data(data))
    bad = [r for r in reports if r.problems]
    if bad:
        raise StrokeLRPError("\n".join(p for r in bad for p in r.problems))
    grids = sorted({format_grid(r.grid) for r in reports})
    volumes = [r.lesion_ml for r in reports if r.lesion_ml is not None]
    return [
        f"{len(reports)} valid cases, native grids (x y z) {', '.join(grids)}; "
        f"lesion {min(volumes):.1f}-{max(volumes):.1f} mL"
    ]


def train_stage(
    out: Path, data: Path, plan: DemoPlan, net: NetPlan, device: str, progress: bool
) -> list[Path]:
    """Train one network of the plan into ``out/runs/<series>``; returns its run folder(s)."""
    from strokelrp.config import TrainConfig
    from strokelrp.train.loop import train

    config = TrainConfig(
        data=str(data),
        series=net.series,
        width=net.width,
        epochs=net.epochs,
        seed=plan.seed,
        loss=plan.loss,
        lr=plan.lr,
        val_fraction=plan.val_fraction,
        device=device,
        cache_dir=str(out / "runs" / ".cache"),
    )
    return train(config, out / "runs" / net.series, progress=progress)


def evaluate_stage(runs: list[Path], data: Path, device: str, progress: bool) -> list[Any]:
    """Evaluate every run in the native grids (``metrics.csv``, ``table1.csv``)."""
    from strokelrp.train.evaluate import evaluate

    results = []
    for run in runs:
        results += evaluate(run, data, device=device, progress=progress, echo=None)
    return results


def explain_stage(
    runs: list[Path], data: Path, cases: list[str], device: str, progress: bool
) -> tuple[list[Path], list[str]]:
    """Figure 1 (raw, pass (0, 0.4), clamp (0, 0.2)) of ``cases`` for every run; returns the
    figures and the notes."""
    from tqdm import tqdm

    from strokelrp.pipeline.explain import explain_case
    from strokelrp.report.explain_case import parse_settings

    settings = parse_settings(None)
    jobs = [(run, case) for run in runs for case in cases]
    figures, notes = [], []
    for run, case in tqdm(jobs, desc="explain", unit="map", disable=not progress):
        done = explain_case(run, data, case, filters=settings, device=device)
        figures.append(done.figure)
        notes += done.notes
    return figures, notes


def sweep_stage(
    runs: list[Path], data: Path, device: str, progress: bool, echo: Callable[[str], None]
) -> list[dict[str, Any]]:
    """The paper's 16 filter settings over every case of every run; returns the rows."""
    from strokelrp.analysis.sweep import paper_grid
    from strokelrp.pipeline.sweep import sweep_run
    from strokelrp.run_files import RunDir

    grid = paper_grid()
    for run in runs:
        sweep_run(run, data, grid, device=device, progress=progress, log=echo)
    return [row for run in runs for row in RunDir(run).read_sweep()]


def assess_stage(run: Path, data: Path, device: str, echo: Callable[[str], None]) -> Path:
    """A quick trust assessment of ``run`` (:func:`strokelrp.pipeline.quick_assess.quick_assess`);
    returns the path of its assess.csv."""
    from strokelrp.pipeline.quick_assess import quick_assess

    path, cases, kind = quick_assess(run, data, device=device)
    echo(f"      cases {', '.join(cases)} ({kind}); {path}")
    return path


def trust_lines(path: Path) -> list[str]:
    """One verdict line per method of an assess table (the report's trust section)."""
    from strokelrp.analysis.assess import summarize_methods
    from strokelrp.report.assess_run import verdict_line
    from strokelrp.run_files import read_csv

    return [verdict_line(s) for s in summarize_methods(read_csv(path))]


def run_demo(
    out: str | Path = "strokelrp-demo",
    *,
    quick: bool = False,
    plan: DemoPlan | None = None,
    device: str = "cpu",
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> Path:
    """Run every stage into ``out``; returns the report's path. See the module docstring."""
    import torch

    from strokelrp.analysis.sweep import summary_lines
    from strokelrp.pipeline.report import build_report

    plan = plan or (QUICK if quick else FULL)
    out = Path(out).expanduser().resolve()
    _prepare(out)
    (out / MARKER).write_text(json.dumps({"plan": asdict(plan)}, indent=1) + "\n")
    stage = _Stages(echo, total=8)
    t_all = time.perf_counter(), time.process_time()
    mode = "quick" if quick else "full"
    echo(
        f"strokelrp demo ({mode}) -> {out}  [torch {torch.__version__}, {device}, "
        f"{torch.get_num_threads()} CPU thread(s)]"
    )

    with stage(f"synthesise {plan.n_cases} cases (MTT a noise control)"):
        data = synthesise_stage(out, plan, progress)
    with stage(f"inspect {data}"):
        for line in inspect_stage(data):
            echo("      " + line)
    runs: list[Path] = []
    for i, net in enumerate(plan.networks):
        text = (
            f"train series {net.series}: width {net.width}, {net.epochs} epochs, loss "
            f"{plan.loss}, lr {plan.lr:g}, {plan.val_fraction:.0%} of the cases held out"
        )
        with stage(text, same=i > 0):
            runs += train_stage(out, data, plan, net, device, progress)
    with stage("evaluate in the native grids"):
        results = evaluate_stage(runs, data, device, progress)
        for line in _table1_lines(results):
            echo("      " + line)
    cases = _best_cases(results[0].rows, plan.explain_cases)
    with stage(f"explain cases {', '.join(cases)} (raw, pass(0,0.4), clamp(0,0.2))"):
        figures, notes = explain_stage(runs, data, cases, device, progress)
        for note in notes:
            echo(f"      note: {note}")
    with stage("sweep the paper's 16 filter settings over every case"):
        rows = sweep_stage(runs, data, device, progress, echo)
    with stage(f"assess the trust of a few methods' maps on two cases of {runs[0].name}"):
        trust = assess_stage(runs[0], data, device, echo)
    with stage("write the report"):
        report = build_report(runs, out / run_files.REPORT)

    echo(
        "\nmean inclusivity over cases and modalities (input: D(LRP, x); ground truth: D(LRP, OT)):"
    )
    for line in summary_lines(rows):
        echo("  " + line)
    for line in control_lines(rows, CONTROL):
        echo(line)
    echo(f"\ntrust of the maps of {runs[0].name} ({trust}; docs/assess.md):")
    for line in trust_lines(trust):
        echo("  " + line)
    echo(f"\nfigure 1 of case {cases[0]}: {figures[0]}")
    wall, cpu = time.perf_counter() - t_all[0], time.process_time() - t_all[1]
    echo(f"demo finished in {wall:.0f} s (CPU time {cpu:.0f} s)")
    echo(f"report: {report}")
    return report
