"""The names of a run folder's files: the one place their writers and readers take them from.

::

    RUN/config.toml          CONFIG          train writes, everyone reads
    RUN/split.json           SPLIT           train (training / held-out case ids)
    RUN/train_log.csv        TRAIN_LOG       train (one row per epoch)
    RUN/checkpoints/         CHECKPOINTS     train (names inside: strokelrp.train.checkpoint)
    RUN/net-K/               network_dir()   train with repeats > 1: one run folder per network
    RUN/metrics.csv          METRICS         evaluate (one row per case)
    RUN/table1.csv           TABLE1          evaluate (one row per network)
    RUN/sweep/sweep.csv      SWEEP_TABLE     sweep
    RUN/explanations/CASE/   EXPLANATIONS    explain (FIGURE1, EXPLANATION, relevance NIfTIs)
    RUN/assess/              ASSESS_DIR      assess --out RUN/assess (the demo; the report reads it)
      assess.csv             ASSESS_TABLE    assess (one row per case x method)
      assess_curves.csv      ASSESS_CURVES   assess (the perturbation curves behind the AOPCs)
      cascade.csv            CASCADE_TABLE   assess --cascade (randomisation cascade)
    RUN/report.html          REPORT          report (its figures in FIGURES beside it)
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.toml"
SPLIT = "split.json"
TRAIN_LOG = "train_log.csv"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.csv"
TABLE1 = "table1.csv"
SWEEP_TABLE = Path("sweep") / "sweep.csv"
EXPLANATIONS = "explanations"
FIGURE1 = "figure1.png"
EXPLANATION = "explanation.json"
ASSESS_DIR = "assess"
ASSESS_TABLE = "assess.csv"
ASSESS_CURVES = "assess_curves.csv"
CASCADE_TABLE = "cascade.csv"
REPORT = "report.html"
FIGURES = "figures"
NETWORK_GLOB = "net-*"
"""The network folders of a repeats run, as a glob pattern."""


def network_dir(run_dir: Path, k: int) -> Path:
    """``RUN/net-K``: network ``k`` (1-based) of a run trained with ``repeats`` > 1."""
    return Path(run_dir) / f"net-{k}"
