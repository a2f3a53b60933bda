"""Safe checkpoints: safetensors tensors + a JSON sidecar, written atomically, never unpickled.

A checkpoint is a pair in ``RUN/checkpoints/``:

- ``epoch-NNN.safetensors``: the model's ``state_dict`` (``model/<name>``) and the optimiser's
  per-parameter tensors (``optimizer/<index>/<key>``: Adam's ``step``, ``exp_avg``,
  ``exp_avg_sq``).
- ``epoch-NNN.json``: format, epoch, the SHA-256 and size of the weights file, the training
  config, the optimiser's class and hyperparameters, the RNG states (torch as base64, numpy and
  Python as lists), the training log so far and run facts (seconds, world size, split), and
  ``model_aliases``: state_dict names that are the same tensor as an earlier name (a module
  reachable by two paths, as in MONAI's ``DynUNet``), stored once and restored on loading.

``last.safetensors`` / ``last.json`` are the newest pair (the weights file is a hard link, so
it costs no disk). Each file is written to a temporary name and renamed; the sidecar is
renamed last and carries the weights' hash, so a pair whose hashes disagree (a process killed
between the two renames) is *incomplete* and skipped by :func:`latest_complete`.

Loading parses the safetensors header itself before handing the bytes to ``safetensors``;
anything else (a ``torch.save`` zip, a raw pickle stream) is refused before any byte of it is
interpreted, so no code in a checkpoint can ever run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from strokelrp.atomic import write_bytes, write_text
from strokelrp.config import TrainConfig
from strokelrp.errors import StrokeLRPError
from strokelrp.run_files import LAST, RunDir, epoch_checkpoints, epoch_name, epoch_number

FORMAT = "strokelrp-checkpoint/1"
_MAX_HEADER = 100 * 1024 * 1024


class IncompleteCheckpointError(StrokeLRPError):
    """A weights file without a matching sidecar (e.g. a run killed between the two writes)."""


class UnsafeCheckpointError(StrokeLRPError):
    """A file that is not safetensors (a pickle, a ``torch.save`` archive): refused unread."""


@dataclass
class Checkpoint:
    """One loaded checkpoint (tensors on the CPU)."""

    path: Path
    epoch: int
    config: TrainConfig
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    meta: dict[str, Any]

    @property
    def epoch_path(self) -> Path:
        """The epoch's own weights file (``epoch-NNN.safetensors``; ``path`` may be ``last``)."""
        return self.path.with_name(f"{epoch_name(self.epoch)}.safetensors")


def sidecar_of(weights: Path) -> Path:
    """``epoch-003.safetensors`` -> ``epoch-003.json``."""
    return weights.with_suffix(".json")


# ------------------------------------------------------------------------------ RNG states


def capture_rng() -> dict[str, Any]:
    """The torch, numpy, Python (and CUDA, if initialised) RNG states as JSON values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
        "numpy": {
            "kind": kind,
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [
            base64.b64encode(s.numpy().tobytes()).decode("ascii")
            for s in torch.cuda.get_rng_state_all()
        ]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    raw = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
    torch.set_rng_state(torch.from_numpy(raw))
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            np.asarray(n["keys"], dtype=np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [
            torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())
            for s in state["cuda"]
        ]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """The global random streams (torch CPU and CUDA, numpy, Python) are put back on exit as
    they were on entry, also on error: whatever the block seeds or draws stays inside it."""
    state = capture_rng()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            restore_rng(state)


# ---------------------------------------------------------------------------------- saving


def _optimizer_split(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimiser state -> (tensors for safetensors, JSON description of the rest)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
        for group in sd["param_groups"]
    ]
    return tensors, {"class": type(optimizer).__name__, "param_groups": groups, "scalars": scalars}


def _link_atomic(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source`` (hard link, else a copy), atomically."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def state_aliases(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Names of a state_dict that are the same tensor as an earlier name (same memory, offset,
    shape, strides and dtype: a module reachable by two paths, as in MONAI's ``DynUNet``):
    alias name -> the first name."""
    aliases: dict[str, str] = {}
    first: dict[tuple[Any, ...], str] = {}
    for name, t in state.items():
        if t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return aliases


