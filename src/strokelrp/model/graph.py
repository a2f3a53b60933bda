"""A tiny explicit computation graph shared by the model's forward pass and the LRP engine.

The U-Net's structure (which tensor is concatenated with which, which tensor feeds two
branches) is written once as a list of :class:`Node`; ``run_graph`` evaluates it. Because the
model's ``forward`` *is* ``run_graph`` over the same nodes, the description the relevance
engine walks backwards can never drift from what the network computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

INPUT = "input"


@dataclass(frozen=True)
class Concat:
    """Concatenate the node's inputs along channels (dim 1), in order."""


@dataclass(frozen=True)
class CropLike:
    """Crop input 0 to the spatial shape of input 1 (keep the leading voxels).

    Used after a stride-2 transposed convolution whose output (2 * ceil(n / 2)) can be one
    voxel larger than the skip tensor (n) it is concatenated with. Input 1 only gives a shape.
    """


Op = nn.Module | Concat | CropLike


@dataclass(frozen=True)
class Node:
    """One step: ``name`` = ``op(*inputs)``. Module ops are named as the module in the model."""

    name: str
    op: Op
    inputs: tuple[str, ...]


def crop_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x[..., :D, :H, :W]`` with (D, H, W) = ``ref``'s spatial shape."""
    d, h, w = ref.shape[-3:]
    return x[..., :d, :h, :w]


def apply_node(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    """Evaluate one node on its input tensors."""
    if isinstance(node.op, Concat):
        return torch.cat(args, dim=1)
    if isinstance(node.op, CropLike):
        return crop_like(args[0], args[1])
    return node.op(*args)


def run_graph(
    nodes: list[Node], x: torch.Tensor, keep: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Evaluate ``nodes`` on ``x``; return the last node's value and, if ``keep``, every value.

    Values no later node needs are released as soon as possible when ``keep`` is False.
    """
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node.inputs:
            last_use[name] = i
    values: dict[str, torch.Tensor] = {INPUT: x}
    for i, node in enumerate(nodes):
        values[node.name] = apply_node(node, [values[n] for n in node.inputs])
        if not keep:
            for name in node.inputs:
                if last_use[name] == i:
                    del values[name]
    out = values[nodes[-1].name]
    return out, (values if keep else {})


def consumers(nodes: list[Node]) -> dict[str, list[str]]:
    """Map each value name to the names of the nodes that read it (a fan-out shows as 2+)."""
    users: dict[str, list[str]] = {INPUT: []}
    for node in nodes:
        users.setdefault(node.name, [])
        for name in node.inputs:
            users[name].append(node.name)
    return users
