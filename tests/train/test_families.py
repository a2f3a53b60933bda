"""The model-family registry: each family's networks reach ``--arch``, names are checked."""

from __future__ import annotations

import sys
import types

import pytest

from strokelrp import families
from strokelrp.config import ARCHS
from strokelrp.families import Family, family_networks


def test_every_family_network_is_an_arch_and_named_after_its_family() -> None:
    found = families.families()
    assert list(found) == list(families.FAMILY_MODULES) == ["monai", "nnunet"]
    nets = family_networks()
    assert list(nets) == [a for a in ARCHS if a != "unet3d"]
    for name, family in found.items():
        assert all(arch.startswith(f"{name}-") for arch in family.networks)


def test_a_family_registered_under_another_name_or_with_stray_names_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("fake_family")
    monkeypatch.setitem(sys.modules, "fake_family", module)
    monkeypatch.setattr(families, "FAMILY_MODULES", {"fake": "fake_family"})
    module.FAMILY = Family("other", {})  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="fake_family defines family 'other', registered as"):
        families.families()
    module.FAMILY = Family("fake", {"fake-a": lambda c, k, w: None, "b": lambda c, k, w: None})  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"network names \['b'\] do not start with 'fake-'"):
        families.families()
    module.FAMILY = Family("fake", {"fake-a": lambda c, k, w: None})  # type: ignore[attr-defined]
    assert list(family_networks()) == ["fake-a"]


def test_family_loader_gives_nnunets_folder_loader_and_refuses_the_others() -> None:
    from strokelrp.errors import StrokeLRPError
    from strokelrp.families.nnunet import load_nnunet

    assert families.family_loader("nnunet") is load_nnunet
    assert families.families()["nnunet"].networks == {}  # nnU-Net trains its own networks
    with pytest.raises(StrokeLRPError, match="'monai' loads no model folder"):
        families.family_loader("monai")
    with pytest.raises(StrokeLRPError, match="no model family 'keras'; registered: monai, nnunet"):
        families.family_loader("keras")
