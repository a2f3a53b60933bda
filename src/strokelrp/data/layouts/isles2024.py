"""ISLES 2024 (BIDS; CT: NCCT, CTA, CT perfusion maps; lesion mask at follow-up).

Layout::

    ROOT/[raw_data/]sub-stroke0001/ses-01/sub-stroke0001_ses-01_ncct.nii.gz   (also _cta, _ctp)
    ROOT/derivatives/sub-stroke0001/ses-01/perfusion-maps/sub-stroke0001_ses-01_cbf.nii.gz
                                                           (also _cbv, _mtt, _tmax)
    ROOT/derivatives/sub-stroke0001/ses-02/sub-stroke0001_ses-02_lesion-msk.nii.gz

Suffixes match case-insensitively and may carry a BIDS entity before them
(``space-ncct_cta``). The default channels are the four perfusion maps CBF, CBV, MTT, Tmax
(what the acute-stroke literature segments from); ``channels`` chooses others among NCCT,
CTA and the maps. The raw CTP is a 4-D time series, not a channel. The first channel is the
reference grid; the mask must lie on it; another channel on a different grid is resampled
onto it (trilinear, with the world affines; recorded on the case).
"""

from __future__ import annotations

from pathlib import Path

from strokelrp.data.layouts import bids
from strokelrp.data.layouts.base import CaseFolder, Layout, ReadSpec
from strokelrp.errors import StrokeLRPError

CHANNELS: dict[str, tuple[str, ...]] = {
    "CBF": ("cbf",),
    "CBV": ("cbv",),
    "MTT": ("mtt",),
    "Tmax": ("tmax",),
    "NCCT": ("ncct",),
    "CTA": ("cta",),
}
"""Channel name -> file suffixes (lower case)."""
DEFAULT_CHANNELS = ("CBF", "CBV", "MTT", "Tmax")
MASK_SUFFIXES = ("msk", "mask")


class Isles2024(Layout):
    """ISLES 2024 (BIDS; perfusion maps CBF, CBV, MTT, Tmax by default; NCCT, CTA)."""

    name = "isles2024"
    title = "ISLES 2024 (BIDS)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return bool(bids.first_subject_suffixes(root) & {"ncct", "cta", "ctp"})

    def channel_names(self, root: Path) -> tuple[str, ...]:
        return tuple(CHANNELS)

    def discover(self, root: Path) -> list[CaseFolder]:
        subjects = bids.subject_dirs(root)
        if not subjects:
            raise StrokeLRPError(
                f"{root}: no ISLES 2024 case found (expected sub-strokeNNNN folders under "
                "the root or raw_data/)"
            )
        if self.wanted is not None and any(c.lower() == "ctp" for c in self.wanted):
            raise StrokeLRPError(
                f"{root}: CTP is a 4-D perfusion time series, not a channel; use its maps "
                "(CBF, CBV, MTT, Tmax)"
            )
        channels = (
            DEFAULT_CHANNELS if self.wanted is None else self.choose_channels(CHANNELS, str(root))
        )
        spec = ReadSpec(
            channels=channels,
            label="mask",
            names={"mask": "the lesion mask (_msk)"},
            reference=channels[0],
            resample=frozenset(channels[1:]),
        )
        cases = []
        shared: list[tuple[Path, str]] = []
        derivatives = bids.derivative_files(root, shared)
        for subject in subjects:
            trouble = list(shared)
            found = bids.subject_files(subject, derivatives, trouble)
            files = {c: bids.match(found, CHANNELS[c]) for c in channels}
            files["mask"] = bids.match(found, MASK_SUFFIXES)
            missing = {
                c: f"missing {c} (no file ending in _{CHANNELS[c][0]}.nii or .nii.gz)"
                for c in channels
            }
            cases.append(
                CaseFolder(
                    subject.name[4:],
                    subject,
                    {k: v for k, v in files.items() if v},
                    {},
                    {},
                    trouble,
                    spec,
                    self.name,
                    missing,
                )
            )
        return cases
