"""One process or many: the device and the process group of a training run or a sweep.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process joins the group with
NCCL on GPUs and gloo on CPUs; otherwise it is a group of one and every collective is a no-op.
The one place that reads ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` and picks a device; torch
is imported on first use, so the command line can ask :func:`is_main_process` cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strokelrp.errors import StrokeLRPError

if TYPE_CHECKING:
    import torch


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` group, or a plain process: the one that prints reports."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class DistContext:
    """Where this process runs: its rank among ``world_size`` and its torch device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all ranks (in place; the tensor itself when alone)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's ``items`` (picklable), concatenated in rank order, on every rank (a
        plain copy when alone)."""
        if not self.distributed:
            return list(items)
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, items)
        return [item for part in parts for item in part]

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` (picklable) on every rank, so that all ranks plan alike."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def resolve_device(choice: str | torch.device, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when a GPU is visible, else ``cpu``; ``cuda`` without a
    GPU is a clear error; ``cpu`` / ``cuda:N`` as given."""
    import torch

    choice = str(choice)
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice != "cpu" and not choice.startswith("cuda"):
        raise StrokeLRPError(f"device must be auto, cpu, cuda or cuda:N, got {choice!r}")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise StrokeLRPError(f"--device {choice} was asked for, but torch sees no CUDA GPU")
    if choice == "cuda":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(choice)


def init_distributed(device_choice: str) -> DistContext:
    """Join the ``torchrun`` process group if there is one; pick this process's device."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_choice, local_rank)
    if world <= 1:
        return DistContext(0, 1, 0, device)
    import torch.distributed as dist

    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, True)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group if :func:`init_distributed` joined it."""
    if not ctx.initialized_here:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def batched_layout(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, D, H, W) in the memory layout its device runs batched 3-D convolutions fastest
    in: channels-last (N, D, H, W, C in memory) on a CPU, where oneDNN's batched convolutions
    of this project's narrow networks are 1.5-1.8x faster so (docs/benchmarks.md, "Assessing a
    method"); as it is on other devices or for other ranks. The values are unchanged, and a
    model run on the result computes the same function (to float rounding), with no copy of
    its weights: oneDNN picks the layout from the input."""
    import torch

    if x.device.type == "cpu" and x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x
