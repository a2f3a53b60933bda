"""`strokelrp explain` on a NIfTI-2 case whose quaternion is 1e-15 off unit length."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_explain_cli import cli, trained  # noqa: F401 (the fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from hostile_nifti import rewrite_as, tilted_180_affine


def test_explain_writes_a_nifti2_case_back_with_its_affine(trained, tmp_path, capsys) -> None:  # noqa: F811
    run, data = trained
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    case_dir = sorted(copy.glob("training_*"))[0]
    for path in sorted(case_dir.glob("*/*.nii")):
        rewrite_as(path, nib.Nifti2Image, affine=tilted_180_affine())
    adc = next(case_dir.glob("*MR_ADC*/*.nii"))
    with pytest.raises(ValueError, match="w2 should be positive"):  # what crashed explain
        nib.load(str(adc)).header.get_qform()
    out = tmp_path / "ex"
    case_id = case_dir.name.removeprefix("training_")
    code, _, err = cli(
        ["explain", str(run), str(copy), "--case", case_id, "--out", str(out)], capsys
    )
    assert code == 0, err
    for name in ("relevance_raw.nii.gz", "prediction.nii.gz"):
        written = nib.load(str(out / name))
        np.testing.assert_allclose(written.affine, tilted_180_affine(), atol=1e-5)
        np.testing.assert_allclose(written.header.get_qform(), tilted_180_affine(), atol=1e-5)
