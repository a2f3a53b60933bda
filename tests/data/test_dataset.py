"""The torch Dataset and its cache of preprocessed arrays."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from data_helpers import modality_file, rewrite

from strokelrp.data.dataset import NO_LABEL, CaseDataset
from strokelrp.data.layouts import load_cases
from strokelrp.data.preprocess import preprocess_case
from strokelrp.errors import DataError

SMALL = (8, 16, 16)


def test_yields_x_y_case_id_with_contract_types(tiny: Path, tmp_path: Path) -> None:
    ds = CaseDataset(tiny, SMALL, cache_dir=tmp_path / "cache")
    assert len(ds) == 4 and ds.case_ids == ["1", "2", "4", "5"]
    x, y, cid = ds[1]
    assert cid == "2"
    assert x.dtype == torch.float32 and x.shape == (6, *SMALL)
    assert y.dtype == torch.int64 and y.shape == SMALL
    case = load_cases(tiny, cases=["2"])[0]
    ex, ey = preprocess_case(case, SMALL)
    assert np.array_equal(x.numpy(), ex) and np.array_equal(y.numpy(), ey)
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    xb, _, ids = next(iter(loader))
    assert xb.shape == (2, 6, *SMALL) and list(ids) == ["1", "2"]


def test_cases_and_geometry_are_native(tiny: Path, tmp_path: Path) -> None:
    ds = CaseDataset(tiny, "A", cache_dir=tmp_path / "cache")
    assert ds[0][0].shape == (6, 19, 48, 48)
    assert len(ds.cases) == 4 and ds.cases[2].case_id == "4"
    assert ds.cases[2].image.shape == (6, 8, 32, 32)
    geom = ds.geometry(2)
    assert geom.grid == (32, 32, 8) and geom.has_label
    np.testing.assert_allclose(geom.affine, ds.cases[2].affine)
    assert [c.case_id for c in ds.cases] == ds.case_ids


def test_second_load_comes_from_the_cache(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = CaseDataset(tiny, SMALL, cache_dir=cache)
    assert cold.cache_hits == 0
    warm = CaseDataset(tiny, SMALL, cache_dir=cache)
    assert warm.cache_hits == 4
    for i in range(4):
        assert torch.equal(cold[i][0], warm[i][0]) and torch.equal(cold[i][1], warm[i][1])
    assert len(list(cache.glob("*.x.npy"))) == 4


def test_parameters_are_part_of_the_key(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    CaseDataset(tiny, SMALL, cache_dir=cache)
    other = CaseDataset(tiny, "A", cache_dir=cache)
    zs = CaseDataset(tiny, SMALL, cache_dir=cache, normalization="zscore")
    assert other.cache_hits == 0 and zs.cache_hits == 0
    assert len(list(cache.glob("*.x.npy"))) == 12


def test_changed_content_is_never_served_stale(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = CaseDataset(tiny, SMALL, cache_dir=cache)[1][0]
    path = modality_file(tiny, "2", "MR_Tmax")
    data = nib.load(str(path)).get_fdata().astype(np.float32)
    data[10:20, 10:20, 2:5] += 30.0
    rewrite(path, data)  # same size, new content (and a new mtime, as any writer gives)
    after_ds = CaseDataset(tiny, SMALL, cache_dir=cache)
    assert after_ds.cache_hits == 3
    assert not torch.equal(after_ds[1][0], before)


def test_touching_a_file_without_changing_it_still_hits(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    CaseDataset(tiny, SMALL, cache_dir=cache)
    for p in (tiny / "training_4").rglob("*.nii"):
        os.utime(p, None)
    again = CaseDataset(tiny, SMALL, cache_dir=cache)
    assert again.cache_hits == 4
    assert len(list(cache.glob("*.x.npy"))) == 4


def test_a_corrupt_cache_entry_is_rebuilt(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = CaseDataset(tiny, SMALL, cache_dir=cache)
    entries = sorted(cache.glob("*.x.npy"))
    entries[0].write_bytes(b"garbage")  # not an array
    entries[1].write_bytes(entries[1].read_bytes()[:-10])  # cut short
    next(iter(cache.glob("*.json"))).write_text("{")  # metadata damaged
    sorted(cache.glob("*.y.npy"))[-1].unlink()  # label missing
    again = CaseDataset(tiny, SMALL, cache_dir=cache)
    assert again.cache_hits <= 1
    for i in range(4):
        assert torch.equal(again[i][0], first[i][0]) and torch.equal(again[i][1], first[i][1])
    assert CaseDataset(tiny, SMALL, cache_dir=cache).cache_hits == 4


def test_without_cache_nothing_is_written(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = CaseDataset(tiny, SMALL, cache_dir=cache, use_cache=False)
    assert len(ds) == 4 and ds[3][2] == "5" and not cache.exists()


def test_default_cache_dir_follows_the_environment(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(tmp_path / "envcache"))
    ds = CaseDataset(tiny, SMALL)
    assert ds.cache_dir == tmp_path / "envcache"
    assert len(list((tmp_path / "envcache").glob("*.x.npy"))) == 4


def test_cases_without_ot_need_require_labels_false(tiny: Path, tmp_path: Path) -> None:
    shutil.rmtree(modality_file(tiny, "4", "OT").parent)
    with pytest.raises(DataError, match=r"case 4: training_4: no OT"):
        CaseDataset(tiny, SMALL, cache_dir=tmp_path / "c")
    ds = CaseDataset(tiny, SMALL, cache_dir=tmp_path / "c", require_labels=False)
    x, y, cid = ds[2]
    assert cid == "4" and torch.all(y == NO_LABEL) and x.shape == (6, *SMALL)
    assert not ds.geometry(2).has_label and ds.geometry(1).has_label
    assert set(ds[1][1].unique().tolist()) == {0, 1}
    cached = CaseDataset(tiny, SMALL, cache_dir=tmp_path / "c", require_labels=False)
    assert cached.cache_hits == 4 and torch.all(cached[2][1] == NO_LABEL)


def test_invalid_cases_raise_or_are_skipped(tiny: Path, tmp_path: Path) -> None:
    path = modality_file(tiny, "2", "MR_ADC")
    path.write_bytes(b"broken")
    with pytest.raises(DataError, match=r"case 2: training_2/.*MR_ADC.*not a NIfTI"):
        CaseDataset(tiny, SMALL, cache_dir=tmp_path / "c")
    with pytest.warns(UserWarning, match="case 2"):
        ds = CaseDataset(tiny, SMALL, cache_dir=tmp_path / "c", on_error="skip")
    assert ds.case_ids == ["1", "4", "5"]


def test_a_cached_case_broken_later_is_reported(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    CaseDataset(tiny, SMALL, cache_dir=cache)
    shutil.rmtree(modality_file(tiny, "5", "MR_MTT").parent)
    with pytest.raises(DataError, match="case 5: training_5: missing modality MR_MTT"):
        CaseDataset(tiny, SMALL, cache_dir=cache)


def test_subset_of_cases(tiny: Path, tmp_path: Path) -> None:
    ds = CaseDataset(tiny, SMALL, cache_dir=tmp_path / "c", cases=["5", "2"])
    assert ds.case_ids == ["2", "5"] and "2 cases" in repr(ds)
