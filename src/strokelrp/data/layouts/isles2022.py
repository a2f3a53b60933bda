"""ISLES 2022 (BIDS; MRI: DWI, ADC, FLAIR; lesion mask in DWI space).

Layout::

    ROOT/[rawdata/]sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_dwi.nii.gz
    ROOT/[rawdata/]sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_adc.nii.gz
    ROOT/[rawdata/]sub-strokecase0001/ses-0001/anat/sub-strokecase0001_ses-0001_FLAIR.nii.gz
    ROOT/derivatives/sub-strokecase0001/ses-0001/sub-strokecase0001_ses-0001_msk.nii.gz

Suffixes match case-insensitively; the mask may sit at any depth of ``derivatives/``. DWI is
the reference grid (the mask is drawn on it); ADC must share it; FLAIR, acquired on its own
grid, is resampled onto the DWI grid (trilinear, with the world affines; recorded on the case)
when its grid differs. ``channels`` picks a subset (``DWI ADC`` leaves FLAIR out).
"""

from __future__ import annotations

from pathlib import Path

from strokelrp.data.layouts import bids
from strokelrp.data.layouts.base import CaseFolder, Layout, ReadSpec
from strokelrp.errors import StrokeLRPError

CHANNELS: dict[str, tuple[str, ...]] = {"DWI": ("dwi",), "ADC": ("adc",), "FLAIR": ("flair",)}
"""Channel name -> file suffixes (lower case), in the default channel order."""
MASK_SUFFIXES = ("msk", "mask")


class Isles2022(Layout):
    """ISLES 2022 (BIDS; DWI, ADC, FLAIR; ``_msk`` in ``derivatives/``)."""

    name = "isles2022"
    title = "ISLES 2022 (BIDS)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return bool(bids.first_subject_suffixes(root) & {"dwi", "adc"})

    def channel_names(self, root: Path) -> tuple[str, ...]:
        return tuple(CHANNELS)

    def discover(self, root: Path) -> list[CaseFolder]:
        subjects = bids.subject_dirs(root)
        if not subjects:
            raise StrokeLRPError(
                f"{root}: no ISLES 2022 case found (expected sub-strokecaseNNNN folders under "
                "the root or rawdata/)"
            )
        channels = self.choose_channels(CHANNELS, str(root))
        reference = "DWI" if "DWI" in channels else channels[0]
        spec = ReadSpec(
            channels=channels,
            label="mask",
            names={"mask": "the lesion mask (_msk)"},
            reference=reference,
            resample=frozenset({"FLAIR"} - {reference}),
        )
        shared: list[tuple[Path, str]] = []
        derivatives = bids.derivative_files(root, shared)
        return [self._case(s, derivatives, list(shared), spec) for s in subjects]

    @staticmethod
    def _case(
        subject: Path, derivatives: list[Path], trouble: list[tuple[Path, str]], spec: ReadSpec
    ) -> CaseFolder:
        found = bids.subject_files(subject, derivatives, trouble)
        files = {c: bids.match(found, CHANNELS[c]) for c in spec.channels}
        files["mask"] = bids.match(found, MASK_SUFFIXES)
        missing = {
            c: f"missing {c} (no file ending in _{CHANNELS[c][0]}.nii or .nii.gz)"
            for c in spec.channels
        }
        case_id = subject.name[4:]
        return CaseFolder(
            case_id,
            subject,
            {k: v for k, v in files.items() if v},
            {},
            {},
            trouble,
            spec,
            Isles2022.name,
            missing,
        )
