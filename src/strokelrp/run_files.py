"""The run folder: every file name of a run and the one reader / writer of each (:class:`RunDir`).

::

    RUN/config.toml          config        train writes, everyone reads
    RUN/split.json           split         train (training / held-out case ids, fingerprints)
    RUN/train_log.csv        train_log     train (one row per epoch, TRAIN_LOG_COLUMNS)
    RUN/assess_log.csv       assess_log    train --assess-every (ASSESS_LOG_COLUMNS)
    RUN/checkpoints/         checkpoints   train (epoch-NNN / last pairs: epoch_name, LAST;
                             their contents: strokelrp.train.checkpoint)
    RUN/net-K/               network(k)    train with repeats > 1: one run folder per network
    RUN/metrics.csv          metrics       evaluate (one row per case)
    RUN/table1.csv           table1        evaluate (one row per network)
    RUN/sweep/sweep.csv      sweep_table   sweep
    RUN/assess/assess.csv    assess_table  assess --out RUN/assess (or RUN/assess.csv)
    RUN/assess/assess_curves.csv  ASSESS_CURVES  assess (the perturbation curves behind the
                             AOPC columns), beside assess.csv; cascade.csv (CASCADE_TABLE) and
                             assess_pairs.csv (ASSESS_PAIRS: paired Wilcoxon) too
    RUN/explanations/CASE/   explanation_dir(CASE)   explain (FIGURE1, EXPLANATION, NIfTIs)
    RUN/report.html          report        report (its figures in FIGURES beside it, the
                             cases' viewer pages and NiiVue in VIEWER beside it)

Every write is atomic (:mod:`strokelrp.atomic`); checkpoints are written and read by
:mod:`strokelrp.train.checkpoint` (safetensors, never unpickled), which uses the names here;
this module imports nothing that makes or loads a checkpoint. A reader that finds a file
missing or malformed raises one :class:`~strokelrp.errors.StrokeLRPError` naming the file
(and so the run folder) and the problem. This module imports neither torch nor the packages
that use it; the few readers that need them import them when called.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokelrp.atomic import write_json, write_text
from strokelrp.config import TrainConfig
from strokelrp.errors import StrokeLRPError
from strokelrp.trust_measures import MEASURES

CONFIG = "config.toml"
SPLIT = "split.json"
TRAIN_LOG = "train_log.csv"
ASSESS_LOG = "assess_log.csv"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.csv"
TABLE1 = "table1.csv"
SWEEP_TABLE = Path("sweep") / "sweep.csv"
ASSESS_DIR = "assess"
ASSESS_TABLE = "assess.csv"
ASSESS_CURVES = "assess_curves.csv"
ASSESS_PAIRS = "assess_pairs.csv"
CASCADE_TABLE = "cascade.csv"
EXPLANATIONS = "explanations"
FIGURE1 = "figure1.png"
EXPLANATION = "explanation.json"
COHORT_TABLE = "cohort.csv"
"""One row per case of an ``explain --nnunet`` cohort folder."""
REPORT = "report.html"
FIGURES = "figures"
VIEWER = "viewer"
NETWORK_GLOB = "net-*"
LAST = "last"
"""The newest checkpoint pair of ``checkpoints/`` (``last.safetensors`` / ``last.json``)."""
_EPOCH_RE = re.compile(r"^epoch-(\d{3,})\.safetensors$")
"""The network folders of a repeats run, as a glob pattern."""

TRAIN_LOG_COLUMNS: tuple[str, ...] = (
    "epoch",
    "loss",
    "train_dice_trainmode",
    "val_dice",
    "seconds",
)
"""The columns of ``train_log.csv``. ``train_dice_trainmode``: hard Dice of each training
step's own forward pass (BatchNorm in train mode, before the step's update), averaged over the
epoch: the "Dice in PyTorch training mode" that the paper reports. ``val_dice``: eval-mode Dice
on the held-out cases at the end of the epoch (empty without a held-out split). Both at the
series scale. ``seconds``: the epoch's training steps and validation (checkpoint writing
excluded)."""

ASSESS_LOG_COLUMNS: tuple[str, ...] = ("epoch", "split", "case", "method", *MEASURES, "seconds")
"""The columns of ``assess_log.csv`` (:mod:`strokelrp.train.assess_log`)."""


def epoch_name(epoch: int) -> str:
    """The stem of epoch ``epoch``'s checkpoint pair: ``3`` -> ``epoch-003``."""
    return f"epoch-{epoch:03d}"


