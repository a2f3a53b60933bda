"""``assess --profile``: what a profile replaces, and what it keeps."""

from __future__ import annotations

import pytest

from strokelrp.errors import StrokeLRPError
from strokelrp.trust.assess import ASSESS_OPTIONS, PROFILES, profile_settings


def test_full_keeps_the_settings_and_quick_replaces_its_own() -> None:
    given = {
        "seeds": (1, 2, 3),
        "random_seeds": 5,
        "extras": True,
        "fractions": (0.01, 1.0),
        "options": None,
    }
    assert profile_settings("full", given) == given
    quick = profile_settings("quick", given)
    assert quick["seeds"] == (1,) and quick["random_seeds"] == 3 and quick["extras"] is False
    assert quick["fractions"] == PROFILES["quick"]["fractions"]
    # None stands for ASSESS_OPTIONS: the quick options replace the two methods they name
    assert quick["options"] == {
        **ASSESS_OPTIONS,
        "integrated_gradients": {"steps": 8},
        "occlusion": {"patch": (10, 24, 24)},
    }
    assert given["options"] is None  # the caller's dict is not changed


def test_quick_options_replace_only_the_methods_they_name() -> None:
    mine = {"occlusion": {"patch": (2, 2, 2)}, "gradcam": {"layer": "dec1"}}
    quick = profile_settings("quick", {"options": mine})
    assert quick["options"]["gradcam"] == {"layer": "dec1"}
    assert quick["options"]["occlusion"] == {"patch": (10, 24, 24)}
    assert mine["occlusion"] == {"patch": (2, 2, 2)}
    with pytest.raises(StrokeLRPError, match="profile must be one of full, quick"):
        profile_settings("fast", {})
