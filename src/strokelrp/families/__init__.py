"""External model families: one module per family (MONAI, nnU-Net), one interface.

A family module (``strokelrp/families/<name>.py``, or a package ``<name>/`` whose
``__init__`` does the same) defines one module-level ``FAMILY = Family(...)``:

- ``name``: the family's name (``"monai"``); its ``--arch`` names start with ``<name>-``;
- ``networks``: ``--arch`` name -> factory ``(in_channels, num_classes, width) -> nn.Module``,
  a fresh network mapping (B, in_channels, D, H, W) to logits (B, num_classes, D, H, W);
  it imports the family's package when called, so listing the names costs nothing;
- ``loader`` (optional): a trained model from the family's own files,
  ``loader(folder, **options)`` (nnU-Net: :func:`strokelrp.families.nnunet.load_nnunet` of a
  results folder with its plans, dataset.json and fold checkpoints); None for a family whose
  networks strokelrp trains itself (MONAI).

The family is then listed in :data:`FAMILY_MODULES` (family name -> module path), where
:func:`families` finds it; :mod:`strokelrp.model.architectures` offers its networks to
``--arch``, ``config.toml`` and ``train.checkpoint.build_model`` (``config.ARCHS`` lists
the names, kept equal by a test); :func:`family_loader` gives a family's ``loader`` to the
pipeline (``explain --nnunet``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

NetworkFactory = Callable[[int, int, int], "nn.Module"]
"""``(in_channels, num_classes, width) -> nn.Module``: a fresh network of one ``--arch``."""


@dataclass(frozen=True)
class Family:
    """One external model family: its name, its networks by ``--arch`` name and, for a family
    whose trained models come as their own files, the loader of such a folder."""

    name: str
    networks: Mapping[str, NetworkFactory]
    loader: Callable[..., Any] | None = None


FAMILY_MODULES: dict[str, str] = {
    "monai": "strokelrp.families.monai",
    "nnunet": "strokelrp.families.nnunet",
}
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


def family_loader(name: str) -> Callable[..., Any]:
    """The loader of family ``name``'s trained-model folders; one clear error for a family that
    has none or is not registered."""
    from strokelrp.errors import StrokeLRPError

    found = families()
    if name not in found:
        raise StrokeLRPError(f"no model family {name!r}; registered: {', '.join(found)}")
    loader = found[name].loader
    if loader is None:
        raise StrokeLRPError(f"model family {name!r} loads no model folder (train it with --arch)")
    return loader
