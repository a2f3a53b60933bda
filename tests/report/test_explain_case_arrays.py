"""The explain outputs from arrays alone: no run folder, no model, a case built in memory."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from strokelrp.analysis.table import describe
from strokelrp.data.layouts import Case
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.filters import parse_filter
from strokelrp.report.explain_case import write_case_explanation


def memory_case(label: bool = True) -> Case:
    """A 6-channel case of 8 x 7 x 5 voxels (x, y, z) in RAS, 1 x 1 x 2 mm, made in memory."""
    rng = np.random.default_rng(1)
    d, h, w = 5, 7, 8
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    header = nib.Nifti1Header()
    header.set_data_shape((w, h, d))
    header.set_zooms((1.0, 1.0, 2.0))
    mask = np.zeros((d, h, w), dtype=np.uint8)
    mask[2:4, 2:5, 3:6] = 1
    return Case(
        case_id="9",
        image=rng.uniform(0, 100, (6, d, h, w)).astype(np.float32),
        label=mask if label else None,
        affine=affine,
        header=header,
        spacing=(1.0, 1.0, 2.0),
        channels=("ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP"),
    )


def test_written_maps_prediction_and_summary_are_the_arrays_given(tmp_path: Path) -> None:
    case = memory_case()
    rng = np.random.default_rng(2)
    settings = [describe(None), describe(parse_filter("pass:0,0.4"))]
    relevance = rng.normal(size=(2, *case.image.shape)).astype(np.float32)
    logits = np.zeros((2, *case.image.shape[1:]), dtype=np.float32)
    logits[1, 2:4, 2:5, 3:5] = 5.0  # predicted lesion: 2 x 3 x 2 voxels inside the 2 x 3 x 3 OT
    done = write_case_explanation(
        tmp_path / "out",
        case,
        relevance,
        logits,
        settings,
        fields={"run": "in memory"},
        method="lrp:epsilon",
        rules="epsilon",
        target="prediction",
        provenance={"command": "test"},
        notes=["a note"],
    )
    for k, s in enumerate(settings):
        img = nib.load(done.relevance[s.label])
        back = np.asarray(img.dataobj, dtype=np.float64).transpose(3, 2, 1, 0)  # (6, z, y, x)
        want = relevance[k].astype(np.float64)
        assert np.linalg.norm(back - want) <= 1e-6 * np.linalg.norm(want)
        np.testing.assert_allclose(img.affine, case.affine, atol=1e-6)
    pred = np.asarray(nib.load(done.prediction).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(pred, (logits[1] > logits[0]).astype(np.uint8))
    # Dice by hand: |P| = 12, |OT| = 18, overlap 12
    assert done.dice == pytest.approx(2 * 12 / (12 + 18))
    summary = json.loads(done.summary.read_text())
    assert summary["case"] == "9" and summary["run"] == "in memory"
    assert summary["method"] == "lrp:epsilon" and summary["rules"] == "epsilon"
    assert summary["provenance"] == {"command": "test"}
    assert summary["dice"] == pytest.approx(done.dice)
    assert summary["slice"] in (2, 3)  # the largest lesion area
    assert [s["label"] for s in summary["settings"]] == ["raw", "pass(0,0.4)"]
    peaks = summary["settings"][1]["max_abs_relevance_model_scale"]
    assert peaks["Tmax"] == pytest.approx(float(np.abs(relevance[1, 4]).max()))
    assert summary["notes"] == ["a note"] and done.notes == ["case 9: a note"]
    assert done.figure.is_file() and done.figure.stat().st_size > 0


def test_an_empty_prediction_is_noted_and_bad_input_refused(tmp_path: Path) -> None:
    case = memory_case(label=False)
    relevance = np.zeros((1, *case.image.shape), dtype=np.float32)
    logits = np.zeros((2, *case.image.shape[1:]), dtype=np.float32)
    logits[0] = 1.0  # background everywhere
    args = dict(fields={}, method="gradient", rules=None, target="prediction", provenance={})
    done = write_case_explanation(tmp_path, case, relevance, logits, [describe(None)], **args)
    assert done.dice is None
    assert any("empty prediction" in n for n in done.notes)
    with pytest.raises(StrokeLRPError, match="2 relevance maps for 1 settings"):
        write_case_explanation(
            tmp_path, case, relevance.repeat(2, 0), logits, [describe(None)], **args
        )
    with pytest.raises(StrokeLRPError, match="slice 9 is outside"):
        write_case_explanation(
            tmp_path, case, relevance, logits, [describe(None)], slice_index=9, **args
        )
