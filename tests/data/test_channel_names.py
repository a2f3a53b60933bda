"""Matching a model's channel names onto a data set's (data/layouts/channel_names.py) and the
channels each layout can read."""

from __future__ import annotations

import pytest

from strokelrp.data.layouts import LAYOUTS
from strokelrp.data.layouts.channel_names import canonical, compact, match_channels
from strokelrp.data.synth import synthesize_isles2017
from strokelrp.data.synth_layouts import synthesize_layout
from strokelrp.errors import StrokeLRPError

ISLES22 = ("DWI", "ADC", "FLAIR")
ISLES24 = ("CBF", "CBV", "MTT", "Tmax", "NCCT", "CTA")


def test_names_match_without_case_and_separators() -> None:
    assert compact(" T2-FLAIR_map.v1") == "t2flairmapv1"
    assert match_channels(["adc", "Dwi"], ISLES22, "x") == (("ADC", "DWI"), [])
    assert canonical("MR_rCBF") == canonical("cbf") == "cbf"


def test_aliases_match_and_are_noted() -> None:
    chosen, notes = match_channels(["b1000", "T2-FLAIR"], ISLES22, "x")
    assert chosen == ("DWI", "FLAIR")
    assert notes == [
        "the model's channel 0 (b1000) is the data's DWI",
        "the model's channel 1 (T2-FLAIR) is the data's FLAIR",
    ]
    assert match_channels(["CT", "rCBF", "TMAX"], ISLES24, "x")[0] == ("NCCT", "CBF", "Tmax")
    # an exact name wins over an alias
    assert match_channels(["CT"], ("NCCT", "CT"), "x") == (("CT",), [])


@pytest.mark.parametrize(
    ("wanted", "available", "message"),
    [
        (["DWI", "FLAIR"], ("DWI", "ADC"), "the model's channel 1 (FLAIR) is not among them"),
        (["CBF"], ("rCBF", "MR_CBF"), "the model's channel 0 (CBF) matches several: rCBF, MR_CBF"),
        (["DWI", "b1000"], ("DWI", "ADC"), "the data's DWI would feed several"),
        (["noNorm"], ("DWI",), "the model's channel 0 (noNorm) is not among them"),
    ],
)
def test_unmatched_channels_are_refused(wanted, available, message) -> None:
    with pytest.raises(StrokeLRPError) as err:
        match_channels(wanted, available, "case 7 of DATA (ISLES 2022)")
    text = str(err.value)
    assert text.startswith("case 7 of DATA (ISLES 2022): the data's channels are ")
    assert message in text


def test_every_layout_lists_its_channels(tmp_path) -> None:
    expected = {
        "isles2022": ISLES22,
        "isles2024": ISLES24,
        "nnunet": ("DWI", "ADC"),
        "msd": ("DWI", "ADC", "Tmax"),
        "isles2017": ("ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP"),
    }
    for name, channels in expected.items():
        root = tmp_path / name
        if name == "isles2017":
            synthesize_isles2017(root, 1, shape=(8, 8, 3))
        else:
            synthesize_layout(root, 1, name, shape=(8, 8, 3))
        assert LAYOUTS[name]().channel_names(root) == channels
