"""Match channel names across data sets: a model's channels onto the channels a layout reads.

A network names its inputs in its own words (nnU-Net's ``dataset.json`` ``channel_names``:
``{"0": "DWI", "1": "ADC"}``); a data layout names the channels it reads in its own
(ISLES 2022: DWI, ADC, FLAIR; ISLES 2024: CBF, CBV, MTT, Tmax, NCCT, CTA; ISLES 2017: ADC, MTT,
rCBF, rCBV, Tmax, TTP; nnU-Net raw and Decathlon: their ``dataset.json``). Names are compared
without letter case, spaces, ``-``, ``_`` and ``.``; a name that matches no channel exactly may
match through :data:`ALIASES`, the other names the layouts' files and the stroke literature
use for the same image (``MR_ADC``, ``b1000``, ``T2-FLAIR``, ``rCBF`` for CBF, ``CT`` for NCCT).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from strokelrp.errors import StrokeLRPError

ALIASES: dict[str, tuple[str, ...]] = {
    "dwi": ("dwi", "mrdwi", "b1000", "dwib1000", "trace", "tracew", "diffusion"),
    "adc": ("adc", "mradc", "adcmap"),
    "flair": ("flair", "mrflair", "t2flair", "flairt2"),
    "cbf": ("cbf", "rcbf", "mrrcbf", "mrcbf"),
    "cbv": ("cbv", "rcbv", "mrrcbv", "mrcbv"),
    "mtt": ("mtt", "mrmtt"),
    "tmax": ("tmax", "mrtmax"),
    "ttp": ("ttp", "mrttp"),
    "ncct": ("ncct", "ct", "noncontrastct", "plainct"),
    "cta": ("cta", "ctangiography"),
}
"""Canonical channel -> the compacted names that stand for it (DWI/ADC/FLAIR, the CT
perfusion maps, NCCT and CTA)."""

_SEPARATORS = re.compile(r"[\s_.\-]+")


def compact(name: str) -> str:
    """``"T2-FLAIR"`` -> ``"t2flair"``: lower case without spaces, ``-``, ``_`` and ``.``."""
    return _SEPARATORS.sub("", str(name)).lower()


def canonical(name: str) -> str:
    """The canonical channel a name stands for (:data:`ALIASES`), else its compacted form."""
    short = compact(name)
    for key, names in ALIASES.items():
        if short in names:
            return key
    return short


def match_channels(
    wanted: Sequence[str], available: Iterable[str], where: str
) -> tuple[tuple[str, ...], list[str]]:
    """Each name of ``wanted`` (in order) -> the one name of ``available`` for the same image:
    the same name (letter case and separators aside), else the same canonical channel.

    Returns (the matched names of ``available``, one note per match made through an alias).
    Raises :class:`StrokeLRPError` naming ``where`` and every channel that has no match, or
    more than one, or that two wanted channels share.
    """
    available = tuple(available)
    chosen: list[str] = []
    notes: list[str] = []
    problems: list[str] = []
    for index, name in enumerate(wanted):
        exact = [a for a in available if compact(a) == compact(name)]
        found = exact or [a for a in available if canonical(a) == canonical(name)]
        if len(found) == 1:
            chosen.append(found[0])
            if not exact:
                notes.append(f"the model's channel {index} ({name}) is the data's {found[0]}")
        elif not found:
            problems.append(f"the model's channel {index} ({name}) is not among them")
        else:
            problems.append(
                f"the model's channel {index} ({name}) matches several: {', '.join(found)}"
            )
    twice = sorted({c for c in chosen if chosen.count(c) > 1})
    for name in twice:
        problems.append(f"the data's {name} would feed several of the model's channels")
    if problems:
        raise StrokeLRPError(
            f"{where}: the data's channels are {', '.join(available)}; " + "; ".join(problems)
        )
    return tuple(chosen), notes
