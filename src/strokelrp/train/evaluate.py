"""Evaluation of a run in each case's native grid: ``RUN/metrics.csv`` and ``RUN/table1.csv``.

For each case the network (eval mode) predicts at the series scale; the softmax probabilities
are resized back to the case's native grid with trilinear interpolation and the lesion mask is
their argmax there. (Resizing the argmax itself with nearest neighbour would give blocky masks
whose borders move by up to half a series voxel, several native voxels at series A.) Metrics
(:func:`strokelrp.core.metrics.segmentation_metrics`) use the native label and voxel spacing.

Each case's ``split`` says what it was to the network: ``train`` / ``validation`` (the very case
the run trained on or held out, recognised by the content fingerprint recorded in
``split.json``), ``unseen`` (a case of the run's own data folder outside its split) or
``external`` (any other case, e.g. a case of another data set that has the same id). A
checkpoint file of another run is refused. ``metrics.provenance.json`` and
``table1.provenance.json`` record the data, case files, checkpoints and versions.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from strokelrp.config import LESION, SERIES, TrainConfig
from strokelrp.core.metrics import METRICS, segmentation_metrics, summarize
from strokelrp.device import resolve_device
from strokelrp.errors import StrokeLRPError
from strokelrp.inference import native_labels, predict
from strokelrp.provenance import case_record, checkpoint_record, provenance
from strokelrp.run_files import LAST, RunDir
from strokelrp.train.checkpoint import build_model, check_own_checkpoint, resolve_checkpoint

METRIC_COLUMNS: tuple[str, ...] = ("network", "case_id", "split", *METRICS)
TABLE1_COLUMNS: tuple[str, ...] = (
    "network",
    "series",
    "width",
    "epochs",
    "training_minutes",
    "mean_dice",
    "sd_dice",
    "n_cases",
    "heldout_dice",
    "train_dice_trainmode",
    "collapsed",
)
COLLAPSE_FRACTION = 0.05
"""A network is flagged as collapsed when its predicted lesion volume, summed over the cases,
is below this fraction of the true lesion volume (it predicts (almost) nothing)."""


@dataclass
class NetworkResult:
    """Evaluation of one network: per-case rows, summary per split, its table-1 row."""

    name: str
    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, float]]]
    table1: dict[str, Any]
    skipped: list[str] = field(default_factory=list)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    """:func:`strokelrp.provenance.checkpoint_record` of the checkpoint evaluated."""


def network_name(config: TrainConfig, index: int) -> str:
    """The paper's naming: ``A1``, ``A2`` ... (``8x16x16-1`` for a custom shape)."""
    if isinstance(config.series, str) and config.series in SERIES:
        return f"{config.series}{index}"
    return f"{config.series_name}-{index}"


SPLITS: tuple[str, ...] = ("train", "validation", "unseen", "external")


def case_splits(run_dir: Path, dataset: Any, config: TrainConfig) -> dict[str, str]:
    """Case id of ``dataset`` -> its split for the run in ``run_dir`` (see the module doc).

    With fingerprints in ``split.json`` a case is ``train`` / ``validation`` only if its
    files' content is the one trained on; without them (older runs, tensors given to
    ``train``) only if ``dataset`` reads the run's own data folder (``config.data``).
    """
    recorded = RunDir(run_dir).read_split()
    by_id = {cid: "train" for cid in recorded.get("train", [])}
    by_id.update({cid: "validation" for cid in recorded.get("validation", [])})
    prints = (recorded.get("data") or {}).get("fingerprints") or {}
    same_root = Path(dataset.root).resolve() == Path(config.data).resolve()
    out = {}
    for i, cid in enumerate(dataset.case_ids):
        if cid in prints:
            same = prints[cid] == dataset.fingerprint(i)
            out[cid] = by_id.get(cid, "unseen") if same else "external"
        elif same_root and not (prints and cid in by_id):
            out[cid] = by_id.get(cid, "unseen")
        else:
            out[cid] = "external"
    return out


