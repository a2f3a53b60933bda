"""The training loop: the paper's recipe, exact resume, bf16 and DDP on GPUs, CPU-deterministic.

Recipe (defaults of :class:`~strokelrp.config.TrainConfig`): cross-entropy, Adam (lr 2e-4,
betas (0.5, 0.9)), batch size 1, 80 epochs, no augmentation, cases in a new random order each
epoch. All preprocessed cases are held in memory on the training device; a step reads a view.

Run folder (one network)::

    RUN/config.toml  RUN/split.json  RUN/train_log.csv  RUN/checkpoints/{epoch-NNN,last}.*
    RUN/assess_log.csv  (with ``assess_every`` > 0: :mod:`strokelrp.train.assess_log`)

written and read through :class:`strokelrp.run_files.RunDir`.

With ``repeats`` = n > 1, ``RUN/config.toml`` holds the whole run and each network k (seed
``seed + k - 1``) is a one-network run folder ``RUN/net-k`` with the layout above.

Under ``torchrun`` each epoch's case order is sharded over the ranks (padded by wrapping round,
so every rank takes the same number of steps), gradients are averaged by
DistributedDataParallel, and only rank 0 prints and writes files.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from strokelrp.config import LESION, TrainConfig
from strokelrp.core.metrics import batch_dice
from strokelrp.device import DistContext, init_distributed, shutdown
from strokelrp.errors import StrokeLRPError
from strokelrp.run_files import RunDir, has_checkpoints
from strokelrp.train.cases import (
    CaseTensors,
    open_dataset,
    resolve_data,
    split_ids,
    stack_cases,
)
from strokelrp.train.checkpoint import (
    Checkpoint,
    build_model,
    latest_complete,
    load_optimizer_state,
    preserved_rng,
    restore_rng,
    save_checkpoint,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------- losses


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The paper's loss: mean voxel cross-entropy of logits (B, 2, D, H, W) vs y (B, D, H, W)."""
    return F.cross_entropy(logits, y)


