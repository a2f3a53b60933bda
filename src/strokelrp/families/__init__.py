"""External model families: one module per family (MONAI now; nnU-Net next), one interface.

A family module (``strokelrp/families/<name>.py``, or a package ``<name>/`` whose
``__init__`` does the same) defines one module-level ``FAMILY = Family(...)``:

- ``name``: the family's name (``"monai"``); its ``--arch`` names start with ``<name>-``;
- ``networks``: ``--arch`` name -> factory ``(in_channels, num_classes, width) -> nn.Module``,
  a fresh network mapping (B, in_channels, D, H, W) to logits (B, num_classes, D, H, W);
  it imports the family's package when called, so listing the names costs nothing.

The family is then listed in :data:`FAMILY_MODULES` (family name -> module path), where
:func:`families` finds it; :mod:`strokelrp.model.architectures` offers its networks to
``--arch``, ``config.toml`` and ``train.checkpoint.build_model`` (``config.ARCHS`` lists
the names, kept equal by a test). A family whose trained networks come with their own files
(nnU-Net's plans and weights) adds its loader beside the factories in its module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

NetworkFactory = Callable[[int, int, int], "nn.Module"]
"""``(in_channels, num_classes, width) -> nn.Module``: a fresh network of one ``--arch``."""


@dataclass(frozen=True)
class Family:
    """One external model family: its name and its networks by ``--arch`` name."""

    name: str
    networks: Mapping[str, NetworkFactory]


FAMILY_MODULES: dict[str, str] = {"monai": "strokelrp.families.monai"}
"""Family name -> the module that defines its ``FAMILY``, in ``--arch`` order."""


def families() -> dict[str, Family]:
    """Every registered family by name (each module imported once, its package not)."""
    found = {}
    for name, module in FAMILY_MODULES.items():
        family = importlib.import_module(module).FAMILY
        if family.name != name:
            raise ValueError(f"{module} defines family {family.name!r}, registered as {name!r}")
        stray = [arch for arch in family.networks if not arch.startswith(f"{name}-")]
        if stray:
            raise ValueError(f"{module}: network names {stray} do not start with {name + '-'!r}")
        found[name] = family
    return found


def family_networks() -> dict[str, NetworkFactory]:
    """Every family's networks: ``--arch`` name -> factory, in registry order."""
    return {arch: f for family in families().values() for arch, f in family.networks.items()}