def evaluate_network(
    run_dir: Path,
    dataset,
    name: str,
    checkpoint: str | int | Path = LAST,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> NetworkResult:
    """Metrics of one network (one-network run folder) on every labelled case of ``dataset``."""
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    check_own_checkpoint(run_dir, ckpt.path)
    config = ckpt.config
    model = build_model(config)
    model.load_state_dict(ckpt.model_state, strict=True)
    model = model.to(device).eval()
    split = case_splits(run_dir, dataset, config)
    rows, skipped = [], []
    from tqdm import tqdm

    for i in tqdm(range(len(dataset)), desc=f"evaluate {name}", disable=not progress):
        x, _, case_id = dataset[i]
        case = dataset.cases[i]
        if case.label is None:
            skipped.append(f"case {case_id}: no ground truth (OT): not scored")
            continue
        logits = predict(model, x[None])[0]  # float32, whatever the training
        pred = native_labels(logits, tuple(case.label.shape)) == LESION
        metrics = segmentation_metrics(pred, case.label.astype(bool), case.spacing)
        rows.append({"network": name, "case_id": case_id, "split": split[case_id], **metrics})
    summary = {"all": summarize(rows)}
    for part in SPLITS:
        chosen = [r for r in rows if r["split"] == part]
        if chosen and len(chosen) < len(rows):
            summary[part] = summarize(chosen)
    log = ckpt.meta.get("log", [])
    true_total = sum(r["true_ml"] for r in rows)
    pred_total = sum(r["pred_ml"] for r in rows)
    table1 = {
        "network": name,
        "series": config.series_name,
        "width": config.width,
        "epochs": ckpt.epoch,
        "training_minutes": ckpt.meta.get("facts", {}).get("train_seconds", math.nan) / 60,
        "mean_dice": summary["all"]["dice"]["mean"],
        "sd_dice": summary["all"]["dice"]["sd"],
        "n_cases": len(rows),
        "heldout_dice": summary.get("validation", {}).get("dice", {}).get("mean", math.nan),
        "train_dice_trainmode": log[-1]["train_dice_trainmode"] if log else math.nan,
        "collapsed": bool(true_total > 0 and pred_total < COLLAPSE_FRACTION * true_total),
    }
    return NetworkResult(name, rows, summary, table1, skipped, checkpoint_record(ckpt, name))


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if _missing(row.get(k)) else row[k]) for k in columns})
    return buf.getvalue()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_summary(result: NetworkResult) -> str:
    """A small text table: per split, mean ± SD and the count of valid values per metric."""
    lines = []
    for part, summary in result.summary.items():
        n = summary["dice"]["n"]
        lines.append(f"{result.name}: {part} cases ({n})")
        for metric in METRICS:
            s = summary[metric]
            lines.append(
                f"  {metric:<10} {s['mean']:>9.4f} ± {s['sd']:<9.4f} (valid {s['n_valid']}/{n})"
            )
    t = result.table1
    flag = "  COLLAPSED (predicts almost nothing)" if t["collapsed"] else ""
    lines.append(f"  training {t['training_minutes']:.2f} min, {t['epochs']} epochs{flag}")
    return "\n".join(lines)


def evaluate(
    run_dir: str | Path,
    data: str | Path,
    checkpoint: str | int | Path | None = None,
    *,
    device: str = "cpu",
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
    cache_dir: str | Path | None = None,
) -> list[NetworkResult]:
    """Evaluate every network of ``run_dir`` on the cases of ``data`` (native grids).

    Writes ``RUN/metrics.csv`` (one row per network and case) and ``RUN/table1.csv`` (one row
    per network), prints a summary through ``echo``. ``checkpoint``: ``None``/``"last"``, an
    epoch or a path (applied to every network).
    """
    from strokelrp.data.dataset import CaseDataset

    run = RunDir(run_dir)
    torch_device = resolve_device(device)
    networks = run.networks()
    results: list[NetworkResult] = []
    datasets: dict[tuple, Any] = {}
    for index, net_dir in enumerate(networks, start=1):
        config = net_dir.read_config()
        key = (config.shape, config.normalization)
        if key not in datasets:
            datasets[key] = CaseDataset(
                data,
                config.series,
                cache_dir=cache_dir if cache_dir is not None else config.cache_dir,
                normalization=config.normalization,
                require_labels=False,
            )
        name = network_name(config, index)
        result = evaluate_network(
            net_dir.path, datasets[key], name, checkpoint or LAST, torch_device, progress
        )
        if not result.rows:
            raise StrokeLRPError(f"{data}: no case with a ground truth (OT) to evaluate on")
        results.append(result)
        if echo is not None:
            for line in result.skipped:
                echo(line)
            echo(format_summary(result))
    record = _provenance(run.path, data, datasets.values(), results)
    rows = [r for res in results for r in res.rows]
    run.write_table(run.metrics, _csv(METRIC_COLUMNS, rows), record)
    run.write_table(run.table1, _csv(TABLE1_COLUMNS, [r.table1 for r in results]), record)
    return results


def _provenance(
    run_dir: Path, data: str | Path, datasets: Any, results: list[NetworkResult]
) -> dict[str, Any]:
    """The provenance record of metrics.csv / table1.csv (with the split counts)."""
    cases: dict[str, Any] = {}
    for ds in datasets:
        for i, cid in enumerate(ds.case_ids):
            cases.setdefault(
                cid,
                case_record(ds.case_files(i), data, ds.fingerprint(i), ds.geometry(i).orientation),
            )
    counts: dict[str, int] = {}
    for res in results:
        for row in res.rows:
            counts[row["split"]] = counts.get(row["split"], 0) + 1
    return provenance(
        "evaluate",
        data_root=data,
        cases=cases,
        run=run_dir,
        checkpoints=[r.checkpoint for r in results],
        split_counts=counts,
    )
