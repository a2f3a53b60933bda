"""The networks ``strokelrp train --arch`` can train: ours (``unet3d``) and those of the
external model families (:mod:`strokelrp.families`: MONAI's three U-Nets).

One factory per name, all (B, in_channels, D, H, W) -> logits (B, num_classes, D, H, W) and
parameterised by ``width`` (channels of the first level).
"""

from __future__ import annotations

from torch import nn

from strokelrp.families import NetworkFactory, family_networks
from strokelrp.model.unet3d import UNet3D


def _unet3d(cin: int, classes: int, w: int) -> nn.Module:
    return UNet3D(in_channels=cin, num_classes=classes, width=w)


_FACTORIES: dict[str, NetworkFactory] = {"unet3d": _unet3d, **family_networks()}

ARCHS: tuple[str, ...] = tuple(_FACTORIES)
"""Architecture names, as ``--arch`` offers them and ``config.toml`` records them."""


def build_network(arch: str, in_channels: int, num_classes: int, width: int) -> nn.Module:
    """A fresh network of architecture ``arch`` (one of :data:`ARCHS`)."""
    if arch not in _FACTORIES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    return _FACTORIES[arch](in_channels, num_classes, width)