def dice_cross_entropy(logits: torch.Tensor, y: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Cross-entropy + (1 - soft Dice of the lesion class), soft Dice per sample, averaged."""
    p = logits.softmax(dim=1)[:, LESION].flatten(1)
    t = (y == LESION).flatten(1).to(p.dtype)
    soft = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return F.cross_entropy(logits, y) + (1 - soft).mean()


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "dice_ce": dice_cross_entropy}


# -------------------------------------------------------------------------- order, epochs


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The case order of one epoch: a permutation of ``range(n)`` fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def shard(order: Sequence[int], rank: int, world: int) -> list[int]:
    """This rank's part of an epoch's order, padded by wrapping so all ranks get as many."""
    steps = math.ceil(len(order) / world)
    padded = np.resize(np.asarray(order), steps * world)
    return [int(i) for i in padded[rank::world]]


def _autocast(device: torch.device, precision: str):
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
    )


def run_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    data: CaseTensors,
    rows: Sequence[int],
    precision: str = "fp32",
    on_step: Callable[[torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of batch-1 steps over ``rows`` of ``data``; -> (loss sum, train-mode Dice sum).

    Sums stay on the device (no host synchronisation per step); ``on_step(loss)`` is called
    after each step (the progress bar).
    """
    net.train()
    device = data.x.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    dice_sum = torch.zeros((), dtype=torch.float64, device=device)
    for i in rows:
        x, y = data.x[i : i + 1], data.y[i : i + 1]
        with _autocast(device, precision):
            logits = net(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss = loss.detach()
        loss_sum += loss
        dice_sum += batch_dice(logits.detach().argmax(dim=1), y).sum()
        if on_step is not None:
            on_step(loss)
    return loss_sum, dice_sum


@torch.inference_mode()
def validation_dice_sum(
    model: nn.Module, data: CaseTensors, rows: Sequence[int], precision: str = "fp32"
) -> torch.Tensor:
    """Sum over ``rows`` of the eval-mode hard Dice (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=data.x.device)
    try:
        for i in rows:
            with _autocast(data.x.device, precision):
                logits = model(data.x[i : i + 1])
            total += batch_dice(logits.argmax(dim=1), data.y[i : i + 1]).sum()
    finally:
        model.train(was_training)
    return total


def progress_bar(total: int, enabled: bool = True, file=None):
    """A tqdm bar over ``total`` steps and the ``on_step(loss)`` callback that advances it.

    The loss shown is read from the device at most once a second (one host sync), so the bar
    costs nothing measurable per step. ``on_step`` is None when the bar is disabled.
    """
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        file=file if file is not None else sys.stderr,
    )
    if not enabled:
        return bar, None
    last_postfix = [0.0]

    def on_step(loss: torch.Tensor) -> None:
        bar.update(1)
        now = time.monotonic()
        if now - last_postfix[0] > 1.0:
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            last_postfix[0] = now

    return bar, on_step


# ------------------------------------------------------------------------------- run files


def _say(ctx: DistContext, log: Callable[[str], None] | None) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not ctx.is_main:
            return
        if log is not None:
            log(message)
        else:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    return say


def _check_run_folder(
    config: TrainConfig, out: Path, resume: bool, say: Callable[[str], None]
) -> TrainConfig | None:
    """Refuse to overwrite a run, or to resume one with a contradicting config; -> its config.

    A run folder that never saved a checkpoint (training failed or was stopped in its first
    epochs) holds nothing to lose: it is started anew, with or without ``resume``.
    """
    if out.exists() and not out.is_dir():
        raise StrokeLRPError(f"{out}: exists and is not a folder")
    run = RunDir(out)
    started = run.has_checkpoints()
    if not run.config.exists():
        if not resume and started:
            raise StrokeLRPError(f"{out}: holds checkpoints; pass --resume or choose another --out")
        return None
    if not started:
        say(f"{out}: holds a run that never saved a checkpoint: starting it anew")
        return None
    existing = run.read_config()
    if not resume:
        raise StrokeLRPError(
            f"{out}: already holds a training run (config.toml); pass --resume to continue it, "
            "or choose another --out"
        )
    lines = existing.contradictions(config)
    if lines:
        raise StrokeLRPError(
            "\n".join(
                [f"cannot resume {out}: the command contradicts the run's configuration:"]
                + [f"  {line}" for line in lines]
                + ["  (start a new run with another --out)"]
            )
        )
    return existing


# ------------------------------------------------------------------------------- training


def train(
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    *,
    dataset: Sequence[tuple[torch.Tensor, torch.Tensor, str]] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Train ``config.repeats`` network(s) into ``out``; -> the one-network run folders this
    call trained (a resumed network already at ``config.epochs`` is left out: none when there
    is nothing to do).

    ``dataset``: items ``(x (C, D, H, W), y (D, H, W), case_id)`` to use instead of opening
    ``config.data`` with :class:`strokelrp.data.dataset.CaseDataset` (``x`` must have the
    series shape). ``resume``: continue from the newest complete checkpoint (see
    docs/training.md). ``log``: where messages go (default: stderr, rank 0 only).

    A new run reads and checks its data before it writes anything, so bad data leave no run
    folder behind (a later ``train`` with the same ``out`` is not refused).
    """
    out = Path(out)
    config = replace(config, data=str(Path(config.data).expanduser().resolve()))
    if dataset is None:
        config = resolve_data(config)
    if config.assess_every:
        from strokelrp.attribution import parse_method

        parse_method(config.assess_method)  # a bad name fails now, not after N epochs
    ctx = init_distributed(config.device)
    try:
        say = _say(ctx, log)
        existing = _check_run_folder(config, out, resume, say)
        loaded: list[CaseTensors] = []

        def data() -> CaseTensors:
            if not loaded:
                items = (
                    dataset
                    if dataset is not None
                    else open_dataset(config, progress=progress and ctx.is_main)
                )
                cases = stack_cases(items)
                if tuple(cases.x.shape[2:]) != config.shape:
                    raise StrokeLRPError(
                        f"the cases have shape {tuple(cases.x.shape[2:])}, series "
                        f"{config.series_name} needs {config.shape}"
                    )
                loaded.append(cases.to(ctx.device))
            return loaded[0]

        if existing is None:
            data()  # a new run: the data's errors come before the run folder exists
        ctx.barrier()  # every rank has looked before rank 0 writes
        if ctx.is_main and (existing is None or config.epochs > existing.epochs):
            RunDir(out).write_config(config)
        if config.repeats == 1:
            networks = [(config, out)]
        else:
            networks = [
                (config.for_network(k), RunDir(out).network(k).path)
                for k in range(1, config.repeats + 1)
            ]
        trained = []
        for net_config, run_dir in networks:
            # each network seeds the global streams; the caller's come back afterwards
            with preserved_rng(), _cudnn_benchmark(ctx.device.type == "cuda"):
                if _train_network(net_config, run_dir, resume, data, ctx, progress, say):
                    trained.append(run_dir)
        ctx.barrier()
    finally:
        shutdown(ctx)
    return trained


def _resume_point(
    config: TrainConfig, run_dir: Path, resume: bool, say: Callable[[str], None]
) -> Checkpoint | bool | None:
    """The checkpoint to continue from, None to start fresh, False when nothing is left to do."""
    run = RunDir(run_dir)
    if not resume:
        if has_checkpoints(run.checkpoints):
            raise StrokeLRPError(
                f"{run_dir}: holds checkpoints; pass --resume or choose another --out"
            )
        return None
    start = latest_complete(run.checkpoints)
    if start is None:
        say(f"{run_dir}: no complete checkpoint to resume from: starting from scratch")
        return None
    lines = start.config.contradictions(config)
    if lines:
        raise StrokeLRPError(
            "\n".join(
                [f"cannot resume {start.path}: the command contradicts its configuration:"]
                + [f"  {line}" for line in lines]
            )
        )
    if start.epoch >= config.epochs:
        say(
            f"{run_dir}: already trained {start.epoch} epochs (--epochs {config.epochs}): "
            "nothing to do"
        )
        return False
    say(f"{run_dir}: resuming after epoch {start.epoch} of {config.epochs}")
    return start


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """cuDNN autotuning on for the block when ``enabled`` (fixed volume shapes: the fastest
    kernels are found once); the caller's setting is restored on exit."""
    before = torch.backends.cudnn.benchmark
    if enabled:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def split_record(split: dict[str, list[str]], config: TrainConfig, data: CaseTensors) -> dict:
    """``split.json``: the train / validation ids, and the data they came from.

    ``data.root`` is the data folder and ``data.fingerprints`` the content SHA-256 of each
    case's files, so that ``evaluate`` calls a case "train" only when it is the very case
    trained on (not another data set's case with the same id).
    """
    used = [*split["train"], *split["validation"]]
    prints = {cid: data.fingerprints[cid] for cid in used if cid in data.fingerprints}
    return {**split, "data": {"root": config.data, "fingerprints": prints}}


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _assess(
    model: nn.Module,
    data: CaseTensors,
    config: TrainConfig,
    train_ids: list[str],
    val_ids: list[str],
    epoch: int,
) -> list[dict[str, Any]]:
    """The trust measures of ``config.assess_method`` on the first held-out cases."""
    from strokelrp.train.assess_log import assess_epoch

    split, ids = ("held-out", val_ids) if val_ids else ("train", train_ids)
    chosen = data.select(ids[: config.assess_cases])
    cases = [(cid, chosen.x[i], chosen.y[i]) for i, cid in enumerate(chosen.ids)]
    return assess_epoch(model, cases, config.assess_method, epoch, split, config.channels)


@dataclass
class _Plan:
    """Which rows of the stacked cases a network trains and validates on."""

    train_ids: list[str]
    val_ids: list[str]
    train_rows: list[int]
    val_rows: list[int]

    @property
    def split(self) -> dict[str, list[str]]:
        return {"train": self.train_ids, "validation": self.val_ids}


def _plan_split(
    config: TrainConfig, run_dir: Path, data: CaseTensors, start: Checkpoint | None
) -> _Plan:
    """The held-out split of ``data`` (refused when it differs from the resumed run's)."""
    train_ids, val_ids = split_ids(data.ids, config.val_fraction, config.effective_split_seed)
    split = {"train": train_ids, "validation": val_ids}
    if start is not None and start.meta["facts"].get("split") != split:
        raise StrokeLRPError(
            f"cannot resume {run_dir}: the data's cases differ from those the run was trained "
            f"on (see {RunDir(run_dir).split})"
        )
    row_of = {cid: i for i, cid in enumerate(data.ids)}
    return _Plan(train_ids, val_ids, [row_of[c] for c in train_ids], [row_of[c] for c in val_ids])


def _build_training(
    config: TrainConfig, device: torch.device, start: Checkpoint | None
) -> tuple[nn.Module, torch.optim.Optimizer, list[dict[str, Any]], int]:
    """Seeded model and Adam (the checkpoint's state and random streams when resuming);
    -> (model, optimizer, log rows so far, first epoch to train)."""
    _seed_everything(config.seed)
    model = build_model(config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        fused=True if device.type == "cuda" else None,
    )
    if start is None:
        return model, optimizer, [], 1
    model.load_state_dict(start.model_state, strict=True)
    load_optimizer_state(optimizer, start.optimizer_state)
    restore_rng(start.meta["rng"])
    return model, optimizer, [dict(r) for r in start.meta["log"]], start.epoch + 1


def _wrap_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` under DistributedDataParallel when running under torchrun, else itself."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = ctx.device
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def _train_epoch(
    net: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: CaseTensors,
    plan: _Plan,
    config: TrainConfig,
    ctx: DistContext,
    epoch: int,
    on_step: Callable[[torch.Tensor], None] | None,
) -> list[float]:
    """This rank's shard of the epoch's steps, then validation on rank 0; -> the sums over
    all ranks of (loss, train-mode Dice, held-out Dice, steps)."""
    order = epoch_order(len(plan.train_rows), config.seed, epoch)
    rows = [plan.train_rows[i] for i in shard(order, ctx.rank, ctx.world_size)]
    loss_fn = LOSSES[config.loss]
    loss_sum, dice_sum = run_epoch(net, optimizer, loss_fn, data, rows, config.precision, on_step)
    # Validation on rank 0 alone: its network (with its BatchNorm buffers) is the one
    # saved; the other ranks contribute zero to the sum below.
    val_rows = plan.val_rows if ctx.is_main else []
    val_sum = validation_dice_sum(model, data, val_rows, config.precision)
    steps = torch.tensor(float(len(rows)), dtype=torch.float64, device=ctx.device)
    return ctx.sum(torch.stack([loss_sum, dice_sum, val_sum, steps])).tolist()


def _epoch_row(epoch: int, sums: Sequence[float], n_val: int, seconds: float) -> dict[str, Any]:
    """The log row of one epoch from the summed (loss, train Dice, val Dice, steps)."""
    loss, dice, val, steps = sums
    return {
        "epoch": epoch,
        "loss": loss / steps,
        "train_dice_trainmode": dice / steps,
        "val_dice": val / n_val if n_val else None,
        "seconds": seconds,
    }


def _save_epoch(
    run: RunDir,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    log_rows: list[dict[str, Any]],
    plan: _Plan,
    ctx: DistContext,
    steps: int,
) -> None:
    """Rank 0 after an epoch: the checkpoint when one is due, and the training log."""
    epoch = log_rows[-1]["epoch"]
    if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
        save_checkpoint(
            run.checkpoints,
            epoch=epoch,
            config=config,
            model=model,
            optimizer=optimizer,
            log=log_rows,
            facts={
                "train_seconds": sum(r["seconds"] for r in log_rows),
                "world_size": ctx.world_size,
                "steps_per_epoch": steps,
                "device": str(ctx.device),
                "split": plan.split,
            },
            keep=config.keep_checkpoints,
        )
    run.write_train_log(log_rows)


def _epoch_line(config: TrainConfig, row: dict[str, Any]) -> str:
    val_text = "" if row["val_dice"] is None else f"  val Dice {row['val_dice']:.4f}"
    return (
        f"epoch {row['epoch']}/{config.epochs}  loss {row['loss']:.4f}  "
        f"train Dice (train mode) {row['train_dice_trainmode']:.4f}{val_text}  "
        f"{row['seconds']:.1f} s"
    )


def _train_network(
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    data_fn: Callable[[], CaseTensors],
    ctx: DistContext,
    progress: bool,
    say: Callable[[str], None],
) -> bool:
    """Train one network into the one-network folder ``run_dir`` (rank 0 writes its files);
    False when a resume finds it already trained to ``config.epochs``."""
    start = _resume_point(config, run_dir, resume, say)
    if start is False:
        return False
    assert start is None or isinstance(start, Checkpoint)
    data = data_fn()
    plan = _plan_split(config, run_dir, data, start)
    model, optimizer, log_rows, first_epoch = _build_training(config, ctx.device, start)
    run = RunDir(run_dir)
    assess_rows: list[dict[str, Any]] = []
    if config.assess_every and ctx.is_main:
        assess_rows = [r for r in run.read_assess_log() if r["epoch"] < first_epoch]
    net = _wrap_ddp(model, ctx)
    if ctx.is_main:
        run.write_config(config)
        run.write_split(split_record(plan.split, config, data))
        run.write_train_log(log_rows)
    steps = math.ceil(len(plan.train_rows) / ctx.world_size)
    say(
        f"{run_dir}: {config.arch} width {config.width}, series {config.series_name} "
        f"{config.shape}, {len(plan.train_ids)} training / {len(plan.val_ids)} held-out cases, "
        f"{ctx.device}, {config.precision}"
        + (f", {ctx.world_size} processes" if ctx.distributed else "")
    )
    bar, on_step = progress_bar(
        (config.epochs - first_epoch + 1) * steps, enabled=progress and ctx.is_main
    )
    try:
        for epoch in range(first_epoch, config.epochs + 1):
            bar.set_description(f"{run_dir.name} epoch {epoch}/{config.epochs}")
            t0 = time.perf_counter()
            sums = _train_epoch(net, model, optimizer, data, plan, config, ctx, epoch, on_step)
            row = _epoch_row(epoch, sums, len(plan.val_rows), time.perf_counter() - t0)
            log_rows.append(row)
            if ctx.is_main:
                _save_epoch(run, config, model, optimizer, log_rows, plan, ctx, steps)
                if config.assess_every and epoch % config.assess_every == 0:
                    assess_rows += _assess(model, data, config, plan.train_ids, plan.val_ids, epoch)
                    run.write_assess_log(assess_rows)
            say(_epoch_line(config, row))
            ctx.barrier()
    finally:
        bar.close()
    return True
