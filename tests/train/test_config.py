"""TrainConfig: the paper's defaults, TOML round trip, validation messages, contradictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from strokelrp.config import TrainConfig
from strokelrp.errors import StrokeLRPError


def test_defaults_are_the_papers_recipe() -> None:
    c = TrainConfig(data="/d", series="A")
    assert (c.width, c.epochs, c.loss, c.lr, c.betas) == (32, 80, "ce", 2e-4, (0.5, 0.9))
    assert c.shape == (19, 48, 48) and c.val_fraction == 0.0


def test_toml_round_trip(tmp_path: Path) -> None:
    c = TrainConfig(data="/d", series="B", width=8, cases=("1", "4"), val_fraction=0.25)
    path = c.to_toml(tmp_path / "sub" / "config.toml")
    assert TrainConfig.from_toml(path) == c
    assert "split_seed" not in path.read_text()  # None is left out


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(StrokeLRPError) as err:
        TrainConfig(data="/d", series="Y", width=0, val_fraction=1.0, loss="mse")
    text = str(err.value)
    for expected in (
        "series must be one of A, B, C, X, got 'Y'",
        "width must be",
        "val_fraction",
        "loss",
    ):
        assert expected in text


def test_unknown_and_missing_keys(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('data = "/d"\nwidht = 8\n')
    with pytest.raises(StrokeLRPError) as err:
        TrainConfig.from_toml(tmp_path / "c.toml")
    assert "did you mean 'width'" in str(err.value) and "missing key 'series'" in str(err.value)


def test_networks_of_a_repeats_run_share_the_split_seed() -> None:
    c = TrainConfig(data="/d", series="A", seed=5, repeats=3)
    nets = [c.for_network(k) for k in (1, 2, 3)]
    assert [n.seed for n in nets] == [5, 6, 7]
    assert {n.effective_split_seed for n in nets} == {5} and {n.repeats for n in nets} == {1}


def test_contradictions_ignore_resumable_fields() -> None:
    c = TrainConfig(data="/d", series="A", width=8)
    assert c.contradictions(TrainConfig(data="/d", series="A", width=8, epochs=3)) == []
    lines = c.contradictions(TrainConfig(data="/e", series="B", width=8))
    assert len(lines) == 2 and lines[0].startswith("data:") and lines[1].startswith("series:")


def test_a_series_too_small_for_the_unet_is_refused() -> None:
    with pytest.raises(StrokeLRPError, match="2x2x2 is too small"):
        TrainConfig(data="/d", series=(2, 2, 2))
    with pytest.raises(StrokeLRPError, match="8x8x8 is too small"):
        TrainConfig(data="/d", series=(8, 8, 8))  # a 1x1x1 bottleneck
    assert TrainConfig(data="/d", series=(8, 8, 9)).shape == (8, 8, 9)  # 1x1x2 trains