def _unique_tensors(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state_dict without repeats: (name -> CPU tensor, each tensor once;
    :func:`state_aliases`). safetensors refuses tensors that share memory; a tensor that only
    overlaps another one (a different view of the same storage) is copied."""
    cpu = {name: value.detach().cpu() for name, value in state.items()}
    aliases = state_aliases(cpu)
    unique: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, t in cpu.items():
        if name in aliases:
            continue
        ptr = t.untyped_storage().data_ptr()
        unique[name] = t.clone() if ptr in storages and t.numel() > 0 else t.contiguous()
        storages.add(ptr)
    return unique, aliases


def save_checkpoint(
    ckpt_dir: str | Path,
    *,
    epoch: int,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    log: list[dict[str, Any]] | None = None,
    facts: dict[str, Any] | None = None,
    keep: int = 0,
) -> Path:
    """Write ``epoch-NNN`` and ``last`` (weights, then sidecar) and return the weights path.

    ``model`` is the bare module (not a DDP wrapper). ``keep`` > 0 deletes all but the newest
    ``keep`` epoch pairs (``last`` is kept). RNG states are captured here.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state, aliases = _unique_tensors(model.state_dict())
    tensors = {f"model/{k}": v for k, v in state.items()}
    optim_meta = None
    if optimizer is not None:
        optim_tensors, optim_meta = _optimizer_split(optimizer)
        tensors.update(optim_tensors)
    import safetensors.torch

    data = safetensors.torch.save(tensors, metadata={"format": FORMAT, "epoch": str(epoch)})
    meta = {
        "format": FORMAT,
        "epoch": epoch,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "weights_bytes": len(data),
        "config": config.to_dict(),
        "optimizer": optim_meta,
        "rng": capture_rng(),
        "log": list(log or []),
        "facts": dict(facts or {}),
        "torch_version": torch.__version__,
        "model_aliases": aliases,
    }
    text = json.dumps(meta, indent=1, allow_nan=True) + "\n"
    weights = ckpt_dir / f"{epoch_name(epoch)}.safetensors"
    write_bytes(weights, data)
    write_text(sidecar_of(weights), text)
    last = ckpt_dir / f"{LAST}.safetensors"
    _link_atomic(weights, last)
    write_text(sidecar_of(last), text)
    if keep > 0:
        for old in epoch_checkpoints(ckpt_dir)[:-keep]:
            sidecar_of(old).unlink(missing_ok=True)
            old.unlink(missing_ok=True)
    return weights


# --------------------------------------------------------------------------------- loading


def _check_safetensors_bytes(path: Path, data: bytes) -> None:
    """Refuse anything that is not a well-formed safetensors file, before it is interpreted."""
    header_ok = False
    if len(data) >= 8:
        (n,) = struct.unpack("<Q", data[:8])
        if 2 <= n <= min(_MAX_HEADER, len(data) - 8) and data[8:9] == b"{":
            try:
                header = json.loads(data[8 : 8 + n].decode("utf-8"))
                header_ok = isinstance(header, dict)
            except (UnicodeDecodeError, ValueError):
                header_ok = False
    if header_ok:
        return
    if data[:4] == b"PK\x03\x04":
        what = "a zip archive (the torch.save format, which holds a pickle)"
    elif (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or data[
        :1
    ] in (b"(", b"}", b"]", b"c", b"\x8c"):
        what = "a pickle stream"
    else:
        what = "not a safetensors file"
    raise UnsafeCheckpointError(
        f"{path}: {what}; refusing to load it (strokelrp checkpoints are safetensors and "
        "are never unpickled, because unpickling can run arbitrary code)"
    )


def _parse_sidecar(path: Path) -> dict[str, Any]:
    sidecar = sidecar_of(path)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise IncompleteCheckpointError(f"{path}: no sidecar {sidecar.name}") from err
    except ValueError as err:
        raise IncompleteCheckpointError(f"{sidecar}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StrokeLRPError(f"{sidecar}: not a {FORMAT} sidecar")
    return meta


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load one checkpoint pair (tensors on the CPU), verifying format and hash first."""
    import safetensors.torch

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise StrokeLRPError(f"{path}: no such checkpoint") from err
    _check_safetensors_bytes(path, data)
    meta = _parse_sidecar(path)
    if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
        raise IncompleteCheckpointError(
            f"{path}: weights do not match {sidecar_of(path).name} (an interrupted write)"
        )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as err:  # safetensors raises its own error types
        raise StrokeLRPError(f"{path}: unreadable safetensors file ({err})") from err
    config = TrainConfig.from_dict(meta["config"], source=f"{sidecar_of(path)} [config]")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    for alias, name in dict(meta.get("model_aliases") or {}).items():
        if name not in model_state:
            raise StrokeLRPError(
                f"{sidecar_of(path)}: model_aliases names {name!r}, which the weights lack"
            )
        model_state[alias] = model_state[name]
    optimizer_state = None
    if meta.get("optimizer") is not None:
        optimizer_state = _optimizer_join(tensors, meta["optimizer"])
    return Checkpoint(path, int(meta["epoch"]), config, model_state, optimizer_state, meta)


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = value
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    groups = [
        {k: (tuple(v) if k == "betas" else v) for k, v in group.items()}
        for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a saved state, keeping this optimiser's implementation flags (fused, foreach...)."""
    keep = ("foreach", "fused", "capturable", "differentiable")
    current = [{k: g.get(k) for k in keep if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, current, strict=True):
        group.update(flags)


def latest_complete(ckpt_dir: str | Path) -> Checkpoint | None:
    """The newest complete checkpoint (``last``, else the newest complete epoch pair), or None.

    Incomplete pairs are skipped; a file that is not safetensors is an error, not skipped.
    """
    ckpt_dir = Path(ckpt_dir)
    best: Checkpoint | None = None
    last = ckpt_dir / f"{LAST}.safetensors"
    if last.exists():
        try:
            best = read_checkpoint(last)
        except IncompleteCheckpointError:
            best = None
    for path in reversed(epoch_checkpoints(ckpt_dir)):
        epoch = epoch_number(path)  # never None: epoch_checkpoints lists epoch files only
        if best is not None and best.epoch >= epoch:
            break
        try:
            return read_checkpoint(path)
        except IncompleteCheckpointError:
            continue
    return best


def resolve_checkpoint(run_dir: str | Path, checkpoint: str | int | Path = LAST) -> Checkpoint:
    """Load ``last`` (the newest complete), an epoch (``3``, ``"epoch-003"``) or a file path."""
    run_dir = Path(run_dir)
    ckpt_dir = RunDir(run_dir).checkpoints
    if isinstance(checkpoint, str) and checkpoint == LAST:
        found = latest_complete(ckpt_dir)
        if found is None:
            raise StrokeLRPError(f"{run_dir}: no complete checkpoint in {ckpt_dir}")
        return found
    text = str(checkpoint)
    if isinstance(checkpoint, int) or text.isdigit():
        return read_checkpoint(ckpt_dir / f"{epoch_name(int(text))}.safetensors")
    if re.fullmatch(r"epoch-\d+", text):
        return read_checkpoint(ckpt_dir / f"{epoch_name(int(text[6:]))}.safetensors")
    return read_checkpoint(Path(checkpoint))


def build_model(config: TrainConfig) -> nn.Module:
    """A fresh network of the config's architecture and width (6 modalities in, 2 classes)."""
    from strokelrp.config import MODALITIES
    from strokelrp.model.architectures import build_network

    return build_network(config.arch, len(MODALITIES), 2, config.width)


def load_trained(
    run_dir: str | Path, checkpoint: str | int | Path = LAST, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Checkpoint]:
    """The trained network of a single-network run (eval mode, on ``device``; its architecture
    from the run's config) and its checkpoint.

    ``checkpoint``: ``"last"`` (the newest complete checkpoint), an epoch number,
    ``"epoch-NNN"`` or a ``.safetensors`` path of this run (one of another run is refused:
    :func:`check_own_checkpoint`). For a ``repeats`` run pass ``RUN/net-K``. The returned
    checkpoint's tensors are dropped (they are in the model); its ``epoch``, ``path``, ``meta``
    (the sidecar actually read, whose hash matched the weights) and ``config`` say what was
    loaded, even while training is still writing newer checkpoints.
    """
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    networks = [n.path for n in run.networks()] if run.is_run() else [run_dir]
    if len(networks) > 1:
        names = ", ".join(p.name for p in networks)
        raise StrokeLRPError(
            f"{run_dir}: holds {len(networks)} networks ({names}): pass one of them, "
            f"e.g. {networks[0]}"
        )
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    check_own_checkpoint(run_dir, ckpt.path)
    model = build_model(ckpt.config)
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as err:
        raise StrokeLRPError(
            f"{ckpt.path}: weights do not fit a {ckpt.config.arch} network: {err}"
        ) from err
    ckpt.model_state, ckpt.optimizer_state = {}, None
    return model.to(device).eval(), ckpt


def load_run(
    run_dir: str | Path, checkpoint: str | int | Path = LAST, device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """The trained network of a single-network run (eval mode, on ``device``) and its config
    (see :func:`load_trained` for the checkpoint record). Pair it with
    :func:`strokelrp.data.preprocess.prepare_case` to get the model's input::

        model, config = load_run("runs/A")
        x, y = prepare_case(case, config)   # x (6, D, H, W) float32, as training saw it
        logits = model(torch.from_numpy(x)[None])
    """
    model, ckpt = load_trained(run_dir, checkpoint, device)
    return model, ckpt.config


def check_own_checkpoint(run_dir: str | Path, path: str | Path) -> None:
    """Refuse a checkpoint file that is not in ``run_dir/checkpoints`` (another run's).

    Results are written into the run folder and labelled with its split; a network of another
    run would put that run's numbers under this run's name (its held-out cases differ).
    """
    run = RunDir(run_dir)
    if not run.owns_checkpoint(path):
        own = run.checkpoints.resolve()
        raise StrokeLRPError(
            f"{path}: not a checkpoint of {run_dir} (its checkpoints are in {own}); results "
            "are written into the run folder under its name and split, so use that "
            "checkpoint's own run instead (strokelrp evaluate/explain OTHER_RUN DATA)"
        )