def epoch_number(path: str | Path) -> int | None:
    """``.../epoch-003.safetensors`` -> 3; None for any other file name."""
    m = _EPOCH_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def epoch_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """``epoch-NNN.safetensors`` files in the folder, oldest first (complete or not)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(n, p) for p in ckpt_dir.iterdir() if (n := epoch_number(p)) is not None]
    return [p for _, p in sorted(found)]


def has_checkpoints(ckpt_dir: str | Path) -> bool:
    """Whether the folder holds any checkpoint (an epoch pair or ``last``, complete or not)."""
    return bool(epoch_checkpoints(ckpt_dir)) or (Path(ckpt_dir) / f"{LAST}.json").exists()


def network_dir(run_dir: str | Path, k: int) -> Path:
    """``RUN/net-K``: network ``k`` (1-based) of a run trained with ``repeats`` > 1."""
    return Path(run_dir) / f"net-{k}"


@dataclass(frozen=True)
class RunDir:
    """One run folder (``RUN``, or ``RUN/net-K`` of a repeats run): its paths and files.

    ``RunDir("runs/A").config`` is the path of the config; ``read_config()`` reads it.
    """

    path: Path

    def __init__(self, path: str | Path | RunDir) -> None:
        object.__setattr__(self, "path", Path(path.path if isinstance(path, RunDir) else path))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------------------ paths

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def split(self) -> Path:
        return self.path / SPLIT

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def assess_log(self) -> Path:
        return self.path / ASSESS_LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def table1(self) -> Path:
        return self.path / TABLE1

    @property
    def sweep_table(self) -> Path:
        return self.path / SWEEP_TABLE

    @property
    def explanations(self) -> Path:
        return self.path / EXPLANATIONS

    def explanation_dir(self, case_id: str) -> Path:
        """``RUN/explanations/CASE``: where ``strokelrp explain`` writes by default."""
        return self.explanations / case_id

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def assess_table(self) -> Path | None:
        """``RUN/assess/assess.csv`` (``strokelrp assess RUN DATA --out RUN/assess``) or
        ``RUN/assess.csv``, whichever exists first; None when the run has neither."""
        for path in (self.path / ASSESS_DIR / ASSESS_TABLE, self.path / ASSESS_TABLE):
            if path.is_file():
                return path
        return None

    # --------------------------------------------------------------------------- networks

    def is_run(self) -> bool:
        """Whether the folder holds a training run (its ``config.toml``)."""
        return self.config.is_file()

    def network(self, k: int) -> RunDir:
        """``RUN/net-K``: network ``k`` (1-based) of a run trained with ``repeats`` > 1."""
        return RunDir(network_dir(self.path, k))

    def networks(self) -> list[RunDir]:
        """The one-network run folders: ``[RUN]``, or ``RUN/net-1 ..`` for ``repeats`` > 1."""
        config = self.read_config()
        if config.repeats == 1:
            return [self]
        return [self.network(k) for k in range(1, config.repeats + 1)]

    def logged_networks(self, log: Path | str) -> list[RunDir]:
        """The folders holding the log file ``log`` (a file name): ``[RUN]`` when it has one,
        else the ``net-K`` folders that do (a repeats run); [] when none has."""
        if (self.path / log).is_file():
            return [self]
        return [RunDir(p.parent) for p in sorted(self.path.glob(f"{NETWORK_GLOB}/{log}"))]

    def label(self, network: RunDir | Path) -> str:
        """``A`` for the run's own network, ``A/net-2`` for a network folder inside it."""
        network = Path(network)
        return self.name if network == self.path else f"{self.name}/{network.name}"

    # ----------------------------------------------------------------------------- config

    def read_config(self) -> TrainConfig:
        """The run's :class:`~strokelrp.config.TrainConfig`; an error naming the folder when
        it is not a training run, or naming the file when the config is malformed."""
        if not self.config.is_file():
            raise StrokeLRPError(f"{self.path}: not a training run (no {CONFIG})")
        return TrainConfig.from_toml(self.config)

    def write_config(self, config: TrainConfig) -> Path:
        return config.to_toml(self.config)

    # ------------------------------------------------------------------------------ split

    def read_split(self) -> dict[str, Any]:
        """``split.json``: ``train`` / ``validation`` ids and ``data`` (root, fingerprints);
        {} when the run has none (tensors given to ``train``, older runs)."""
        if not self.split.is_file():
            return {}
        record = _read_json(self.split)
        if not (
            isinstance(record, dict)
            and all(isinstance(record.get(k, []), list) for k in ("train", "validation"))
            and isinstance(record.get("data") or {}, dict)
        ):
            raise StrokeLRPError(
                f"{self.split}: not a split record (expected lists 'train' and 'validation')"
            )
        return record

    def validation_ids(self) -> list[str] | None:
        """The held-out case ids from ``split.json``; None when there are none."""
        return [str(i) for i in self.read_split().get("validation", [])] or None

    def write_split(self, record: Mapping[str, Any]) -> Path:
        return write_json(self.split, dict(record), indent=1)

    # ------------------------------------------------------------------------------- logs

    def read_train_log(self) -> list[dict[str, Any]]:
        """Rows of ``train_log.csv``: ``epoch`` int, the others float (None when empty);
        [] when the run has no log yet."""
        return _read_log(self.train_log, TRAIN_LOG_COLUMNS, "a training log", _train_log_value)

    def write_train_log(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """``train_log.csv`` from the log rows (rewritten whole, atomically)."""
        return write_text(self.train_log, csv_text(TRAIN_LOG_COLUMNS, rows, _train_log_cell))

    def read_assess_log(self) -> list[dict[str, Any]]:
        """Rows of ``assess_log.csv``: ``epoch`` int, split / case / method strings, the
        measures and ``seconds`` float (NaN when empty); [] when absent."""
        return _read_log(
            self.assess_log, ASSESS_LOG_COLUMNS, "an assessment log", _assess_log_value
        )

    def write_assess_log(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """``assess_log.csv`` (rewritten whole, atomically; NaN as empty cells)."""
        return write_text(self.assess_log, csv_text(ASSESS_LOG_COLUMNS, rows, _assess_cell))

    # ------------------------------------------------------------------------ checkpoints

    def has_checkpoints(self) -> bool:
        """Whether this folder (or one of its ``net-K`` folders) holds any checkpoint."""
        folders = [self.checkpoints, *sorted(self.path.glob(f"{NETWORK_GLOB}/{CHECKPOINTS}"))]
        return any(has_checkpoints(d) for d in folders)

    def owns_checkpoint(self, path: str | Path) -> bool:
        """Whether the checkpoint file ``path`` lies in this run's ``checkpoints/``."""
        return Path(path).resolve().parent == self.checkpoints.resolve()

    # ----------------------------------------------------------------------------- tables

    def write_table(self, path: Path, text: str, record: Mapping[str, Any]) -> Path:
        """A result table of this run (CSV ``text``) and its provenance sidecar ``record``
        (the sidecar first, so a table never stands without its record)."""
        from strokelrp.provenance import write_sidecar

        write_sidecar(path, record)
        return write_text(path, text)

    def read_metrics(self) -> list[dict[str, str]]:
        """Rows of ``metrics.csv`` as strings."""
        return read_csv(self.metrics)

    def read_table1(self) -> list[dict[str, str]]:
        """Rows of ``table1.csv`` as strings."""
        return read_csv(self.table1)

    def read_sweep(self) -> list[dict[str, Any]]:
        """Rows of ``sweep/sweep.csv`` (:func:`strokelrp.analysis.table.read_table`)."""
        from strokelrp.analysis.table import read_table

        return read_table(self.sweep_table)

    def write_sweep(self, rows: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> Path:
        """``sweep/sweep.csv`` in the sweep table's format, with its provenance sidecar."""
        from strokelrp.analysis.table import write_table
        from strokelrp.provenance import write_sidecar

        write_sidecar(self.sweep_table, record)
        return write_table(self.sweep_table, rows)

    def outputs(self) -> list[Path]:
        """The result tables this run holds (table 1, metrics, sweep, assessment), in that
        order."""
        tables = (self.table1, self.metrics, self.sweep_table, self.assess_table)
        return [p for p in tables if p is not None and p.is_file()]

    # ----------------------------------------------------------------------- explanations

    def explained_cases(self) -> list[Path]:
        """The case folders under ``explanations/``, sorted."""
        root = self.explanations
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def explanation_summaries(self) -> list[Path]:
        """The ``explanation.json`` files under ``explanations/``, sorted."""
        return sorted(self.explanations.glob(f"*/{EXPLANATION}"))


def read_explanation(path: str | Path) -> dict[str, Any]:
    """An ``explanation.json`` (what ``strokelrp explain`` computed), as a dict."""
    record = _read_json(Path(path))
    if not isinstance(record, dict):
        raise StrokeLRPError(f"{path}: not an explanation record (expected a JSON object)")
    return record


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file of a run as dicts of strings; an error naming the file when it is
    missing or unreadable."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError as err:
        raise StrokeLRPError(f"{path}: no such file") from err
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise StrokeLRPError(f"{path}: cannot read ({err})") from err


# ------------------------------------------------------------------------------ formats


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise StrokeLRPError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise StrokeLRPError(f"{path}: cannot read ({err})") from err
    except ValueError as err:
        raise StrokeLRPError(f"{path}: not valid JSON ({err})") from err


def csv_text(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], cell: Callable[[Any], str]
) -> str:
    """CSV text (header, then one line per row) of ``rows``' ``columns``, each value through
    ``cell``; a missing key is ``cell(None)``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _train_log_cell(value: Any) -> str:
    return "" if value is None else str(value)


def _assess_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return "" if math.isnan(float(value)) else repr(float(value))
    return str(value)


def _train_log_value(column: str, text: str) -> Any:
    if text == "":
        return None
    return int(text) if column == "epoch" else float(text)


def _assess_log_value(column: str, text: str) -> Any:
    if column == "epoch":
        return int(text)
    if column in ("split", "case", "method"):
        return text
    return float(text) if text != "" else math.nan


def _read_log(
    path: Path, columns: Sequence[str], what: str, value: Callable[[str, str], Any]
) -> list[dict[str, Any]]:
    """Rows of a log CSV parsed with ``value(column, text)``; [] when the file is absent."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise StrokeLRPError(f"{path}: not {what}, missing columns {missing}")
            raw = list(reader)
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise StrokeLRPError(f"{path}: cannot read ({err})") from err
    rows = []
    for line, row in enumerate(raw, start=2):
        try:
            rows.append({c: value(c, row[c] or "") for c in columns})
        except ValueError as err:
            raise StrokeLRPError(f"{path}, line {line}: not a number ({err})") from err
    return rows
