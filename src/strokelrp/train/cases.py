"""Preprocessed cases held in memory (on the training device) and the held-out split.

With batch size 1 and a few dozen cases, a ``DataLoader`` per step is pure overhead: all cases
are stacked once into ``(N, 6, D, H, W)`` / ``(N, D, H, W)`` tensors on the device, and a step
takes a view ``x[i : i + 1]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from strokelrp.config import TrainConfig
from strokelrp.data.layouts import case_sort_key
from strokelrp.errors import DataError, StrokeLRPError


@dataclass
class CaseTensors:
    """Stacked cases: ``x`` (N, 6, D, H, W) float32, ``y`` (N, D, H, W) int64, ``ids`` (N).

    ``fingerprints``: case id -> content SHA-256 of its source files, when the cases came from a
    :class:`~strokelrp.data.dataset.CaseDataset` (empty for tensors given directly).
    """

    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]
    fingerprints: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, ids: Sequence[str]) -> CaseTensors:
        """The given cases, in the given order (copies only when not a prefix)."""
        index = {cid: i for i, cid in enumerate(self.ids)}
        rows = torch.tensor([index[c] for c in ids], dtype=torch.long, device=self.x.device)
        return CaseTensors(
            self.x.index_select(0, rows),
            self.y.index_select(0, rows),
            list(ids),
            {c: self.fingerprints[c] for c in ids if c in self.fingerprints},
        )

    def to(self, device: torch.device) -> CaseTensors:
        return CaseTensors(self.x.to(device), self.y.to(device), self.ids, self.fingerprints)


def resolve_data(config: TrainConfig) -> TrainConfig:
    """``config`` with the layout and channels its data has (found from file names only), so
    that the run records them and every later stage reads the same inputs."""
    from dataclasses import replace

    from strokelrp.data.layouts import discover_cases

    folders = discover_cases(config.data, config.layout, config.channels, config.lesion)
    spec = folders[0].spec
    channels = spec.channels if spec is not None else config.channels
    return replace(config, layout=folders[0].layout, channels=channels)


def open_dataset(config: TrainConfig, progress: bool = False):  # -> data.dataset.CaseDataset
    """The ``CaseDataset`` of the config's data (layout, channels, lesion class), series,
    normalisation and case list."""
    from strokelrp.data.dataset import CaseDataset

    return CaseDataset(
        config.data,
        config.series,
        cache_dir=config.cache_dir,
        normalization=config.normalization,
        cases=list(config.cases) if config.cases is not None else None,
        progress=progress,
        layout=config.layout,
        channels=config.channels,
        lesion=config.lesion,
    )


def stack_cases(items: Iterable[tuple[torch.Tensor, torch.Tensor | None, str]]) -> CaseTensors:
    """Stack ``(x (6, D, H, W), y (D, H, W), case_id)`` items; every case needs a label."""
    xs, ys, ids, problems = [], [], [], []
    for x, y, case_id in items:
        if y is None:
            problems.append(f"case {case_id}: no ground truth (OT), so it cannot be trained on")
            continue
        if xs and tuple(x.shape) != tuple(xs[0].shape):
            problems.append(
                f"case {case_id}: preprocessed shape {tuple(x.shape)} differs from "
                f"{tuple(xs[0].shape)} (case {ids[0]})"
            )
            continue
        xs.append(torch.as_tensor(x, dtype=torch.float32))
        ys.append(torch.as_tensor(y, dtype=torch.int64))
        ids.append(str(case_id))
    if problems:
        raise DataError(problems)
    if not ids:
        raise StrokeLRPError("no cases to train on")
    known = getattr(items, "fingerprints", None)  # a CaseDataset knows its files' content
    fingerprints = known() if callable(known) else {}
    return CaseTensors(torch.stack(xs), torch.stack(ys), ids, fingerprints)


def split_ids(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) case ids; ``round(fraction * N)`` held out (at least 1 if > 0).

    Deterministic for a seed and a set of ids (whatever their order); both lists sorted.
    """
    ordered = sorted(ids, key=lambda c: (case_sort_key(c), c))
    if fraction <= 0:
        return ordered, []
    n_val = max(1, round(fraction * len(ordered)))
    if n_val >= len(ordered):
        raise StrokeLRPError(
            f"--val-fraction {fraction} holds out {n_val} of {len(ordered)} cases and leaves "
            "none to train on"
        )
    perm = np.random.default_rng(seed).permutation(len(ordered))
    held = {ordered[i] for i in perm[:n_val]}
    return [c for c in ordered if c not in held], [c for c in ordered if c in held]
